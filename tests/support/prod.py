"""The production file set brought up by `invoke up --prod`'s code under a project of its own:
secrets and a self-signed certificate in a directory of its own, HTTPS and HTTP on free
loopback ports, volumes named after the project; everything removed afterwards."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ops.paths import COMPOSE_DIR
from ops.proc import run
from ops.stack import keys, secrets
from ops.stack import up as stacks
from ops.stack.project import Project
from tests.support import apikeys
from tests.support.processes import free_port
from tests.support.tls import self_signed


@dataclass
class ProdStack:
    project: Project
    result: stacks.UpResult
    secrets_dir: Path
    https_port: int

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    def environ(self) -> dict[str, str]:
        """What a CLI subprocess needs to find this project's files (the same overrides)."""
        return dict(self.project.overrides)

    def client(self, key: str | None = None, timeout: float = 15) -> httpx.Client:
        """Through nginx over HTTPS, trusting the stack's own certificate; with `key`'s headers."""
        trust = ssl.create_default_context(cafile=str(self.secrets_dir / "tls_cert"))
        headers = apikeys.headers(key) if key else {}
        return httpx.Client(base_url=self.base_url, verify=trust, timeout=timeout, headers=headers)

    def create_key(self, scope: str = "write", tenant: str = "ops") -> str:
        """A key made the operators' way (`keys.create`): production has no development key."""
        return keys.create(keys.in_project(self.project), tenant=tenant, scope=scope).secret


def prod_project(
    name: str, root: Path, env: dict[str, str] | None = None, profiles: tuple[str, ...] = ()
) -> tuple[Project, Path]:
    """A production project `name` with its secrets under `root`; `env` adds lines to its
    .env.prod (e.g. a setting a test shortens); `profiles`: e.g. observability."""
    secrets.generate("prod", root=root)
    self_signed(root / "prod")
    env_file = root / ".env.prod"
    shutil.copy(COMPOSE_DIR / ".env.prod.example", env_file)
    text = env_file.read_text().replace("LLM_BASE_URL=https://api.openai.com/v1", "LLM_BASE_URL=")
    env_file.write_text(text + "".join(f"{k}={v}\n" for k, v in (env or {}).items()))
    https_port = free_port()
    project = Project(
        "prod",
        project_name=name,
        tls=True,
        profiles=profiles,
        overrides=(
            ("HTTPS_BIND", "127.0.0.1"),
            ("HTTPS_PORT", str(https_port)),
            ("SECRETS_DIR", str(root / "prod")),
            ("PROD_ENV_FILE", str(env_file)),
            ("PROD_VOLUME_PREFIX", name),
            # The backup service's directory: the test's own, never the checkout's ./backups.
            ("BACKUPS_DIR", str(root / "backups")),
            ("HTTP_BIND", "127.0.0.1"),
            ("HTTP_PORT", str(free_port())),
        ),
    )
    return project, root / "prod"


@contextmanager
def prod_stack(
    name: str,
    root: Path,
    env: dict[str, str] | None = None,
    profiles: tuple[str, ...] = (),
    *,
    build: bool = False,
) -> Iterator[ProdStack]:
    """Up (Qdrant and MinIO may be absent here: local stores, as `--allow-local-stores` allows),
    yielded whatever the outcome (the caller judges `result.ok`), always removed with its
    volumes. `build`: build the stack's images first, as `invoke up` does (else: as found)."""
    project, secrets_dir = prod_project(name, root, env, profiles)
    try:
        result = stacks.up(project, build=build, allow_local_stores=True)
        yield ProdStack(project, result, secrets_dir, int(dict(project.overrides)["HTTPS_PORT"]))
    finally:
        stacks.down(project)
        volumes = run(
            ["docker", "volume", "ls", "-q", "--filter", f"name={name}-"], capture=True, quiet=True
        ).stdout.split()
        if volumes:
            run(["docker", "volume", "rm", *volumes], capture=True, quiet=True)
