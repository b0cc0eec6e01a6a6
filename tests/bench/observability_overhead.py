"""Benchmark (not a test): requests per second through the embedded app with observability on
(tracing exported over OTLP to a receiver in the process, HTTP metrics, JSON logs at INFO)
against off (OBSERVABILITY_ENABLED=false, LOG_LEVEL=WARNING), side by side.

    ./run python -m tests.bench.observability_overhead [--list 300] [--ask 100] [--rounds 2]

Each measurement runs in a fresh process (tracing and instrumentation are process-wide), in
the in-process ASGI transport, one request at a time; rounds alternate off and on, and the
best round of each counts. The agent's own metrics (llm_*, coach_agent_*) stay on in both:
they are not behind the switch. Log lines are rendered in both and go to /dev/null.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from ops.console import table
from tests.support.embedded import EMBEDDED_ENV_KEYS, bearer, dev_key
from tests.support.otlp import OtlpReceiver
from tests.support.processes import ROOT
from tests.support.samples import FIB

MODES = {
    "off": {"OBSERVABILITY_ENABLED": "false", "LOG_LEVEL": "WARNING"},
    "on": {"OBSERVABILITY_ENABLED": "true", "LOG_LEVEL": "INFO"},
}
QUESTION = {"question": "how is fibonacci computed?", "top_k": 3}


async def _timed(client: httpx.AsyncClient, count: int, method: str, url: str, **kw: Any) -> float:
    """Requests per second over `count` sequential requests, each checked."""
    started = time.perf_counter()
    for _ in range(count):
        response = await client.request(method, url, **kw)
        response.raise_for_status()
    return count / (time.perf_counter() - started)


async def _measure(list_count: int, ask_count: int) -> dict[str, float]:
    from backend.app import create_app  # noqa: PLC0415 - after the environment is set
    from coach import tracing  # noqa: PLC0415
    from coach.settings import get_settings  # noqa: PLC0415

    app = create_app(get_settings())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        # The dev key the embedded app made in DATA_DIR as it started, as every client sends.
        client.headers.update(bearer(dev_key(get_settings().data_dir)))
        for n in range(5):
            snippet = {"title": f"fib{n}.py", "language": "python", "content": FIB + f"# {n}\n"}
            (await client.post("/api/v1/snippets", json=snippet)).raise_for_status()
        await _timed(client, 30, "GET", "/api/v1/snippets")  # warm-up
        await _timed(client, 10, "POST", "/api/v1/coach/ask", json=QUESTION)
        list_rps = await _timed(client, list_count, "GET", "/api/v1/snippets")
        ask_rps = await _timed(client, ask_count, "POST", "/api/v1/coach/ask", json=QUESTION)
    tracing.force_flush()
    return {"list_rps": list_rps, "ask_rps": ask_rps}


def child(mode: str, result: Path, list_count: int, ask_count: int) -> None:
    """One measurement, in this (fresh) process."""
    receiver = OtlpReceiver().start() if mode == "on" else None
    if receiver is not None:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
    try:
        figures = asyncio.run(_measure(list_count, ask_count))
        figures["spans"] = len(receiver.spans()) if receiver is not None else 0
    finally:
        if receiver is not None:
            receiver.stop()
    result.write_text(json.dumps(figures))


def run_child(mode: str, list_count: int, ask_count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="coach-bench-") as scratch:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in EMBEDDED_ENV_KEYS and not k.startswith("OTEL_")
        }
        env |= MODES[mode] | {"DATA_DIR": str(Path(scratch) / "data"), "PYTHONPATH": str(ROOT)}
        result = Path(scratch) / "result.json"
        argv = [sys.executable, "-m", "tests.bench.observability_overhead", "--child", mode]
        argv += [str(result), "--list", str(list_count), "--ask", str(ask_count)]
        # The application's log lines are rendered all the same; the terminal is for the table.
        subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
        figures: dict[str, float] = json.loads(result.read_text())
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.observability_overhead")
    parser.add_argument("--list", type=int, default=300, help="GET /api/v1/snippets requests")
    parser.add_argument("--ask", type=int, default=100, help="POST /api/v1/coach/ask requests")
    parser.add_argument("--rounds", type=int, default=2, help="alternating off/on rounds")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], Path(args.child[1]), args.list, args.ask)
        return 0

    best: dict[str, dict[str, float]] = {}
    for round_ in range(1, args.rounds + 1):
        for mode in MODES:
            figures = run_child(mode, args.list, args.ask)
            print(
                f"round {round_} {mode:>3}: list {figures['list_rps']:.1f} req/s, "
                f"ask {figures['ask_rps']:.1f} req/s, {figures['spans']:.0f} spans exported",
                flush=True,
            )
            kept = best.setdefault(mode, figures)
            for key in ("list_rps", "ask_rps"):
                kept[key] = max(kept[key], figures[key])
    off, on = best["off"], best["on"]
    print()
    print(
        table(
            ["requests/s (best round)", "observability off", "on", "on/off"],
            [
                [
                    f"GET /api/v1/snippets x{args.list}",
                    f"{off['list_rps']:.1f}",
                    f"{on['list_rps']:.1f}",
                    f"{on['list_rps'] / off['list_rps']:.2f}",
                ],
                [
                    f"POST /api/v1/coach/ask x{args.ask}",
                    f"{off['ask_rps']:.1f}",
                    f"{on['ask_rps']:.1f}",
                    f"{on['ask_rps'] / off['ask_rps']:.2f}",
                ],
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
