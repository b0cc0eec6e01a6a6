"""gunicorn's `logger_class` for the backend: the master's and the workers' own lines (start-up,
worker boots and exits, errors) leave through the JSON root handler like every other line.

gunicorn sets up its loggers before it logs anything and again on SIGHUP; routing them to the
root handler right after each setup leaves no line in its plain format.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from coach.log import configure
from coach.settings import get_settings


class JsonLogger(Logger):  # type: ignore[misc]
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        configure(get_settings())
