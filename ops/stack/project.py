"""Every `docker compose` call goes through here: one place decides the files, env files,
project name and variables, and echoes the command it runs."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ops.images.build import build_ca_file
from ops.images.resolve import RESOLVED_ENV
from ops.paths import COMPOSE_DIR, IMAGES_FILE, ROOT, STATE_DIR
from ops.proc import json_listing, run
from ops.settings import get_settings

Env = Literal["dev", "prod"]


@dataclass(frozen=True)
class Project:
    env: Env
    profiles: tuple[str, ...] = ()
    tls: bool = False  # add docker-compose.tls.yml (nginx HTTPS with secrets tls_cert/key)
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
        # The compose file's ${COACH_PYPI_MIRROR}, validated by the settings.
        env.setdefault("COACH_PYPI_MIRROR", get_settings().pypi_mirror or "")
        env.setdefault("APP_REVISION", _git_revision())
        if self.env == "dev":
            # docker-compose.tls.yml publishes 0.0.0.0:443 for production; a developer's
            # HTTPS stays on the loopback, on a port that needs no root-owned one free.
            env.setdefault("HTTPS_BIND", "127.0.0.1")
            env.setdefault("HTTPS_PORT", "8443")
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

    def volumes(self) -> list[str]:
        """The project's own volumes (what `down --volumes` deletes; external ones are not)."""
        done = run(
            [
                "docker",
                "volume",
                "ls",
                "--quiet",
                "--filter",
                f"label=com.docker.compose.project={self.name}",
            ],
            capture=True,
            quiet=True,
        )
        return sorted(done.stdout.split())


def _git_revision() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"
