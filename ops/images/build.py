"""Building images outside any stack: `docker compose build` (the engine's BuildKit, with no
buildx) with the host's CA bundle, plus COACH_BUILD_CA_BUNDLE, passed as a build secret, so
builds reach PyPI behind a TLS-intercepting proxy and no layer keeps the CA."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from ops.errors import ConfigError
from ops.paths import STATE_DIR
from ops.proc import run
from ops.settings import get_settings

BUILD_CA_FILE = STATE_DIR / "build-ca.pem"
HOST_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def build_ca_file() -> Path:
    """The CA bundle builds trust: the host's store plus COACH_BUILD_CA_BUNDLE, if set.

    It reaches the Dockerfile as a BuildKit secret, so no layer keeps it.
    """
    parts: list[str] = []
    host = os.environ.get("SSL_CERT_FILE") or next(
        (p for p in HOST_CA_BUNDLES if Path(p).is_file()), None
    )
    if host and Path(host).is_file():
        parts.append(Path(host).read_text())
    extra = get_settings().build_ca_bundle
    if extra is not None:
        if not extra.is_file():
            raise ConfigError(f"COACH_BUILD_CA_BUNDLE={extra}: no such file")
        parts.append(extra.read_text())
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    BUILD_CA_FILE.write_text("\n".join(parts))
    return BUILD_CA_FILE


def build_image(
    tag: str, *, context: Path, dockerfile: Path, args: dict[str, str], no_cache: bool = False
) -> float:
    """Build one image through `docker compose build` (the engine's BuildKit, with the CA
    bundle as a build secret) outside any stack; returns the seconds it took."""
    # COACH_PYPI_MIRROR only when set: most Dockerfiles built here declare no PYPI_MIRROR.
    mirror = get_settings().pypi_mirror
    build_args = {"PYPI_MIRROR": mirror, **args} if mirror else args
    spec = {
        "services": {
            "image": {
                "image": tag,
                "build": {
                    "context": str(context),
                    "dockerfile": str(dockerfile),
                    "args": build_args,
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
