"""The production compose file set, rendered as a Swarm stack file.

`docker compose config` merges docker-compose.yml, docker-compose.prod.yml and
docker-compose.swarm.yml (plus the fallback override where an image is missing); this module
turns that merged model into what `docker stack deploy` takes, so no service is written twice:

- secret files and read-only bind-mounted config files become Swarm secrets and configs, named
  after their content (a changed file is a new object, which rolls the services using it);
- keys Swarm does not know (build, depends_on, restart, security_opt, shm_size, ...) are
  dropped or translated (tmpfs and shm_size become tmpfs mounts; ports are published on the
  node, `mode: host`);
- networks, volumes and secrets lose the project name compose gave them, so the stack's own
  namespace applies.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ops.errors import SwarmError

Kind = Literal["secret", "config"]
# Keys of the compose model that `docker stack deploy` ignores or refuses. Ordering, restarts
# and privilege options are Swarm's business there (deploy.*); the rest has no Swarm meaning.
DROPPED = frozenset(
    {
        "build",
        "depends_on",
        "restart",
        "security_opt",  # not settable on Swarm services (no-new-privileges: see the docs)
        "container_name",
        "profiles",
        "pull_policy",
        "env_file",  # already merged into `environment` by compose
        "shm_size",  # translated to a tmpfs on /dev/shm
        "tmpfs",  # translated to tmpfs mounts
    }
)
NAME_MAX = 64  # Swarm's limit for secret and config names


@dataclass(frozen=True)
class SwarmObject:
    """A secret or config the stack needs, with the file whose content it carries."""

    kind: Kind
    name: str  # the Swarm object's name: <stack>_<key>_<content digest>
    path: Path


@dataclass(frozen=True)
class StackFile:
    spec: dict[str, Any]
    objects: tuple[SwarmObject, ...]


def object_name(stack: str, key: str, path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_.-]", "-", key)[: NAME_MAX - len(stack) - 12]
    return f"{stack}_{slug}_{digest}"


def render(config: dict[str, Any], stack: str, services: list[str]) -> StackFile:
    """The stack file for `services` of a merged compose model, and the objects it uses."""
    objects: dict[str, SwarmObject] = {}
    secrets = {
        key: _add(objects, "secret", object_name(stack, key, Path(spec["file"])), spec["file"])
        for key, spec in config.get("secrets", {}).items()
        if "file" in spec and Path(spec["file"]).is_file()
    }
    rendered: dict[str, Any] = {}
    for name in services:
        rendered[name] = _service(config["services"][name], stack, secrets, objects)
    used_secrets = {s["source"] for svc in rendered.values() for s in svc.get("secrets", [])}
    used_networks = {n for svc in rendered.values() for n in svc.get("networks", [])}
    used_volumes = {
        v["source"]
        for svc in rendered.values()
        for v in svc.get("volumes", [])
        if v["type"] == "volume"
    }
    configs = {c["source"] for svc in rendered.values() for c in svc.get("configs", [])}
    spec: dict[str, Any] = {
        "services": rendered,
        "networks": {
            key: {k: v for k, v in net.items() if k not in {"name", "ipam"}}
            for key, net in config.get("networks", {}).items()
            if key in used_networks
        },
        "volumes": {
            key: _volume(vol)
            for key, vol in config.get("volumes", {}).items()
            if key in used_volumes
        },
        "secrets": {
            key: {"external": True, "name": secrets[key].name} for key in sorted(used_secrets)
        },
        "configs": {key: {"external": True, "name": key} for key in sorted(configs)},
    }
    needed = {secrets[k].name for k in used_secrets} | configs
    return StackFile(spec, tuple(o for o in objects.values() if o.name in needed))


def _add(objects: dict[str, SwarmObject], kind: Kind, name: str, path: str | Path) -> SwarmObject:
    return objects.setdefault(name, SwarmObject(kind, name, Path(path)))


def _volume(volume: dict[str, Any]) -> dict[str, Any]:
    if volume.get("external"):
        return {"external": True, "name": volume["name"]}
    return {k: v for k, v in volume.items() if k != "name"}


def _deploy(deploy: dict[str, Any]) -> dict[str, Any]:
    """The stack file schema wants CPU counts as strings ("0.5"); compose gives numbers."""
    resources = {
        kind: {k: str(v) if k == "cpus" else v for k, v in values.items()}
        for kind, values in deploy.get("resources", {}).items()
    }
    return {k: v for k, v in deploy.items() if v not in ({}, None)} | (
        {"resources": resources} if resources else {}
    )


def _service(
    spec: dict[str, Any],
    stack: str,
    secrets: dict[str, SwarmObject],
    objects: dict[str, SwarmObject],
) -> dict[str, Any]:
    out = {k: v for k, v in spec.items() if k not in DROPPED | {"volumes"} and v is not None}
    if "deploy" in spec:
        out["deploy"] = _deploy(spec["deploy"])
    # In a stable order; of compose's per-network options only aliases matter (the backend's
    # edge-only name, which nginx and TRUSTED_PROXIES rely on).
    networks = spec.get("networks") or {}
    aliases = {k: v["aliases"] for k, v in networks.items() if v and v.get("aliases")}
    out["networks"] = (
        {k: {"aliases": aliases[k]} if k in aliases else {} for k in sorted(networks)}
        if aliases
        else sorted(networks)
    )
    mounts, configs = _mounts(spec, stack, objects)
    if mounts:
        out["volumes"] = mounts
    if configs:
        out["configs"] = configs
    if "secrets" in spec:
        missing = [s["source"] for s in spec["secrets"] if s["source"] not in secrets]
        if missing:
            raise SwarmError(
                f"secret file(s) missing for {', '.join(missing)}",
                hint="`invoke secrets.generate --prod` creates the missing ones",
            )
        out["secrets"] = [{**s, "mode": 0o444} for s in spec["secrets"]]
    if "ports" in spec:
        # Published on the node that runs the task: the routing mesh needs IPVS, which a
        # host may lack, and it hides the client's address from nginx.
        out["ports"] = [
            {k: v for k, v in port.items() if k != "host_ip"}
            | {"mode": "host", "published": int(port["published"])}
            for port in spec["ports"]
        ]
    return out


def _mounts(
    spec: dict[str, Any], stack: str, objects: dict[str, SwarmObject]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(mounts, configs): volumes and tmpfs stay mounts; read-only bind mounts of files or
    directories become one config per file, which Swarm ships to whichever node runs the task."""
    mounts: list[dict[str, Any]] = []
    configs: list[dict[str, Any]] = []
    for volume in spec.get("volumes", []):
        if volume["type"] != "bind":
            mounts.append({k: v for k, v in volume.items() if k != "volume" or v})
            continue
        if not volume.get("read_only"):
            raise SwarmError(
                f"bind mount {volume['source']} is writable: a Swarm service cannot write to a "
                "host path of whatever node it lands on; use a volume"
            )
        source = Path(volume["source"])
        files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        for path in files:
            relative = path.relative_to(source) if source.is_dir() else None
            target = f"{volume['target']}/{relative}" if relative else volume["target"]
            obj = _add(objects, "config", object_name(stack, path.name, path), path)
            configs.append({"source": obj.name, "target": target, "mode": 0o444})
    mounts += [{"type": "tmpfs", "target": target} for target in spec.get("tmpfs") or []]
    if "shm_size" in spec:
        shm = "/dev/shm"  # noqa: S108 - the container's own shared memory, as shm_size sets
        mounts.append({"type": "tmpfs", "target": shm, "tmpfs": {"size": int(spec["shm_size"])}})
    return mounts, configs
