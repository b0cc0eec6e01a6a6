"""The whole application in one process, for hosts where no Docker engine can be had.

Nothing external is used: SQLite, Qdrant's local mode, a local object directory, eager tasks
and the offline LLM; the API, /health and /metrics are the same as the full stack's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ops.console import say
from ops.paths import ROOT, STATE_DIR
from ops.stack import secrets

# Settings that would point the app at external services; unset so they cannot leak in.
EXTERNAL = ("POSTGRES_HOST", "REDIS_HOST", "QDRANT_URL", "S3_ENDPOINT_URL", "LLM_BASE_URL")


def serve(host: str = "127.0.0.1", port: int = 8000) -> int:
    """Become the server: on success this never returns, and the exit code is uvicorn's."""
    env = {k: v for k, v in os.environ.items() if k not in EXTERNAL}
    env.setdefault("DATA_DIR", str(STATE_DIR / "embedded"))
    env.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")  # as the image: stable HTTP names
    # The dev stack's key, registered by the app at startup: the same file, the same clients.
    if "API_KEY_BOOTSTRAP_FILE" not in env:
        env["API_KEY_BOOTSTRAP_FILE"] = str(secrets.dev_api_key())
    say(f"embedded mode: http://{host}:{port}/health  (data in {env['DATA_DIR']}; Ctrl-C stops)")
    say(secrets.dev_api_key_note(Path(env["API_KEY_BOOTSTRAP_FILE"])))
    argv = [sys.executable, "-m", "uvicorn", "backend.app:app", "--host", host, "--port", str(port)]
    # exec, not a child: SIGTERM/SIGINT sent to this pid then reach uvicorn itself, so stopping
    # `invoke up --embedded` can never leave an orphaned server holding the port.
    sys.stdout.flush()
    sys.stderr.flush()  # exec discards what Python still buffers
    try:
        os.chdir(ROOT)
        os.execvpe(argv[0], argv, env)  # noqa: S606 - an argument list, no shell involved
    except OSError as exc:
        say(f"embedded mode: cannot start {argv[0]}: {exc}")
        return 127
