"""What a failure means to the client, decided in one place for the API's error handler and the
worker's tasks:

- a dependency that cannot be reached (name resolution, refused, reset, timeouts, a dropped
  database connection, a server shutting down) → `Unavailable`, a 503 with Retry-After:
  the same request succeeds later;
- a value the database refuses (SQLSTATE class 22, or the driver refusing to encode it) →
  `InvalidInput` (422), a broken constraint (class 23) → `Conflict` (409): retrying never
  helps, so these are never a 503;
- anything else → `InternalError` (500): a bug.

Messages name the dependency only: exception text carries hosts, SQL and the values sent, and
stays in the server's log.
"""

from __future__ import annotations

import errno
import socket
import traceback
from collections.abc import Iterator

import httpx
from kombu.exceptions import OperationalError as BrokerError
from obstore.exceptions import BaseError as ObjectStoreError
from obstore.exceptions import (
    InvalidPathError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from qdrant_client.http.exceptions import ResponseHandlingException as QdrantTransport
from qdrant_client.http.exceptions import UnexpectedResponse as QdrantResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from coach.errors import CoachError, Conflict, InternalError, InvalidInput, Unavailable
from coach.llm import RETRYABLE as LLM_RETRYABLE
from coach.llm import LLMError

INTERNAL_MESSAGE = "an unexpected error occurred"
NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.EPIPE,
        errno.ENOTCONN,
    }
)
# SQLSTATE classes that pass by themselves: 08 connection exception, 40 transaction rollback
# (serialization failure, deadlock), 53 insufficient resources (too many connections, disk
# full), 57 operator intervention (shutdown, "cannot connect now", statement timeout), 58 I/O.
RETRYABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
SQLITE_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED: another writer holds it
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,  # asyncio's too
    socket.gaierror,  # the name does not resolve (a restarting compose service)
    socket.herror,
    RedisConnectionError,
    RedisTimeoutError,
    BrokerError,
    LLMError,
    httpx.TransportError,
    PoolTimeout,  # no pooled connection came free in time
    DisconnectionError,
    QdrantTransport,  # Qdrant's client could not reach the server
)
# The object store's answers that are the request's fault or configuration, not an outage.
OBJECT_STORE_REFUSALS = (
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    InvalidPathError,
)
# Innermost frame first: the client library that raised names the dependency.
DEPENDENCY_FRAMES = (
    ("/asyncpg/", "database"),
    ("/aiosqlite/", "database"),
    ("/sqlalchemy/", "database"),
    ("/qdrant_client/", "qdrant"),
    ("/redis/", "redis"),
    ("/kombu/", "redis"),
    ("/coach/embeddings.py", "the embeddings API"),
    ("/coach/objects.py", "the object store"),
    ("/coach/llm.py", "the LLM API"),
)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it, outermost first: SQLAlchemy wraps the driver's error
    (`orig`), which wraps the socket's."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = (
            current.__cause__
            or (orig if isinstance(orig, BaseException) else None)
            or (None if current.__suppress_context__ else current.__context__)
        )


def sqlstate(exc: BaseException) -> str | None:
    for link in chain(exc):
        state = getattr(link, "sqlstate", None) or getattr(link, "pgcode", None)
        if isinstance(state, str) and len(state) == 5:
            return state
    return None


def _client_says(link: BaseException) -> bool | None:
    """What a client library's own error type says: an outage (True), the request's fault or
    configuration (False), or nothing (None)."""
    if isinstance(link, LLMError):
        # The API refused the request itself (a bad key, an unknown model): retrying will not
        # help, so no Retry-After. Its outages (5xx, 429, transport, deadline) are retryable.
        return not (link.error_type.isdigit() and int(link.error_type) not in LLM_RETRYABLE)
    if isinstance(link, ObjectStoreError):
        return not isinstance(link, OBJECT_STORE_REFUSALS)  # GenericError: unreachable, 5xx
    if isinstance(link, QdrantResponse):
        return link.status_code is None or link.status_code >= 500 or link.status_code == 429
    return None


def _connection_level(link: BaseException) -> bool:
    said = _client_says(link)
    if said is not None:
        return said
    if isinstance(link, CONNECTION_ERRORS):
        return True
    if isinstance(link, OSError) and link.errno in NETWORK_ERRNOS:
        return True
    if type(link) is OSError and str(link).startswith("Multiple exceptions"):
        return True  # asyncio's connect, when every address of a name refused
    if isinstance(link, DBAPIError) and link.connection_invalidated:
        return True
    return getattr(link, "sqlite_errorcode", None) in SQLITE_BUSY_CODES


def is_unavailable(exc: BaseException) -> bool:
    """A dependency that cannot be reached right now: retrying later helps."""
    if isinstance(exc, Unavailable):
        return True
    state = sqlstate(exc)
    if state is not None:
        return state[:2] in RETRYABLE_SQLSTATE_CLASSES
    return any(_connection_level(link) for link in chain(exc))


def dependency(exc: BaseException) -> str:
    """Which dependency failed. Drivers raise bare OSErrors too (asyncpg's connect raises
    socket.gaierror as is), so the frames of the client library that raised tell which."""
    for link in chain(exc):
        if isinstance(link, DBAPIError):
            return "database"
        if isinstance(link, LLMError):
            return "the LLM API"
        if isinstance(link, BrokerError | RedisConnectionError | RedisTimeoutError):
            return "redis"
    for link in chain(exc):
        files = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(link.__traceback__)]
        for filename in reversed(files):
            for fragment, name in DEPENDENCY_FRAMES:
                if fragment in filename:
                    return name
    return "a dependency"


def as_coach_error(exc: BaseException) -> CoachError:
    """The domain error a client is told about `exc` (a CoachError is its own answer)."""
    if isinstance(exc, CoachError):
        return exc
    if is_unavailable(exc):
        return Unavailable(f"{dependency(exc)} is unavailable; retry shortly")
    state = sqlstate(exc)
    if (state is not None and state.startswith("22")) or isinstance(exc, DataError):
        return InvalidInput("the database refused a value in the request")
    if isinstance(exc, DBAPIError) and any(
        isinstance(link, ValueError) for link in chain(exc)
    ):  # the driver could not encode a value (asyncpg's "invalid input for query argument")
        return InvalidInput("the database refused a value in the request")
    if (state is not None and state.startswith("23")) or isinstance(exc, IntegrityError):
        return Conflict("the request conflicts with data already stored")
    return InternalError(INTERNAL_MESSAGE)
