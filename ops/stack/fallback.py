"""Where an image cannot be had: its services left out and the app switched to the equivalent
local store (Qdrant local mode, a local object directory) through a generated override file."""

from __future__ import annotations

import json
from typing import Any

from ops.images.resolve import Resolved
from ops.stack.project import Project

# Services whose image may be missing, and what the app uses instead (volumes shared by the
# app containers; see coach/vectors.py for how local mode is shared safely).
REPLACEABLE: dict[str, tuple[list[str], dict[str, str], str]] = {
    "QDRANT_IMAGE": (["qdrant"], {"QDRANT_URL": ""}, "Qdrant local mode on volume local-stores"),
    "MINIO_IMAGE": (
        ["minio", "minio-init"],
        {"S3_ENDPOINT_URL": ""},
        "local object directory on volume local-stores",
    ),
}
OPTIONAL = {"GRAFANA_IMAGE": ["grafana"], "JAEGER_IMAGE": ["jaeger"]}
APP_SERVICES = ("migrate", "backend", "celery-worker", "celery-beat")


def write_fallback(project: Project, resolved: list[Resolved]) -> tuple[list[str], list[str]]:
    """An override for images that cannot be had: their services left out, the app switched
    to the equivalent local store. Returns (services left out, notes)."""
    missing = {r.var for r in resolved if not r.available}
    left_out: list[str] = []
    notes: list[str] = []
    app_env: dict[str, str] = {}
    for var, (skipped, env, note) in REPLACEABLE.items():
        if var in missing:
            left_out += skipped
            app_env |= env
            notes.append(f"{var} unavailable: {', '.join(skipped)} left out; app uses {note}")
    for var, skipped in OPTIONAL.items():
        if var in missing:
            left_out += skipped
            notes.append(f"{var} unavailable: {', '.join(skipped)} left out")
    if not app_env:
        project.fallback_file.unlink(missing_ok=True)
        return left_out, notes
    depends = {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    if "qdrant" not in left_out:
        depends["qdrant"] = {"condition": "service_healthy"}
    if "minio-init" not in left_out:
        depends["minio-init"] = {"condition": "service_completed_successfully"}
    app_depends = {**depends, "migrate": {"condition": "service_completed_successfully"}}
    services: dict[str, Any] = {}
    for name in APP_SERVICES:
        services[name] = {
            "environment": {**app_env, "DATA_DIR": "/var/lib/coach"},
            "volumes": ["local-stores:/var/lib/coach"],
        }
        if name != "migrate":
            services[name]["depends_on"] = app_depends
    # Production data survives `down -v` here too: the volume is external, like the others.
    volume = (
        {"external": True, "name": f"{project.name}-local-stores"} if project.env == "prod" else {}
    )
    lines = [
        "# Written by `invoke up` for images this host cannot get; do not edit.",
        json.dumps({"services": services, "volumes": {"local-stores": volume}}, indent=2),
    ]
    project.fallback_file.parent.mkdir(parents=True, exist_ok=True)
    # depends_on must be replaced, not merged, or the missing services would be pulled in.
    text = "\n".join(lines).replace('"depends_on": {', '"depends_on": !override {')
    project.fallback_file.write_text(text + "\n")
    return left_out, notes
