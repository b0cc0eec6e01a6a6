"""Every `docker compose` call goes through here: one place decides the files, env files,
project name and variables, and echoes the command it runs."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ops.console import json_listing, run
from ops.images.resolve import RESOLVED_ENV, Resolved
from ops.paths import COMPOSE_DIR, IMAGES_FILE, ROOT, STATE_DIR

Env = Literal["dev", "prod"]
BUILD_CA_FILE = STATE_DIR / "build-ca.pem"
HOST_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
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


@dataclass(frozen=True)
class Project:
    env: Env
    profiles: tuple[str, ...] = ()
    tls: bool = False  # add docker-compose.tls.yml (nginx on 8443 with secrets tls_cert/key)
    # Tests run their own project beside a developer's, with their own ports and volumes.
    project_name: str | None = None
    overrides: tuple[tuple[str, str], ...] = ()
    swarm: bool = False  # add docker-compose.swarm.yml (read by `invoke swarm.deploy` only)

    @property
    def name(self) -> str:
        return self.project_name or ("coach" if self.env == "dev" else "coach-prod")

    def files(self) -> list[Path]:
        second = "docker-compose.override.yml" if self.env == "dev" else "docker-compose.prod.yml"
        files = [COMPOSE_DIR / "docker-compose.yml", COMPOSE_DIR / second]
        if self.swarm:
            files.append(COMPOSE_DIR / "docker-compose.swarm.yml")
        if self.tls:
            files.append(COMPOSE_DIR / "docker-compose.tls.yml")
        if self.fallback_file.exists():
            files.append(self.fallback_file)
        return files

    @property
    def fallback_file(self) -> Path:
        return STATE_DIR / f"compose.fallback.{self.name}.yml"

    def argv(self, *args: str) -> list[str]:
        argv = [
            "docker",
            "compose",
            "--project-directory",
            str(COMPOSE_DIR),
            "-p",
            self.name,
            "--env-file",
            str(IMAGES_FILE),
        ]
        if RESOLVED_ENV.exists():
            argv += ["--env-file", str(RESOLVED_ENV)]
        if self.env == "prod" and (prod_env := self.prod_env_file()).is_file():
            # Also for interpolation: `environment:` entries such as LOG_LEVEL: ${LOG_LEVEL:-INFO}
            # win over env_file, so .env.prod must feed the ${...} too or its values are lost.
            argv += ["--env-file", str(prod_env)]
        for file in self.files():
            argv += ["-f", str(file)]
        for profile in self.profiles:
            argv += ["--profile", profile]
        return [*argv, *args]

    def prod_env_file(self) -> Path:
        path = Path(self.environ().get("PROD_ENV_FILE") or ".env.prod")
        return path if path.is_absolute() else COMPOSE_DIR / path

    def environ(self) -> dict[str, str]:
        env = dict(os.environ) | dict(self.overrides)
        env.setdefault("SECRETS_DIR", str(COMPOSE_DIR / "secrets" / self.env))
        env.setdefault("BUILD_CA_FILE", str(build_ca_file()))
        env.setdefault("APP_REVISION", _git_revision())
        return env

    def run(
        self,
        *args: str,
        capture: bool = False,
        check: bool = True,
        quiet: bool = False,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run(
            self.argv(*args),
            env=self.environ(),
            capture=capture,
            check=check,
            quiet=quiet,
            timeout=timeout,
        )

    def config(self) -> dict[str, Any]:
        done = self.run("config", "--format", "json", capture=True, quiet=True)
        config: dict[str, Any] = json.loads(done.stdout)
        return config

    def services(self) -> list[str]:
        return self.run("config", "--services", capture=True, quiet=True).stdout.split()

    def ps(self) -> list[dict[str, Any]]:
        done = self.run("ps", "--all", "--format", "json", capture=True, quiet=True)
        return json_listing(done.stdout)


def build_ca_file() -> Path:
    """The CA bundle builds trust: the host's store plus COACH_BUILD_CA_BUNDLE, if set.

    It reaches the Dockerfile as a BuildKit secret, so no layer keeps it.
    """
    from ops.settings import get_settings  # noqa: PLC0415

    parts: list[str] = []
    host = os.environ.get("SSL_CERT_FILE") or next(
        (p for p in HOST_CA_BUNDLES if Path(p).is_file()), None
    )
    if host and Path(host).is_file():
        parts.append(Path(host).read_text())
    extra = get_settings().build_ca_bundle
    if extra is not None:
        if not extra.is_file():
            raise ValueError(f"COACH_BUILD_CA_BUNDLE={extra}: no such file")
        parts.append(extra.read_text())
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    BUILD_CA_FILE.write_text("\n".join(parts))
    return BUILD_CA_FILE


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


def _git_revision() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def build_image(
    tag: str, *, context: Path, dockerfile: Path, args: dict[str, str], no_cache: bool = False
) -> float:
    """Build one image through `docker compose build` (the engine's BuildKit, with the CA
    bundle as a build secret) outside any stack; returns the seconds it took."""
    import tempfile  # noqa: PLC0415
    import time  # noqa: PLC0415

    spec = {
        "services": {
            "image": {
                "image": tag,
                "build": {
                    "context": str(context),
                    "dockerfile": str(dockerfile),
                    "args": args,
                    "secrets": ["build_ca"],
                },
            }
        },
        "secrets": {"build_ca": {"file": str(build_ca_file())}},
    }
    with tempfile.TemporaryDirectory() as scratch:
        compose_file = Path(scratch) / "build.json"
        compose_file.write_text(json.dumps(spec))
        started = time.monotonic()
        run(
            [
                "docker",
                "compose",
                "-p",
                "coach-build",
                "-f",
                str(compose_file),
                "build",
                *(["--no-cache"] if no_cache else []),
                "image",
            ],
            capture=True,
            quiet=True,
        )
        return time.monotonic() - started
