"""Logging for every process: one JSON object per line on stdout, whoever logs.

structlog renders through the standard library (`ProcessorFormatter`), so the app's structlog
calls and the plain `logging` records of uvicorn, gunicorn, Celery, SQLAlchemy and Python
warnings all leave through the one root handler with the same keys: timestamp (UTC ISO-8601),
level, logger, event, service, version, environment, request_id / task_id when bound, and
trace_id / span_id inside an OpenTelemetry span. Known secret fields are redacted.

Named `log` rather than `logging` so that modules can import both it and the standard library.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from opentelemetry import trace
from pydantic import SecretStr
from structlog.types import EventDict, Processor, WrappedLogger

from coach.settings import Settings

# Loggers that frameworks give handlers (and levels) of their own: ours replace them, so that
# their lines come out through the root handler as JSON too.
FRAMEWORK_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "gunicorn",
    "gunicorn.error",
    "gunicorn.access",
    "celery",
    "celery.task",
    "celery.redirected",
    "kombu",
    "sqlalchemy",
    "alembic",
    "py.warnings",
)
# Quiet unless LOG_LEVELS says otherwise: SQLAlchemy logs every statement and mapper step once
# its loggers are enabled for INFO (which a root at INFO does), httpx every request.
DEFAULT_LEVELS = {
    "sqlalchemy": "WARNING",
    "httpx": "WARNING",
    "httpcore": "WARNING",
    "multipart": "WARNING",
}
FIRST_KEYS = ("timestamp", "level", "logger", "event")
REDACTED = "**********"
SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "authorization",
    "cookie",
    "credentials",
)
_URL_CREDENTIALS = re.compile(r"(?<=://)([^:/@\s]*):[^@/\s]+@")
_INLINE_SECRET = re.compile(
    r"\b(" + "|".join(SECRET_WORDS) + r")\b(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_MAX_DEPTH = 6

# Loggers whose level the last `configure` set: the next one resets them first.
_leveled: set[str] = set()


class _Ours:
    """Marks the handlers `configure` installs, so a second call replaces rather than adds."""


class _StdoutHandler(_Ours, logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is when a record is emitted (a test's capture included),
    not to the stream that happened to be current at configuration time."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


class _RotatingFileHandler(_Ours, logging.handlers.RotatingFileHandler):
    """LOG_FILE: meant for a single process; several processes rotating one file race."""


def is_secret_key(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return any(name == word or name.endswith("_" + word) for word in SECRET_WORDS)


def scrub(text: str) -> str:
    """Credentials inside free text: URLs with a password, `token=...`, `Bearer ...`."""
    if "://" in text:
        text = _URL_CREDENTIALS.sub(r"\1:" + REDACTED + "@", text)
    text = _INLINE_SECRET.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    return _BEARER.sub(lambda m: m.group(1) + " " + REDACTED, text)


def _redacted(key: str, value: Any, depth: int = 0) -> Any:
    if isinstance(value, SecretStr) or (is_secret_key(key) and value not in (None, "")):
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if depth < _MAX_DEPTH and isinstance(value, Mapping):
        return {k: _redacted(str(k), v, depth + 1) for k, v in value.items()}
    if depth < _MAX_DEPTH and isinstance(value, list | tuple):
        return [_redacted("", v, depth + 1) for v in value]
    return value


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        if not key.startswith("_"):  # structlog's own _record and _from_structlog
            event_dict[key] = _redacted(key, value)
    return event_dict


def add_trace_context(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """trace_id and span_id of the current span; outside one, a bound trace_id stays."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
        event_dict["span_id"] = trace.format_span_id(context.span_id)
    return event_dict


def _identity(settings: Settings) -> Processor:
    fields = {
        "service": settings.service_name,
        "version": settings.version,
        "environment": settings.environment,
    }

    def add_identity(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        event_dict.update(fields)
        return event_dict

    return add_identity


def _foreign_fields(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Tidy a stdlib record: drop what another formatter left on it (`message`) and uvicorn's
    `color_message`; give uvicorn's access line fields, not only its formatted message."""
    for leftover in ("message", "asctime", "color_message"):
        event_dict.pop(leftover, None)
    args = event_dict.pop("positional_args", None)
    if event_dict.get("logger") == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        client, method, path, http_version, status = args
        event_dict.update(
            client=client, method=method, path=path, http_version=http_version, status=status
        )
    return event_dict


def _first_keys_first(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    ordered = {key: event_dict.pop(key) for key in FIRST_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _dumps(obj: Any, **kwargs: Any) -> str:
    return orjson.dumps(obj, default=kwargs.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()


def _shared() -> list[Processor]:
    """What structlog calls and stdlib records both go through first."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _formatter(settings: Settings, *, console: bool) -> structlog.stdlib.ProcessorFormatter:
    final: list[Processor]
    if console:
        final = [redact, structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())]
    else:
        final = [
            # Without locals: a traceback's locals are where secrets hide.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            redact,
            _first_keys_first,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared(), structlog.stdlib.ExtraAdder(), _foreign_fields],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _identity(settings),
            add_trace_context,
            *final,
        ],
        pass_foreign_args=True,
    )


def _framework_handler(handler: logging.Handler) -> bool:
    """Console handlers that frameworks (uvicorn, gunicorn) or an earlier call installed.
    Others, such as a test runner's capture, are left alone."""
    return isinstance(handler, _Ours) or type(handler) is logging.StreamHandler


def configure(settings: Settings) -> None:
    """Route every logger of this process through one root handler. Safe to call again."""
    handlers: list[logging.Handler] = [_StdoutHandler()]
    handlers[0].setFormatter(_formatter(settings, console=settings.log_format == "console"))
    if settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = _RotatingFileHandler(
            settings.log_file,
            maxBytes=settings.log_file_max_bytes,
            backupCount=settings.log_file_backup_count,
            encoding="utf-8",
        )
        file_handler.setFormatter(_formatter(settings, console=False))
        handlers.append(file_handler)

    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, _Ours):
            handler.close()  # an earlier call's log file
    root.handlers = [h for h in root.handlers if not _framework_handler(h)] + handlers
    root.setLevel(settings.log_level)
    existing = [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in existing + [logging.getLogger(name) for name in FRAMEWORK_LOGGERS]:
        logger.handlers = [h for h in logger.handlers if not _framework_handler(h)]
        logger.propagate = True
    for name in FRAMEWORK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)  # the root's level decides
    for name in _leveled:
        logging.getLogger(name).setLevel(logging.NOTSET)
    levels = DEFAULT_LEVELS | settings.logger_levels
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    _leveled.clear()
    _leveled.update(levels)
    # Off first: `captureWarnings(True)` does nothing when it was on once already, even if
    # warnings.showwarning has been put back since (as pytest does after each test).
    logging.captureWarnings(False)
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Safe to cache: this chain depends on no setting; the settings live in the formatter.
        cache_logger_on_first_use=True,
    )
