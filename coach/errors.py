"""Domain errors. Each carries its HTTP status; one handler in the backend maps them to the
single JSON error shape, and the worker treats `Unavailable` as retryable."""

from __future__ import annotations


class CoachError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(CoachError):
    status_code = 422


class PayloadTooLarge(CoachError):
    status_code = 413


class NotFound(CoachError):
    status_code = 404


class Unavailable(CoachError):
    """A dependency is down; the request can be retried later."""

    status_code = 503
