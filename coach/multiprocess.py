"""Prometheus multiprocess mode, prepared before prometheus_client is imported.

prometheus_client decides once, when it is first imported, whether values live in memory or in
files under PROMETHEUS_MULTIPROC_DIR: the directory must be set (and emptied of an earlier run's
files) before that. Hence this module imports nothing of prometheus_client, and a process that
has imported it too early fails loudly instead of silently losing its children's metrics.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    value = os.environ.get(ENV)
    return Path(value) if value else None


def prepare(default: Path | None = None) -> Path | None:
    """Use $PROMETHEUS_MULTIPROC_DIR (else `default`, exported for child processes), created
    and emptied of metric files: those left by an earlier run would add its counts to this one's.

    Call it once, in the parent process, before any process of the group records a metric.
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError(
            "prometheus_client was imported before its multiprocess directory was prepared; "
            "metrics of child processes would be lost"
        )
    path = multiprocess_dir()
    if path is None:
        if default is None:
            return None
        os.environ[ENV] = str(default)
        path = default
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in path.glob("*.db"):  # only prometheus_client's files, whatever else is there
        stale.unlink(missing_ok=True)
    return path
