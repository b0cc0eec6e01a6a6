"""The whole application in one process, for hosts where no Docker engine can be had.

Nothing external is used: SQLite, Qdrant's local mode, a local object directory, eager tasks
and the offline LLM; the API, /health and /metrics are the same as the full stack's.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ops.console import say
from ops.paths import ROOT, STATE_DIR

# Settings that would point the app at external services; unset so they cannot leak in.
EXTERNAL = ("POSTGRES_HOST", "REDIS_HOST", "QDRANT_URL", "S3_ENDPOINT_URL", "LLM_BASE_URL")


def serve(host: str = "127.0.0.1", port: int = 8000) -> int:
    env = {k: v for k, v in os.environ.items() if k not in EXTERNAL}
    env.setdefault("DATA_DIR", str(STATE_DIR / "embedded"))
    say(f"embedded mode: http://{host}:{port}/health  (data in {env['DATA_DIR']}; Ctrl-C stops)")
    argv = [sys.executable, "-m", "uvicorn", "backend.app:app", "--host", host, "--port", str(port)]
    try:
        return subprocess.call(argv, env=env, cwd=ROOT)
    except KeyboardInterrupt:
        return 0
