"""Upgrading a running compose stack to this checkout's code: what `invoke upgrade` does.

The steps, in order: a preflight that changes nothing but a file under .state (engine, the
stack running and healthy, disk, this code's migrations know the running schema revision, every
image resolvable; the running release's compose model recorded), the running app image tagged
`<repo>:rollback-<project>`, a backup, the new image built (or pulled), the migrate step once,
the stores the app uses brought to the new files (a changed Redis ACL, say), then backend,
worker and beat recreated one at a time (the backend's new container starts beside the old one
and takes over once healthy), the rest of the stack in step, and health verified.

On a failure after the build: the schema goes back down to the running revision (the new code's
own downgrade, which keeps what was written meanwhile), then every service that ran before is
started again from the recorded model with the tagged image. The backup stays where it is, as
the last resort for the operator.

The backup lives in a room above this one (ops.data): the command line passes it in.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError as AlembicCommandError

from coach.migrate import alembic_config, head_revision
from ops.console import Reporter
from ops.errors import CommandError, OpsError, StackError
from ops.paths import ROOT, STATE_DIR
from ops.proc import run
from ops.stack import roles
from ops.stack import up as stacks
from ops.stack.project import Project

MIN_FREE_BYTES = 2 * 1024**3  # a backup, the new image's layers and the build's cache
REVISION_SQL = "SELECT coalesce((SELECT version_num FROM alembic_version LIMIT 1), '')"
# Run in the migrate service, on the new image: its migrations know the way down.
DOWNGRADE_PY = (
    "import asyncio, sys; from coach.migrate import downgrade; "
    "from coach.settings import get_settings; print(asyncio.run(downgrade(get_settings(), "
    "sys.argv[1])))"
)
ROLLBACK_TIMEOUT = 300  # the old release must come back even when --wait-timeout was short


class UpgradeFailed(StackError):
    """A step failed; the result says which, and what was put back."""

    def __init__(self, message: str, result: UpgradeResult, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.result = result


@dataclass
class Step:
    name: str
    status: str = "ok"  # ok | failed | skipped
    seconds: float = 0.0
    detail: str = ""


@dataclass
class UpgradeResult:
    project: Project
    steps: list[Step] = field(default_factory=list)
    from_revision: str = ""
    to_revision: str = ""
    backup: Path | None = None
    rollback_image: str = ""
    previous: Previous | None = None
    rolled_back: bool = False
    schema_restored: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(step.status != "failed" for step in self.steps)

    @property
    def migrated(self) -> bool:
        return bool(self.to_revision) and self.to_revision != self.from_revision


@dataclass(frozen=True)
class Previous:
    """The running release's compose model, rendered before anything changes, and the services
    that ran: what a rollback starts again."""

    model: Path
    services: tuple[str, ...]

    def run(self, project: Project, *args: str) -> None:
        # Not this checkout's files: the old image may not take the settings, secrets or
        # commands they give it now (0.1.0's beat fails on the new Redis ACL users, say).
        run(["docker", "compose", "-p", project.name, "-f", str(self.model), *args],
            env=project.environ())  # fmt: skip


def record_previous(project: Project, services: list[str], api: str, image: str) -> Previous:
    """Render the model the running containers were created from (the files, directory and env
    files compose labelled them with), with `image` for the app services, into .state. After
    an in-place `git pull` those files are already the new ones: hence the docs' supported path,
    a fresh checkout of the new release beside the running one."""
    [container, *_] = _containers(project, api) or [""]
    inspected = run(["docker", "inspect", "--format", "{{json .Config.Labels}}", container],
                    capture=True, quiet=True)  # fmt: skip
    labels: dict[str, str] = json.loads(inspected.stdout)
    argv = ["docker", "compose", "-p", project.name, "--project-directory",
            labels["com.docker.compose.project.working_dir"]]  # fmt: skip
    env_files = labels.get("com.docker.compose.project.environment_file", "")
    for env_file in filter(None, env_files.split(",")):
        argv += ["--env-file", env_file]
    for file in labels["com.docker.compose.project.config_files"].split(","):
        argv += ["-f", file]
    env = project.environ() | {"APP_IMAGE": image}
    rendered = run([*argv, "config", "--format", "json"], env=env, capture=True, quiet=True)
    model = STATE_DIR / f"upgrade.{project.name}.previous.json"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text(rendered.stdout)
    return Previous(model, tuple(services))


def known_revision(revision: str) -> bool:
    """Whether this checkout's migrations know `revision` (empty: a database never migrated)."""
    if not revision:
        return True
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except AlembicCommandError:
        return False
    return True


def running_revision(project: Project, config: dict[str, Any]) -> str:
    """The schema revision of the running database, read in its container."""
    service = roles.store_service(config, "database")
    env = config["services"][service].get("environment") or {}
    user = str(env["POSTGRES_USER"])
    done = project.run(
        "exec", "-T", service, "psql", "-U", user, "-d", str(env.get("POSTGRES_DB") or user),
        "-tAc", REVISION_SQL, capture=True, quiet=True,
    )  # fmt: skip
    return done.stdout.strip()


def in_order(config: dict[str, Any]) -> list[str]:
    """The writers, recreated one at a time in this order: the API first (the service whose
    settings the tooling reads; it must serve the new schema before anyone else writes), then
    the others by name (the worker, then beat, which only sends tasks)."""
    api = roles.settings_service(config)
    return [api, *sorted(s for s in roles.writers(config) if s != api)]


def rollback_tag(config: dict[str, Any], project: Project) -> str:
    repo = roles.app_image(config).rpartition(":")[0] or roles.app_image(config)
    return f"{repo}:rollback-{project.name}"


def preflight(project: Project, *, allow_local_stores: bool = False) -> stacks.Prepared:
    """Everything that must hold before anything changes; raises StackError naming each
    problem. Returns the prepared stack (secrets, images, the fallback: as `up` prepares)."""
    problems: list[str] = []
    engine = run(["docker", "info", "--format", "{{.ServerVersion}}"], capture=True, check=False,
                 quiet=True)  # fmt: skip
    if engine.returncode:
        raise StackError("no Docker engine answers", hint="`./run invoke docker.ensure`")
    free = shutil.disk_usage(ROOT).free
    if free < MIN_FREE_BYTES:
        problems.append(f"disk: {free / 1024**3:.1f} GiB free, {MIN_FREE_BYTES // 1024**3} needed")
    rows = {row["Service"]: row for row in project.ps()}
    if not any(row.get("State") == "running" for row in rows.values()):
        raise StackError(
            f"project {project.name} is not running: nothing to upgrade",
            hint="`./run invoke up` starts it (for a first install)",
        )
    prepared = stacks.prepare_stack(project, allow_local_stores=allow_local_stores)
    running = [
        s
        for s, row in rows.items()
        if row.get("State") == "running" and s in prepared.config["services"]
    ]
    for service, detail in stacks.unhealthy(project, running, prepared.config).items():
        problems.append(f"{service} not healthy ({detail.splitlines()[0]})")
    missing = [s for s in in_order(prepared.config) if s not in running]
    if missing:
        problems.append(f"not running: {', '.join(missing)}")
    revision = running_revision(project, prepared.config)
    if not known_revision(revision):
        problems.append(
            f"the running schema revision {revision} is unknown to this code (head "
            f"{head_revision()}): it is newer than this checkout"
        )
    if problems:
        raise StackError("the upgrade preflight failed: " + "; ".join(problems))
    return prepared


@contextmanager
def _step(result: UpgradeResult, name: str, reporter: Reporter) -> Iterator[Step]:
    step = Step(name)
    result.steps.append(step)
    reporter.event("step", f"{name} ...", step=name)
    started = time.monotonic()
    try:
        yield step
    except BaseException as exc:
        step.status = "failed"
        step.detail = step.detail or str(exc).splitlines()[0][:200]
        raise
    finally:
        step.seconds = time.monotonic() - started
        reporter.event(
            "step", f"{name}: {step.status} {step.detail}".rstrip(), step=name, status=step.status,
            seconds=round(step.seconds, 1),
        )  # fmt: skip


def _containers(project: Project, service: str) -> list[str]:
    return project.run("ps", "-q", service, capture=True, quiet=True).stdout.split()


def _tag_running_image(project: Project, config: dict[str, Any]) -> str:
    """Tag the image the backend runs now, so a rollback can start it again."""
    api = roles.settings_service(config)
    [container, *_] = _containers(project, api) or [""]
    if not container:
        raise StackError(f"{api} has no container to take the rollback image from")
    image = run(["docker", "inspect", "--format", "{{.Image}}", container], capture=True,
                quiet=True).stdout.strip()  # fmt: skip
    tag = rollback_tag(config, project)
    run(["docker", "tag", image, tag], quiet=True)
    return tag


def recreate(project: Project, service: str, *, serving: bool, wait_timeout: int) -> None:
    """Recreate one app service on the current model. A `serving` one (the API) keeps
    serving: its new container starts beside the old ones, and those go once it is healthy
    (nginx re-resolves the API's name every few seconds)."""
    old = _containers(project, service)
    if not serving or not old:
        project.run("up", "--detach", "--no-deps", "--force-recreate", "--wait",
                    "--wait-timeout", str(wait_timeout), service)  # fmt: skip
        return
    # Not `--wait`: it waits for every container of the service, and the old ones may turn
    # unhealthy meanwhile (a store they cannot use any more), which is why they go.
    project.run("up", "--detach", "--no-deps", "--no-recreate", "--scale",
                f"{service}={len(old) + 1}", service)  # fmt: skip
    new = [c for c in _containers(project, service) if c not in old]
    for container in new:
        _wait_healthy(container, wait_timeout)
    run(["docker", "stop", "--time", "30", *old], quiet=True)
    run(["docker", "rm", *old], quiet=True)


def _wait_healthy(container: str, timeout: int) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = run(["docker", "inspect", "--format", "{{json .State}}", container], capture=True,
                   quiet=True)  # fmt: skip
        state = json.loads(done.stdout)
        health = (state.get("Health") or {}).get("Status", "healthy" if state["Running"] else "")
        if health == "healthy":
            return
        if not state["Running"] or time.monotonic() > deadline:
            probes = (state.get("Health") or {}).get("Log") or [{}]
            raise StackError(
                f"container {container[:12]} not healthy within {timeout}s: "
                f"{state['Status']}/{health}; last probe: {probes[-1].get('Output', '').strip()}"
            )
        time.sleep(2)


def stores(config: dict[str, Any], app: list[str]) -> list[str]:
    """The long-running services the app services wait for (PostgreSQL, Redis, ...): brought to
    the new files before the new app starts, which may need what they now set up."""
    one_shot = roles.one_shot(config)
    needed = {d for s in app for d in config["services"][s].get("depends_on") or {}}
    return sorted(needed - set(app) - set(one_shot))


def upgrade(
    project: Project,
    *,
    take_backup: Callable[[], Path],
    build: bool = True,
    allow_local_stores: bool = False,
    wait_timeout: int = 300,
    reporter: Reporter | None = None,
) -> UpgradeResult:
    """Move the running `project` to this checkout's code; raises UpgradeFailed (after the
    rollback) when a step fails."""
    reporter = reporter or Reporter()
    result = UpgradeResult(project)
    started = time.monotonic()
    with _step(result, "preflight", reporter) as step:
        prepared = preflight(project, allow_local_stores=allow_local_stores)
        config = prepared.config
        app = in_order(config)
        result.from_revision = running_revision(project, config)
        running = [row["Service"] for row in project.ps() if row.get("State") == "running"]
        result.previous = record_previous(project, running, app[0], rollback_tag(config, project))
        step.detail = f"schema {result.from_revision or 'none'} -> {head_revision()}"
    if endpoint := roles.otlp_endpoint(config, prepared.left_out):
        project = dataclasses.replace(
            project, overrides=(*project.overrides, ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint))
        )
    with _step(result, "rollback image", reporter) as step:
        result.rollback_image = step.detail = _tag_running_image(project, config)
    with _step(result, "backup", reporter) as step:
        result.backup = take_backup()
        step.detail = result.backup.name
    try:
        _apply(project, result, prepared, build=build, wait_timeout=wait_timeout,
               reporter=reporter)  # fmt: skip
    except BaseException as exc:  # any failure, Ctrl-C too: never left half-upgraded
        _roll_back(project, result, config=config, reporter=reporter)
        result.seconds = time.monotonic() - started
        if not isinstance(exc, Exception):
            raise  # rolled back; now stop as asked
        raise UpgradeFailed(
            f"upgrade failed: {exc}" + ("; rolled back" if result.rolled_back else ""),
            result,
            hint="fix the cause, then run the same `invoke upgrade` again (it starts over "
            "from the preflight)",
        ) from exc
    result.seconds = time.monotonic() - started
    return result


def _apply(
    project: Project,
    result: UpgradeResult,
    prepared: stacks.Prepared,
    *,
    build: bool,
    wait_timeout: int,
    reporter: Reporter,
) -> None:
    """The steps that change the stack, after the backup."""
    config = prepared.config
    app = in_order(config)
    wait = ("--wait", "--wait-timeout", str(wait_timeout))
    with _step(result, "build" if build else "pull", reporter) as step:
        if build and (targets := roles.build_targets(config)):
            project.run("build", *targets)
        else:
            project.run("pull", "--ignore-buildable", *app)
        step.detail = roles.app_image(config)
    with _step(result, "migration", reporter) as step:
        migrate = roles.migrate_service(config)
        try:
            project.run("run", "--rm", "--no-deps", migrate)
        finally:
            result.to_revision = running_revision(project, config)
        step.detail = f"schema {result.from_revision or 'none'} -> {result.to_revision}"
    with _step(result, "stores in step", reporter) as step:
        # Only those whose model changed are recreated: while one is (Redis with ACL users
        # instead of one password, from 0.1.0), the old app may fail on it until the new
        # one takes over: the window the drill counts.
        needed = [s for s in stores(config, app) if s not in prepared.left_out]
        project.run("up", "--detach", "--no-deps", *wait, *needed)
        step.detail = ", ".join(needed)
    for service in app:
        with _step(result, f"restart {service}", reporter):
            recreate(project, service, serving=service == app[0], wait_timeout=wait_timeout)
    wanted = [s for s in config["services"] if s not in prepared.left_out]
    with _step(result, "the rest in step", reporter):
        project.run("up", "--detach", *wait, "--remove-orphans", *wanted)
    with _step(result, "verify", reporter) as step:
        if failed := stacks.unhealthy(project, wanted, config):
            step.detail = ", ".join(failed)
            raise StackError(f"unhealthy after the upgrade: {', '.join(failed)}")
        if result.to_revision != head_revision():
            raise StackError(f"schema at {result.to_revision}, not {head_revision()}")
        step.detail = f"all healthy, schema {result.to_revision}"


def _roll_back(
    project: Project, result: UpgradeResult, *, config: dict[str, Any], reporter: Reporter
) -> None:
    """The schema back down if it moved, then the previous release as it ran."""
    previous = result.previous
    assert previous is not None  # recorded in the preflight, before anything changed
    try:
        if result.migrated:
            with _step(result, "schema back", reporter) as step:
                # The old code refuses a schema newer than its own head (0.1.0 does). The new
                # code's downgrade keeps the rows written meanwhile, which the backup has not.
                project.run("run", "--rm", "--no-deps", roles.migrate_service(config), "python",
                            "-c", DOWNGRADE_PY, result.from_revision or "base")  # fmt: skip
                back = running_revision(project, config)
                if back != result.from_revision:
                    raise StackError(f"schema at {back} after the downgrade")
                result.schema_restored = True
                step.detail = f"schema {result.to_revision} -> {back}"
        with _step(result, "previous release", reporter) as step:
            previous.run(
                project, "up", "--detach", "--no-deps", "--no-build", "--remove-orphans",
                "--wait", "--wait-timeout", str(ROLLBACK_TIMEOUT), *previous.services,
            )  # fmt: skip
            result.rolled_back = True
            step.detail = f"{result.rollback_image}, model {previous.model.name}"
    except (OpsError, OSError, CommandError) as exc:
        reporter.error(f"the rollback did not complete: {exc}")
