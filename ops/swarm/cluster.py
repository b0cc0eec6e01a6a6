"""The production stack on Docker Swarm: what `invoke swarm.*` does, callable by tests.

deploy = the compose `up` of a swarm: resolve images and secrets like `up --prod`, render the
stack file (stackfile.py), create the secrets and configs it names, `docker stack deploy`, then
wait until every service runs its replicas healthy (Swarm counts a task as running only once its
healthcheck passes) and every job has completed, or until an update rolled itself back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.console import say
from ops.errors import CommandError, SwarmError
from ops.paths import STATE_DIR
from ops.proc import json_listing, run
from ops.stack import roles
from ops.stack import up as stacks
from ops.stack.project import Project
from ops.swarm.stackfile import SwarmObject, render

NAMESPACE = "com.docker.stack.namespace"
APP_IMAGE_REPO = "coach/app"
PLACEMENT = re.compile(r"node\.labels\.(\S+)\s*==\s*(\S+)")
SETTLED = {None, "completed", "rollback_completed"}
# A deploy whose update ended in a rollback failed; a rollback asked for succeeded with it.
FAILED_UPDATES = {"rollback_completed", "rollback_paused", "paused"}
FAILED_ROLLBACKS = {"rollback_paused", "paused"}


def docker_json(*args: str) -> list[dict[str, Any]]:
    """A docker CLI listing as a list of objects (`--format json` prints one per line)."""
    return json_listing(run(["docker", *args], capture=True, quiet=True).stdout)


# --- the swarm itself -----------------------------------------------------------------------


def swarm_state() -> str:
    """ "active" on a swarm node; "inactive" otherwise ("pending"/"error" in between)."""
    info = docker_json("info", "--format", "{{json .Swarm}}")[0]
    if info.get("LocalNodeState") == "active" and not info.get("ControlAvailable"):
        return "worker"  # a worker node cannot deploy: stacks are managed from a manager
    return str(info.get("LocalNodeState") or "inactive")


def require_manager() -> None:
    state = swarm_state()
    if state == "worker":
        raise SwarmError("this node is a swarm worker: run swarm tasks on a manager node")
    if state != "active":
        raise SwarmError(
            "this Docker engine is not in a swarm: `invoke swarm.init` makes it a one-node swarm "
            "(or `docker swarm join` it to yours)"
        )


def init(advertise_addr: str | None = None, *, label: bool = True) -> bool:
    """Make this engine a one-node swarm (if it is not in one) and label it for every role.
    Returns whether a swarm was created."""
    created = False
    if swarm_state() == "inactive":
        argv = ["docker", "swarm", "init"]
        if advertise_addr:
            argv += ["--advertise-addr", advertise_addr]
        run(argv, capture=True)
        created = True
    if label:
        node = run(["docker", "info", "--format", "{{.Swarm.NodeID}}"], capture=True, quiet=True)
        adds = [arg for pair in node_labels() for arg in ("--label-add", pair)]
        run(["docker", "node", "update", *adds, node.stdout.strip()], capture=True)
    return created


def placement_labels(services: dict[str, Any]) -> dict[str, list[str]]:
    """`label=value` -> the services whose `node.labels.<label> == <value>` placement
    constraint needs it, of a compose model's or a stack file's services."""
    wanted: dict[str, list[str]] = {}
    for name, service in sorted(services.items()):
        for constraint in service.get("deploy", {}).get("placement", {}).get("constraints", []):
            if m := PLACEMENT.fullmatch(constraint):
                wanted.setdefault(f"{m[1]}={m[2]}", []).append(name)
    return wanted


def node_labels() -> list[str]:
    """The node labels (`label=value`) the production stack's placement constraints name, of
    every profile: what `swarm.init` puts on a one-node swarm."""
    # Placement is all that is read: an empty env file stands in for .env.prod, which a new
    # swarm may not have yet.
    project = project_for("coach", profiles=("*",), overrides=(("PROD_ENV_FILE", os.devnull),))
    return sorted(placement_labels(project.config()["services"]))


def leave() -> None:
    run(["docker", "swarm", "leave", "--force"], capture=True, check=False)


def check_placement(spec: dict[str, Any]) -> None:
    """Every `node.labels.X == true` constraint must match a node, or the service would wait
    forever as "pending" with no error in sight."""
    wanted = placement_labels(spec["services"])
    nodes = docker_json(
        "node", "inspect", *[n["ID"] for n in docker_json("node", "ls", "--format", "json")]
    )
    have = {f"{k}={v}" for node in nodes for k, v in node["Spec"].get("Labels", {}).items()}
    missing = {label: services for label, services in wanted.items() if label not in have}
    if missing:
        lines = [f"  {label}: needed by {', '.join(s)}" for label, s in sorted(missing.items())]
        first = next(iter(sorted(missing)))
        raise SwarmError(
            "no node carries these labels:\n" + "\n".join(lines) + "\nlabel the node(s) that "
            f"should run them, e.g. `docker node update --label-add {first} <node>` "
            "(`invoke swarm.init` labels a one-node swarm for every role)"
        )


# --- deploy -----------------------------------------------------------------------------------


@dataclass
class DeployResult:
    stack: str
    stack_file: Path
    app_image: str
    seconds: float
    created: list[str] = field(default_factory=list)  # secrets and configs created
    left_out: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # service -> why

    @property
    def ok(self) -> bool:
        return not self.failed


def project_for(
    stack: str,
    *,
    profiles: tuple[str, ...] = (),
    tls: bool = False,
    overrides: tuple[tuple[str, str], ...] = (),
) -> Project:
    # Data volumes are named after the stack, so a swarm stack never shares a compose
    # project's volumes on the same host.
    return Project(
        "prod",
        profiles,
        tls=tls,
        project_name=stack,
        swarm=True,
        overrides=(("PROD_VOLUME_PREFIX", stack), *overrides),
    )


def app_image_for(project: Project, config: dict[str, Any] | None = None) -> str:
    """Build the app image and name it by content: a rebuilt image is a new reference, which
    is what makes Swarm roll the services using it (the same tag would change nothing).
    `config`: the project's compose model, if at hand."""
    config = config if config is not None else project.config()
    project.run("build", *roles.build_targets(config))
    built = roles.app_image(config)
    image_id = run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", built], capture=True, quiet=True
    ).stdout.strip()
    ref = f"{APP_IMAGE_REPO}:{image_id.removeprefix('sha256:')[:12]}"
    run(["docker", "tag", built, ref], quiet=True)
    return ref


def ensure_objects(stack: str, objects: tuple[SwarmObject, ...]) -> list[str]:
    """Create the secrets and configs that do not exist yet (they are immutable, and named by
    content, so an existing name already holds the right data). Returns the names created."""
    existing = {
        kind: set(
            run(
                ["docker", kind, "ls", "--format", "{{.Name}}"], capture=True, quiet=True
            ).stdout.split()
        )
        for kind in ("secret", "config")
    }
    created = []
    for obj in objects:
        if obj.name in existing[obj.kind]:
            continue
        data = obj.path.read_bytes() or b"\n"  # Swarm refuses empty secrets; the app strips
        run(
            ["docker", obj.kind, "create", "--label", f"{NAMESPACE}={stack}", obj.name, "-"],
            capture=True,
            quiet=True,
            input_text=data.decode(),
        )
        created.append(obj.name)
    return created


def deploy(
    stack: str,
    *,
    app_image: str | None = None,
    profiles: tuple[str, ...] = (),
    tls: bool = False,
    overrides: tuple[tuple[str, str], ...] = (),
    timeout: float = 600,
) -> DeployResult:
    started = time.time()
    require_manager()
    project = project_for(stack, profiles=profiles, tls=tls, overrides=overrides)
    # Secrets checked, images resolved (pinned -> loaded -> baked), fallbacks written: as `up`.
    # Swarm keeps running on local stores where it must (issue #13: a flag of its own is still
    # to come), but never silently: the app reports itself degraded (STORES_DEGRADED).
    prepared = stacks.prepare_stack(project, allow_local_stores=True)
    left_out, notes = prepared.left_out, prepared.notes
    app_image = app_image or app_image_for(project, prepared.config)
    project = dataclasses.replace(project, overrides=(*project.overrides, ("APP_IMAGE", app_image)))
    config = project.config()  # again: with the app image and the fallback override
    wanted = [s for s in config["services"] if s not in left_out]
    stack_file = render(config, stack, wanted)
    check_placement(stack_file.spec)
    path = STATE_DIR / "swarm" / f"{stack}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stack_file.spec, indent=2) + "\n")
    result = DeployResult(stack, path, app_image, 0.0, left_out=left_out, notes=notes)
    result.created = ensure_objects(stack, stack_file.objects)
    run(
        [
            "docker",
            "stack",
            "deploy",
            "--detach=true",
            "--prune",
            "--resolve-image",
            "never",
            "--compose-file",
            str(path),
            stack,
        ],
        capture=True,
    )
    result.failed = wait(stack, since=started, timeout=timeout)
    result.seconds = time.time() - started
    if result.ok:
        prune_objects(stack)
    return result


# --- watching services ------------------------------------------------------------------------


def _listing(stack: str) -> dict[str, dict[str, Any]]:
    """`docker service ls` rows of the stack by full service name (replica counts as the CLI
    computes them, jobs' completions included)."""
    rows = docker_json(
        "service", "ls", "--filter", f"label={NAMESPACE}={stack}", "--format", "json"
    )
    return {row["Name"]: row for row in rows}


def services(stack: str) -> list[dict[str, Any]]:
    """`docker service inspect` of every service of the stack."""
    ids = [row["ID"] for row in _listing(stack).values()]
    return docker_json("service", "inspect", *ids) if ids else []


def short_name(stack: str, service: dict[str, Any]) -> str:
    return str(service["Spec"]["Name"]).removeprefix(f"{stack}_")


def _tasks(service_id: str) -> list[dict[str, Any]]:
    return docker_json("service", "ps", "--no-trunc", "--format", "json", service_id)


def progress(stack: str, since: float = 0.0, *, rollback: bool = False) -> dict[str, str]:
    """Per service: "" when settled, else what it is waiting for (or why it failed, prefixed
    "FAILED"). Updates started before `since` (epoch seconds) are history, not failures."""
    failures = FAILED_ROLLBACKS if rollback else FAILED_UPDATES
    state: dict[str, str] = {}
    listing = _listing(stack)
    for service in services(stack):
        name = short_name(stack, service)
        update = service.get("UpdateStatus") or {}
        fresh = _timestamp(update.get("StartedAt")) >= since
        replicas = str(listing.get(service["Spec"]["Name"], {}).get("Replicas", ""))
        if fresh and update.get("State") in failures:
            state[name] = f"FAILED update: {update.get('State')}: {update.get('Message', '')}"
        elif fresh and update.get("State") not in SETTLED:
            state[name] = f"update {update.get('State')}"
        elif any(mode.endswith("Job") for mode in service["Spec"].get("Mode", {})):
            m = re.search(r"\((\d+)/(\d+) completed\)", replicas)
            state[name] = "" if m and m[1] == m[2] else f"job {replicas}"
        else:
            m = re.fullmatch(r"(\d+)/(\d+).*", replicas)
            state[name] = "" if m and m[1] == m[2] else f"replicas {replicas}"
    return state


def wait(
    stack: str,
    *,
    since: float = 0.0,
    timeout: float = 600,
    only: set[str] | None = None,
    rollback: bool = False,
) -> dict[str, str]:
    """Until every (or each `only`) service settles; returns the ones that did not, with why
    and their last task errors."""
    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    while True:
        state = {
            k: v
            for k, v in progress(stack, since, rollback=rollback).items()
            if only is None or k in only
        }
        pending = {k: v for k, v in state.items() if v}
        if pending != last and pending:
            say("waiting for " + ", ".join(f"{k} ({v})" for k, v in sorted(pending.items())))
        last = pending
        failed = {k: v for k, v in pending.items() if v.startswith("FAILED")}
        if failed or not pending or time.monotonic() > deadline:
            return {name: why + _task_errors(stack, name) for name, why in pending.items()}
        time.sleep(2)


def _task_errors(stack: str, name: str) -> str:
    rows = [t for t in _tasks(f"{stack}_{name}") if t.get("Error")][:3]
    return "".join(f"\n  task {t['Name']}: {t['CurrentState']}: {t['Error']}" for t in rows)


def _timestamp(value: str | None) -> float:
    if not value:
        return 0.0
    from datetime import datetime  # noqa: PLC0415

    # Docker prints nanoseconds; Python parses microseconds.
    text = re.sub(r"(\.\d{6})\d*", r"\1", value).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def status_rows(stack: str) -> list[tuple[str, ...]]:
    """service, mode, replicas, image, last update, ports — one row per service."""
    listing = _listing(stack)
    rows: list[tuple[str, ...]] = []
    for service in sorted(services(stack), key=lambda s: str(s["Spec"]["Name"])):
        row = listing.get(service["Spec"]["Name"], {})
        update = (service.get("UpdateStatus") or {}).get("State", "-")
        rows.append(
            (
                short_name(stack, service),
                str(row.get("Mode", "")),
                str(row.get("Replicas", "")),
                str(row.get("Image", "")),
                update,
                ", ".join(
                    f"{p['PublishedPort']}->{p['TargetPort']}/{p.get('PublishMode', '')}"
                    for p in service["Spec"].get("EndpointSpec", {}).get("Ports") or []
                ),
            )
        )
    return rows


# --- day two ------------------------------------------------------------------------------------


def scale(stack: str, counts: dict[str, int], *, timeout: float = 300) -> dict[str, str]:
    require_manager()
    started = time.time()
    run(
        [
            "docker",
            "service",
            "scale",
            "--detach",
            *[f"{stack}_{name}={n}" for name, n in counts.items()],
        ],
        capture=True,
    )
    return wait(stack, since=started, timeout=timeout, only=set(counts))


def rollback(stack: str, names: list[str], *, timeout: float = 300) -> dict[str, str]:
    """Each service back to its previous spec (what it ran before the last deploy)."""
    require_manager()
    started = time.time()
    for name in names:
        run(["docker", "service", "rollback", "--detach", f"{stack}_{name}"], capture=True)
    return wait(stack, since=started, timeout=timeout, only=set(names), rollback=True)


def remove(stack: str, *, timeout: float = 120) -> list[str]:
    """Remove the stack's services, networks, secrets and configs; data volumes stay (their
    names are returned). Waits until the networks and the tasks' containers are gone, so a
    redeploy can follow and the volumes can be deleted."""
    require_manager()
    volumes = sorted(
        {
            mount["Source"]
            for service in services(stack)
            for mount in service["Spec"]["TaskTemplate"]["ContainerSpec"].get("Mounts") or []
            if mount.get("Type") == "volume"
        }
    )
    run(["docker", "stack", "rm", stack], capture=True, check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = docker_json(
            "network", "ls", "--filter", f"label={NAMESPACE}={stack}", "--format", "json"
        )
        if not left and not services(stack):
            # Finished job tasks keep their containers after their service is gone.
            containers = run(
                ["docker", "ps", "--all", "--quiet", "--filter", f"label={NAMESPACE}={stack}"],
                capture=True,
                quiet=True,
            ).stdout.split()
            if containers:
                # Running ones (still stopping) refuse; the next round takes them.
                run(["docker", "rm", *containers], capture=True, check=False, quiet=True)
                time.sleep(1)
                continue
            return volumes  # tasks' containers gone too: the volumes are free
        time.sleep(1)
    raise SwarmError(
        f"stack {stack} is not gone after {timeout:.0f}s (services, networks or task "
        "containers remain)",
        hint=f"`docker stack ps {stack}` shows what is left; run swarm.rm again",
    )


def prune_objects(stack: str) -> list[str]:
    """Secrets and configs of the stack that no service's current or previous spec uses:
    left by earlier deploys of changed files. The previous spec's stay, for rollbacks."""
    used: set[str] = set()
    for service in services(stack):
        for spec in (service.get("Spec"), service.get("PreviousSpec")):
            container = (spec or {}).get("TaskTemplate", {}).get("ContainerSpec", {})
            used |= {s["SecretName"] for s in container.get("Secrets") or []}
            used |= {c["ConfigName"] for c in container.get("Configs") or []}
    removed = []
    for kind in ("secret", "config"):
        names = run(
            [
                "docker",
                kind,
                "ls",
                "--filter",
                f"label={NAMESPACE}={stack}",
                "--format",
                "{{.Name}}",
            ],
            capture=True,
            quiet=True,
        ).stdout.split()
        for name in names:
            if name not in used:
                try:
                    run(["docker", kind, "rm", name], capture=True, quiet=True)
                    removed.append(name)
                except CommandError:
                    pass  # still held by a task that is shutting down: next deploy's turn
    return removed
