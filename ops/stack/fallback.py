"""Where an image cannot be had: its services left out and the app switched to the equivalent
local store (Qdrant local mode, a local object directory) through a generated override file.

Which services may be left out, and for which image, is said by their labels (coach.fallback,
coach.image-var: ops/stack/roles.py); what the app uses instead depends only on the store.
"""

from __future__ import annotations

import json
from typing import Any

from ops.errors import StackError
from ops.images.resolve import Resolved
from ops.stack import roles
from ops.stack.project import Project

# What the app uses in place of a store whose service is left out: the setting that, empty,
# switches it to the local equivalent under DATA_DIR on the volume the app containers share
# (see coach/vectors.py for how local mode is shared safely).
LOCAL_STORES: dict[roles.Store, tuple[str, str]] = {
    "vectors": ("QDRANT_URL", "Qdrant local mode"),
    "objects": ("S3_ENDPOINT_URL", "local object directory"),
}
DATA_DIR = "/var/lib/coach"  # the app's DATA_DIR in its containers, on volume local-stores
# The app setting naming the stores production runs locally: /health, coach_degraded and the
# alert AppDegradedLocalStores say so (coach/health.py).
DEGRADED_VAR = "STORES_DEGRADED"
ALLOW_FLAG = "--allow-local-stores"


class LocalStoresRefused(StackError):
    """Production would run on local stores, and the operator did not allow it."""


def local_stores(resolved: list[Resolved], config: dict[str, Any]) -> list[tuple[str, Resolved]]:
    """(service, its image) for each service the local-stores fallback would leave out."""
    fallbacks = roles.fallbacks(config)
    return [
        (service, r)
        for r in resolved
        if not r.available and r.var in fallbacks and fallbacks[r.var][1] == "local-stores"
        for service in fallbacks[r.var][0]
    ]


def degraded_stores(
    env: str, resolved: list[Resolved], config: dict[str, Any], *, allow_local_stores: bool
) -> list[str]:
    """The stores production will run locally (none in development, where that is normal).
    Production refuses, naming each service and image, unless `allow_local_stores`."""
    missing = local_stores(resolved, config)
    if env != "prod" or not missing:
        return []
    if not allow_local_stores:
        raise LocalStoresRefused(
            "production needs images this host cannot get: "
            + "; ".join(
                f"{service} ({r.var}={r.pinned}: {r.detail or 'unavailable'})"
                for service, r in missing
            ),
            hint=f"make them available (`invoke images.resolve`), or pass {ALLOW_FLAG} to run "
            "production on local stores, reported as degraded by /health, coach_degraded and "
            "the alert AppDegradedLocalStores",
        )
    stores = {roles.store_of(config, service) for service, _ in missing}
    return sorted(s for s in stores if s)


def write_fallback(
    project: Project,
    resolved: list[Resolved],
    config: dict[str, Any],
    *,
    degraded: list[str] | None = None,
) -> tuple[list[str], list[str]]:
    """An override for images that cannot be had: their services left out, the app switched
    to the equivalent local store. `config`: the project's compose model without an earlier
    fallback override. `degraded`: the stores production runs locally (`degraded_stores`),
    told to the app. Returns (services left out, notes)."""
    fallbacks = roles.fallbacks(config)
    left_out: list[str] = []
    notes: list[str] = []
    app_env: dict[str, str] = {}
    for var in (r.var for r in resolved if not r.available and r.var in fallbacks):
        skipped, kind = fallbacks[var]
        left_out += skipped
        note = f"{var} unavailable: {', '.join(skipped)} left out"
        if kind == "local-stores":
            stores = [s for s in (roles.store_of(config, n) for n in skipped) if s]
            if not stores or any(s not in LOCAL_STORES for s in stores):
                raise StackError(
                    f"{', '.join(skipped)}: {roles.FALLBACK}=local-stores, but the app has a "
                    f"local equivalent only of the stores {', '.join(LOCAL_STORES)}"
                )
            app_env |= {LOCAL_STORES[s][0]: "" for s in stores}
            uses = ", ".join(LOCAL_STORES[s][1] for s in stores)
            note += f"; app uses {uses} on volume local-stores"
        notes.append(note)
    if degraded:
        app_env[DEGRADED_VAR] = ",".join(degraded)
        notes.append(f"production degraded: local stores ({', '.join(degraded)}), as allowed")
    services: dict[str, Any] = {}
    backups = roles.backup_services(config)
    if app_env:
        for name in roles.app_services(config):
            services[name] = {
                "environment": {**app_env, "DATA_DIR": DATA_DIR},
                "volumes": [f"local-stores:{DATA_DIR}"],
            }
        # The scheduled backups read the same local stores. They run as root without
        # capabilities (ops/data/scheduled.py); the volume is the app user's (0750): to read it
        # and local mode's lock files, and to hand back to that user what reading created
        # (InStackTarget.after_writes), DAC_OVERRIDE and CHOWN.
        for name in backups:
            services[name] = {
                "environment": {**app_env, "DATA_DIR": DATA_DIR},
                "volumes": [f"local-stores:{DATA_DIR}"],
                "cap_add": ["DAC_OVERRIDE", "CHOWN"],
            }
    # Nothing may wait for a service left out, or `up` would pull it back in. On local stores
    # the backups start after the app, which makes the stores' directories as its own user.
    first_app = (
        {roles.settings_service(config): {"condition": "service_healthy"}}
        if app_env and backups
        else {}
    )
    for name, spec in config["services"].items():
        depends = spec.get("depends_on") or {}
        wanted = {**depends, **first_app} if name in backups else depends
        kept = {k: v for k, v in wanted.items() if k not in left_out}
        if name not in left_out and kept != depends:
            services.setdefault(name, {})["depends_on"] = kept
    if not services:
        project.fallback_file.unlink(missing_ok=True)
        return left_out, notes
    volumes: dict[str, Any] = {}
    if app_env:
        # Production data survives `down -v` here too: the volume is external, like the others.
        volumes["local-stores"] = (
            {"external": True, "name": f"{project.name}-local-stores"}
            if project.env == "prod"
            else {}
        )
    lines = [
        "# Written by `invoke up` for images this host cannot get; do not edit.",
        json.dumps({"services": services, "volumes": volumes}, indent=2),
    ]
    project.fallback_file.parent.mkdir(parents=True, exist_ok=True)
    # depends_on must be replaced, not merged, or the missing services would be pulled in.
    text = "\n".join(lines).replace('"depends_on": {', '"depends_on": !override {')
    project.fallback_file.write_text(text + "\n")
    return left_out, notes
