"""Domain errors. Each carries its HTTP status; one handler in the backend maps them to the
single JSON error shape, and the worker treats `Unavailable` as retryable."""

from __future__ import annotations


class CoachError(Exception):
    """`headers` go out with the error response (Retry-After, WWW-Authenticate)."""

    status_code = 400

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class Unauthorized(CoachError):
    """No key, or one that is unknown or revoked."""

    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(CoachError):
    """A valid key without the scope the operation needs."""

    status_code = 403


class TooManyRequests(CoachError):
    status_code = 429


class InvalidInput(CoachError):
    status_code = 422


class PayloadTooLarge(CoachError):
    status_code = 413


class NotFound(CoachError):
    status_code = 404


class Conflict(CoachError):
    """The request contradicts data already stored (a constraint the database enforces)."""

    status_code = 409


class Unavailable(CoachError):
    """A dependency is down; the request can be retried later (Retry-After says when)."""

    status_code = 503
    RETRY_AFTER = "5"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers={"Retry-After": self.RETRY_AFTER, **(headers or {})})


class InternalError(CoachError):
    """A bug. The client learns that it happened, never its text: that is in the log."""

    status_code = 500
