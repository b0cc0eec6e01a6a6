"""Application processes for tests: the same commands the image runs, on this host."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], bool], *, seconds: float, what: str, interval: float = 0.2
) -> None:
    """Poll a condition, bounded in time; fail naming what never happened."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {seconds:.0f}s")
        time.sleep(interval)


class Proc:
    """A child process with its output in a log file, stopped politely then firmly."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], logdir: Path) -> None:
        self.name, self.argv, self.env = name, argv, dict(env)
        self.log = logdir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(5)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def run_task(env: Mapping[str, str], call: str) -> dict[str, Any]:
    """A worker task's body (`call`, e.g. "redeliver_lost()") run once in a process of its own
    with the stack's settings, as beat's run would; its JSON result."""
    done = subprocess.run(
        python("-c", f"import json; from worker import tasks; print(json.dumps(tasks.{call}))"),
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_migrate(env: Mapping[str, str]) -> str:
    done = subprocess.run(
        python("-m", "coach", "migrate"),
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip()


def backend(env: Mapping[str, str], port: int, logdir: Path) -> Proc:
    proc = Proc(
        "backend",
        python("-m", "uvicorn", "backend.app:app", "--host", "127.0.0.1", "--port", str(port)),
        env,
        logdir,
    ).start()

    wait_answering(proc, f"http://127.0.0.1:{port}/health/live")
    return proc


def wait_answering(proc: Proc, url: str, seconds: float = 60) -> None:
    """Until `url` answers 200; fail at once with the log's tail if the process died."""

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, seconds=seconds, what=f"{proc.name} answering {url}")


def worker(
    env: Mapping[str, str],
    logdir: Path,
    name: str = "worker",
    *,
    app: str = "worker.celery_app",
    queue: str | None = None,
) -> Proc:
    """A worker with the role's name, as compose runs it, and a metrics directory of its own
    (emptied at each start, like the image's tmpfs). `app` and `queue`: a test's own tasks,
    served by a worker of their own."""
    env = {
        **env,
        "SERVICE_NAME": "coach-worker",
        "PROMETHEUS_MULTIPROC_DIR": str(logdir.parent / f"prometheus-{name}"),
    }
    argv = python(
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "--loglevel=INFO",
        "--concurrency=1",
        "--pool=prefork",
        f"--hostname={name}@%h",
        "--without-gossip",
        "--without-mingle",
        *([f"--queues={queue}"] if queue else []),
    )
    proc = Proc(name, argv, env, logdir).start()
    wait_until(
        lambda: "ready." in proc.tail(200) or not proc.alive(),
        seconds=60,
        what="celery worker ready",
    )
    if not proc.alive():
        raise RuntimeError(f"worker exited:\n{proc.tail()}")
    return proc
