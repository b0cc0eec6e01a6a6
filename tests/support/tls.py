"""Test certificates: a self-signed one for localhost, as nginx reads it (uid 101)."""

from __future__ import annotations

from pathlib import Path

from ops.proc import run


def self_signed(directory: Path) -> None:
    """tls_cert and tls_key (RSA 2048, CN and SAN localhost, two days) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(directory / "tls_key"),
            "-out",
            str(directory / "tls_cert"),
        ],
        capture=True,
        quiet=True,
    )
    (directory / "tls_key").chmod(0o644)  # read by nginx's uid 101 through the bind mount
