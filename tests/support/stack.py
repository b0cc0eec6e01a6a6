"""The application on this host against real dependencies in containers.

PostgreSQL and Redis always run for real (baked or pulled images). Vectors and objects run on
the upstream Qdrant and MinIO images where those exist (variant "upstream-images"); here they
do not, so variant "local-doubles" uses qdrant-client's local mode and moto's S3 server, a test
double named as such. The LLM is always the fake OpenAI-compatible server.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ops.stack import keys
from tests.support import apikeys, processes
from tests.support.containers import container, running
from tests.support.fake_llm import API_KEY, FakeLLMServer
from tests.support.otlp import OtlpReceiver

VARIANTS = ("upstream-images", "local-doubles")
BUCKET = "coach-snippets"


@dataclass
class Stack:
    variant: str
    env: dict[str, str]
    logdir: Path
    base_url: str
    llm: FakeLLMServer
    containers: dict[str, Any] = field(default_factory=dict)
    procs: dict[str, processes.Proc] = field(default_factory=dict)
    otlp: OtlpReceiver | None = None  # receives the spans that backend and worker export

    @property
    def worker_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['WORKER_METRICS_PORT']}/metrics"

    @property
    def api_key(self) -> str:
        """The stack's own key (tenant dev, scope write), registered by its migrate."""
        return apikeys.read_key(Path(self.env["API_KEY_BOOTSTRAP_FILE"]))

    def client(
        self, timeout: float = 10, *, key: str | None = None, anonymous: bool = False
    ) -> httpx.Client:
        """With `key`, else the stack's own; `anonymous`: with none."""
        return apikeys.client(self.base_url, None if anonymous else key or self.api_key, timeout)

    def key_runner(self) -> keys.Runner:
        """The app's key command on this host, with the stack's settings (as in a container)."""

        def runner(args: Sequence[str]) -> tuple[int, str, str]:
            done = subprocess.run(
                processes.python("-m", "coach", "keys", *args),
                env=self.env,
                cwd=processes.ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            return done.returncode, done.stdout, done.stderr

        return runner

    def upload(self, title: str, content: str, language: str = "python") -> dict[str, Any]:
        with self.client() as http:
            response = http.post(
                "/api/v1/snippets", json={"title": title, "language": language, "content": content}
            )
        assert response.status_code == 202, response.text
        return dict(response.json())

    def snippet(self, sid: str) -> dict[str, Any]:
        with self.client() as http:
            response = http.get(f"/api/v1/snippets/{sid}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_indexed(self, sid: str, seconds: float = 90) -> dict[str, Any]:
        result: dict[str, Any] = {}

        def done() -> bool:
            result.update(self.snippet(sid))
            assert result["status"] != "failed", result
            return bool(result["status"] == "indexed")

        processes.wait_until(done, seconds=seconds, what=f"snippet {sid} indexed", interval=0.5)
        return result

    def restart_worker(self) -> processes.Proc:
        self.procs["worker"].stop()
        self.procs["worker"] = processes.worker(self.env, self.logdir)
        return self.procs["worker"]

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{proc.tail()}" for name, proc in self.procs.items())


def _postgres(password: str, port: int) -> Any:
    return (
        container("POSTGRES_IMAGE")
        .with_env("POSTGRES_USER", "coach")
        .with_env("POSTGRES_DB", "coach")
        .with_env("POSTGRES_PASSWORD", password)
        .with_bind_ports(5432, port)
    )


def _redis(password: str, port: int) -> Any:
    return (
        container("REDIS_IMAGE")
        .with_command(
            [
                "redis-server",
                "--requirepass",
                password,
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ]
        )
        .with_bind_ports(6379, port)
    )


def _wait_tcp_service(check: Any, what: str) -> None:
    def ok() -> bool:
        try:
            check()
        except Exception:
            return False
        return True

    processes.wait_until(ok, seconds=60, what=what, interval=0.5)


@contextmanager
def stack(variant: str, workdir: Path, *, otlp_endpoint: str | None = None) -> Iterator[Stack]:
    """`otlp_endpoint`: export spans there (a real Jaeger) instead of the in-test receiver."""
    import psycopg  # noqa: PLC0415
    import redis  # noqa: PLC0415

    logdir = workdir / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    pg_pw, redis_pw = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    pg_port, redis_port = processes.free_port(), processes.free_port()
    with ExitStack() as stack_:
        pg = stack_.enter_context(running(_postgres(pg_pw, pg_port)))
        rd = stack_.enter_context(running(_redis(redis_pw, redis_port)))
        _wait_tcp_service(
            lambda: psycopg.connect(
                f"host=127.0.0.1 port={pg_port} user=coach dbname=coach password={pg_pw} "
                "connect_timeout=2"
            ).close(),
            "postgres accepting connections",
        )
        _wait_tcp_service(
            lambda: redis.Redis(port=redis_port, password=redis_pw).ping(), "redis answering PING"
        )
        llm = FakeLLMServer(processes.free_port()).start()
        stack_.callback(llm.stop)
        otlp = OtlpReceiver().start()
        stack_.callback(otlp.stop)  # after the processes have stopped and flushed

        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("POSTGRES_", "REDIS_", "OTEL_", "PROMETHEUS_", "SERVICE_NAME"))
        }
        env |= {
            "ENVIRONMENT": "test",
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(pg_port),
            "POSTGRES_PASSWORD": pg_pw,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(redis_port),
            "REDIS_PASSWORD": redis_pw,
            "LLM_BASE_URL": llm.base_url,
            "LLM_API_KEY": API_KEY,
            "LLM_MODEL": "fake-coach-1",
            "LLM_HEALTH_CACHE_SECONDS": "2",
            "EMBEDDING_PROVIDER": "openai",
            "DATA_DIR": str(workdir / "data"),
            "TASK_TIME_LIMIT": "60",
            "ASK_TIMEOUT": "20",  # the tests that outwait an ask's deadline wait this long
            "PYTHONUNBUFFERED": "1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint or otlp.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # ms: spans reach the receiver soon after
            "OTEL_METRIC_EXPORT_INTERVAL": "500",  # ms: and the GenAI metric points
            "OTEL_SEMCONV_STABILITY_OPT_IN": "http",  # as the image sets it
            "WORKER_METRICS_PORT": str(processes.free_port()),
            # Registered by the migrate below, as the dev stack's key is.
            "API_KEY_BOOTSTRAP_FILE": str(_key_file(workdir)),
        }
        procs: dict[str, processes.Proc] = {}
        if variant == "upstream-images":
            env |= _upstream_vectors_and_objects(stack_)
        else:
            env |= _local_vectors_and_objects(stack_, logdir, procs)
        processes.run_migrate(env)
        port = processes.free_port()
        result = Stack(
            variant,
            env,
            logdir,
            f"http://127.0.0.1:{port}",
            llm,
            {"postgres": pg, "redis": rd},
            procs,
            otlp,
        )
        try:
            procs["worker"] = processes.worker(env, logdir)
            procs["backend"] = processes.backend(env, port, logdir)
            yield result
        except BaseException:
            print(result.logs())
            raise
        finally:
            for proc in reversed(list(result.procs.values())):
                proc.stop()


def _key_file(workdir: Path) -> Path:
    path = workdir / "api_key"
    path.write_text(f"coach_{secrets.token_urlsafe(32)}\n")
    return path


def _local_vectors_and_objects(
    stack_: ExitStack, logdir: Path, procs: dict[str, processes.Proc]
) -> dict[str, str]:
    port = processes.free_port()
    moto = processes.Proc(
        "moto-s3",
        processes.python("-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)),
        os.environ,
        logdir,
    )
    procs["moto-s3"] = moto.start()
    stack_.callback(moto.stop)
    url = f"http://127.0.0.1:{port}"
    processes.wait_until(lambda: _answers(url), seconds=30, what="moto S3 server")
    httpx.put(f"{url}/{BUCKET}", timeout=5).raise_for_status()
    return {
        "S3_ENDPOINT_URL": url,
        "S3_BUCKET": BUCKET,
        "S3_ACCESS_KEY_ID": "test",
        "S3_SECRET_ACCESS_KEY": "test",
    }  # moto accepts any credentials


def _upstream_vectors_and_objects(stack_: ExitStack) -> dict[str, str]:
    qdrant_port, minio_port = processes.free_port(), processes.free_port()
    key, access, secret = (secrets.token_urlsafe(16) for _ in range(3))
    qdrant = stack_.enter_context(
        running(
            container("QDRANT_IMAGE")
            .with_env("QDRANT__SERVICE__API_KEY", key)
            .with_env("QDRANT__TELEMETRY_DISABLED", "true")
            .with_bind_ports(6333, qdrant_port)
        )
    )
    minio = stack_.enter_context(
        running(
            container("MINIO_IMAGE")
            .with_command(["server", "/data"])
            .with_env("MINIO_ROOT_USER", access)
            .with_env("MINIO_ROOT_PASSWORD", secret)
            .with_bind_ports(9000, minio_port)
        )
    )
    processes.wait_until(
        lambda: _answers(f"http://127.0.0.1:{qdrant_port}/readyz"), seconds=60, what="qdrant ready"
    )
    processes.wait_until(
        lambda: _answers(f"http://127.0.0.1:{minio_port}/minio/health/ready"),
        seconds=60,
        what="minio ready",
    )
    made = minio.exec(
        [
            "sh",
            "-c",
            f"mc alias set local http://127.0.0.1:9000 {access} {secret}"
            f" >/dev/null && mc mb --ignore-existing local/{BUCKET}",
        ]
    )
    assert made.exit_code == 0, made.output
    _ = qdrant
    return {
        "QDRANT_URL": f"http://127.0.0.1:{qdrant_port}",
        "QDRANT_API_KEY": key,
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{minio_port}",
        "S3_BUCKET": BUCKET,
        "S3_ACCESS_KEY_ID": access,
        "S3_SECRET_ACCESS_KEY": secret,
    }


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def wait_ready(stack_: Stack, seconds: float = 90) -> float:
    """Seconds until /health/ready answers 200 again (the app recovering by itself)."""
    started = time.monotonic()

    def ready() -> bool:
        try:
            with stack_.client(timeout=5) as http:
                return http.get("/health/ready").status_code == 200
        except httpx.HTTPError:
            return False

    processes.wait_until(ready, seconds=seconds, what="/health/ready back to 200", interval=0.5)
    return time.monotonic() - started
