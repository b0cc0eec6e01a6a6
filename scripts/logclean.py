"""`invoke logs-clean` without Invoke: the same command line (ops/cli/data.py), see --help."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from anywhere

from ops.cli.data import LOGS_CLEAN

main = LOGS_CLEAN.main

if __name__ == "__main__":
    sys.exit(main(prog=f"scripts/{Path(__file__).name}"))
