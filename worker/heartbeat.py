"""Heartbeat files for the worker and beat healthchecks (no `celery inspect ping`, which costs
a broker round trip per probe and answers for every worker at once).

The worker touches its file from a consumer bootstep, so the beat stops when the consumer loses
the broker (coach_worker_heartbeat_timestamp_seconds follows it, for alerting); beat touches its
own on every scheduler tick. The check is this module's CLI:
    python -m worker.heartbeat --max-age 60
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from celery import bootsteps

INTERVAL_S = 10.0


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def age(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


class ConsumerHeartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs while the consumer is connected to the broker."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer_ref: Any = None

    def start(self, parent: Any) -> None:
        # Imported here, not at the top: this module loads with the Celery app, before the
        # worker has chosen its metrics mode (worker.celery_app).
        from coach.metrics import WORKER_HEARTBEAT  # noqa: PLC0415
        from coach.settings import get_settings  # noqa: PLC0415

        path = get_settings().worker_heartbeat_file

        def beat() -> None:
            touch(path)
            WORKER_HEARTBEAT.set_to_current_time()  # stale in Prometheus: the consumer is stuck

        beat()
        self._timer_ref = parent.timer.call_repeatedly(INTERVAL_S, beat, priority=10)

    def stop(self, parent: Any) -> None:
        if self._timer_ref is not None:
            self._timer_ref.cancel()
            self._timer_ref = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m worker.heartbeat", description="Exit 0 if the heartbeat file is fresh."
    )
    parser.add_argument(
        "path",
        type=Path,
        nargs="?",
        help="heartbeat file (default: the WORKER_HEARTBEAT_FILE setting, as the worker writes it)",
    )
    parser.add_argument("--max-age", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args(argv)
    if args.path is None:
        from coach.settings import get_settings  # noqa: PLC0415

        args.path = get_settings().worker_heartbeat_file
    seconds = age(args.path)
    if seconds is None:
        print(f"unhealthy: no heartbeat file {args.path}")
        return 1
    if seconds > args.max_age:
        print(f"unhealthy: last heartbeat {seconds:.0f}s ago (limit {args.max_age:.0f}s)")
        return 1
    print(f"healthy: last heartbeat {seconds:.0f}s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
