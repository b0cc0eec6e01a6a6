"""Beat: one at a time. A second beat waits for the Redis lock; when the first dies, the
second takes over by itself."""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

import redis

from tests.support.containers import container, running
from tests.support.processes import Proc, free_port, python, wait_until


def test_only_one_beat_schedules_and_a_standby_takes_over(tmp_path: Path) -> None:
    password, port = secrets.token_urlsafe(12), free_port()
    rd = (
        container("REDIS_IMAGE")
        .with_command(["redis-server", "--requirepass", password])
        .with_bind_ports(6379, port)
    )
    with running(rd):
        client = redis.Redis(port=port, password=password)
        wait_until(lambda: _pings(client), seconds=30, what="redis answering")
        env = {
            **os.environ,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(port),
            "REDIS_PASSWORD": password,
            "BEAT_LOCK_TTL": "5",
        }
        beats = []
        for name in ("beat-a", "beat-b"):
            beat_env = env | {"WORKER_HEARTBEAT_FILE": str(tmp_path / f"{name}.hb")}
            beats.append(
                Proc(
                    name,
                    python(
                        "-m",
                        "celery",
                        "-A",
                        "worker.celery_app",
                        "beat",
                        "--loglevel=INFO",
                        f"--schedule={tmp_path / name}.db",
                    ),
                    beat_env,
                    tmp_path,
                )
            )
        first, second = beats
        try:
            first.start()
            wait_until((tmp_path / "beat-a.hb").exists, seconds=60, what="beat A ticking")
            second.start()
            wait_until(
                lambda: "waiting" in second.tail() or not second.alive(),
                seconds=30,
                what="beat B reporting it waits for the lock",
            )
            assert second.alive() and not (tmp_path / "beat-b.hb").exists(), (
                "a second beat must not schedule while the first holds the lock"
            )
            os.killpg(first.pid, signal.SIGKILL)  # no release: the lock must expire
            wait_until((tmp_path / "beat-b.hb").exists, seconds=60, what="beat B taking over")
            assert "beat lock acquired" in second.tail(200)
        finally:
            for beat in beats:
                beat.stop()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
