"""The production stack on a one-node swarm (issue: scale-out). In file order: deploy and the
user's flow through nginx, secrets only as Swarm secrets, workers scaled out, a rolling update
under load, a broken release rolled back by Swarm itself."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from ops.images.build import build_image
from ops.proc import run
from ops.swarm import cluster
from tests.support import flow
from tests.swarm.conftest import SwarmStack

HERE = Path(__file__).parent
APP_SERVICES = ("backend", "celery-worker", "celery-beat", "migrate")
# The bounded load of the rolling update: requests per second through nginx, for as long as
# the update takes (it ends when the deploy call returns, plus a tail).
LOAD_RPS = 20
LOAD_TAIL_S = 5.0


def _inspect(stack: SwarmStack, service: str) -> dict[str, object]:
    return cluster.docker_json("service", "inspect", f"{stack.name}_{service}")[0]


def _image(stack: SwarmStack, service: str) -> str:
    spec = _inspect(stack, service)["Spec"]
    return str(spec["TaskTemplate"]["ContainerSpec"]["Image"])  # type: ignore[index]


def test_stack_deploys_healthy_and_the_flow_works_through_nginx(swarm_stack: SwarmStack) -> None:
    result = swarm_stack.first
    rows = {row[0]: row for row in cluster.status_rows(swarm_stack.name)}
    expected = {"backend", "celery-worker", "celery-beat", "migrate", "postgres", "redis", "nginx"}
    assert expected <= set(rows), rows
    assert rows["backend"][2] == "2/2" and rows["migrate"][2].endswith("(1/1 completed)"), rows
    assert all(row[3] == result.app_image for name, row in rows.items() if name in APP_SERVICES)
    # Stateful services are pinned by node labels; app services go anywhere.
    placement = _inspect(swarm_stack, "postgres")["Spec"]["TaskTemplate"]["Placement"]  # type: ignore[index]
    assert placement["Constraints"] == ["node.labels.coach.postgres == true"]
    app_net = cluster.docker_json("network", "inspect", f"{swarm_stack.name}_app")[0]
    assert (app_net["Driver"], app_net["Internal"]) == ("overlay", True)
    with swarm_stack.client() as http:
        flow.upload_index_ask(http)


def test_secrets_reach_services_only_as_swarm_secrets(swarm_stack: SwarmStack) -> None:
    values = {
        path.name: path.read_text().strip()
        for path in swarm_stack.secrets_dir.iterdir()
        if path.is_file() and len(path.read_text().strip()) >= 8
    }
    assert {"postgres_password", "redis_password"} <= set(values)
    for service in cluster.services(swarm_stack.name):
        spec = service["Spec"]
        text = json.dumps(spec)
        leaked = [name for name, value in values.items() if value in text]
        assert not leaked, f"{spec['Name']} carries {leaked} in its service spec"
        container = spec["TaskTemplate"]["ContainerSpec"]
        mounted = {s["File"]["Name"] for s in container.get("Secrets") or []}
        for variable in container.get("Env") or []:
            name, _, value = variable.partition("=")
            if name.endswith("_FILE") and value.startswith("/run/secrets/"):
                assert value in mounted, f"{spec['Name']}: {name} points at no Swarm secret"
    secret_names = cluster.docker_json("secret", "ls", "--format", "json")
    ours = [s["Name"] for s in secret_names if s["Name"].startswith(f"{swarm_stack.name}_")]
    assert any(n.startswith(f"{swarm_stack.name}_postgres_password_") for n in ours), ours


def test_workers_scale_to_three_and_share_the_queue(swarm_stack: SwarmStack) -> None:
    failed = cluster.scale(swarm_stack.name, {"celery-worker": 3})
    assert not failed, failed
    assert cluster.status_rows(swarm_stack.name)  # readable after scaling
    with swarm_stack.client() as http:
        sids = [
            flow.upload(http, f"def f{i}(x):\n    return x + {i}\n", f"f{i}.py") for i in range(18)
        ]
        for sid in sids:
            flow.wait_indexed(http, sid)
    logs = run(
        ["docker", "service", "logs", "--no-trunc", f"{swarm_stack.name}_celery-worker"],
        capture=True,
        quiet=True,
    )
    by_replica: Counter[str] = Counter()
    for line in (logs.stdout + logs.stderr).splitlines():
        match = re.match(r"\S+?_celery-worker\.(\d+)\.", line)
        if match and "coach.index_snippet[" in line and "succeeded" in line:
            by_replica[match[1]] += 1
    print(f"index tasks per worker replica: {dict(by_replica)}")
    assert sum(by_replica.values()) >= len(sids)
    assert len(by_replica) > 1, f"one replica consumed everything: {dict(by_replica)}"
    assert not cluster.scale(swarm_stack.name, {"celery-worker": 1})


class Load:
    """GETs through nginx at a fixed rate from a few threads; every non-200 is a failure."""

    def __init__(self, stack: SwarmStack, paths: list[str], rps: int) -> None:
        self.stack, self.paths, self.rps = stack, paths, rps
        self.statuses: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(4)]

    def _run(self) -> None:
        with self.stack.client(timeout=30) as http:
            while not self._stop.is_set():
                with self._lock:
                    n = self._next
                    self._next += 1
                delay = self.started + n / self.rps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    status = str(http.get(self.paths[n % len(self.paths)]).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with self._lock:
                    self.statuses[status] += 1

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.seconds = time.monotonic() - self.started


def test_rolling_update_under_load_fails_no_request(swarm_stack: SwarmStack) -> None:
    before = _image(swarm_stack, "backend")
    release = f"coach/app:swarm-test-release-{int(time.time())}"
    build_image(
        release,
        context=HERE,
        dockerfile=HERE / "Dockerfile.release",
        args={"APP_IMAGE": before, "RELEASE": release.rsplit("-", 1)[1]},
    )
    with swarm_stack.client() as http:
        sid = flow.upload(http)
        flow.wait_indexed(http, sid)
    paths = [f"/api/v1/snippets/{sid}", "/api/v1/snippets", "/health/ready"]
    with Load(swarm_stack, paths, LOAD_RPS) as load:
        result = swarm_stack.deploy(release)
        time.sleep(LOAD_TAIL_S)
    total = sum(load.statuses.values())
    failures = total - load.statuses["200"]
    print(
        f"rolling update: {result.seconds:.1f}s; load {LOAD_RPS} req/s for {load.seconds:.1f}s: "
        f"{total} requests, {failures} failed {dict(load.statuses)}"
    )
    assert result.ok, result.failed
    assert _image(swarm_stack, "backend") == release
    update = _inspect(swarm_stack, "backend")["UpdateStatus"]
    assert update["State"] == "completed", update  # type: ignore[index]
    assert total >= LOAD_RPS * load.seconds * 0.5, "the load generator fell behind"
    assert failures == 0, dict(load.statuses)


def test_broken_release_rolls_back_by_itself(swarm_stack: SwarmStack) -> None:
    good = _image(swarm_stack, "backend")
    broken = f"coach/app:swarm-test-broken-{int(time.time())}"
    build_image(
        broken, context=HERE, dockerfile=HERE / "Dockerfile.broken", args={"APP_IMAGE": good}
    )
    result = swarm_stack.deploy(broken)
    assert not result.ok and "backend" in result.failed, result
    assert "rollback_completed" in result.failed["backend"], result.failed
    assert _image(swarm_stack, "backend") == good
    failed = cluster.wait(swarm_stack.name, since=time.time(), only={"backend"}, timeout=120)
    assert not failed, failed
    with swarm_stack.client() as http:
        flow.upload_index_ask(http)


def test_rollback_by_hand_returns_a_service_to_its_previous_spec(swarm_stack: SwarmStack) -> None:
    # The broken release above left the worker on its tag (the worker's command does not use
    # the broken entry point); its previous spec is the release before.
    previous = _inspect(swarm_stack, "celery-worker")["PreviousSpec"]
    before = previous["TaskTemplate"]["ContainerSpec"]["Image"]  # type: ignore[index]
    assert before != _image(swarm_stack, "celery-worker")
    failed = cluster.rollback(swarm_stack.name, ["celery-worker"])
    assert not failed, failed
    assert _image(swarm_stack, "celery-worker") == before
    with swarm_stack.client() as http:
        sid = flow.upload(http, "def g(x):\n    return x * 2\n", "g.py")
        flow.wait_indexed(http, sid)


@pytest.fixture(scope="module", autouse=True)
def _drop_test_images() -> object:
    yield
    refs = run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "coach/app"],
        capture=True,
        quiet=True,
    ).stdout.split()
    test_refs = [r for r in refs if ":swarm-test-" in r]
    if test_refs:
        run(["docker", "image", "rm", "--force", *test_refs], capture=True, check=False, quiet=True)
