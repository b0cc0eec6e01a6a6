"""Pure ASGI middleware around the whole application.

- Request ids: taken from nginx's X-Request-ID (or made here), bound to the logs, returned.
- Trace ids: the server span's (which continues the caller's W3C traceparent), kept in
  request.state for error bodies and the question row, bound to the logs, returned as
  X-Trace-Id. Without a span (tracing off, or an untraced path) the caller's trace id or a new
  one stands in, so every response still has one.
- HTTP metrics by route template, with unmatched paths under one label value.

Both wrap Starlette's ServerErrorMiddleware (see backend.app), so a 500 is counted and carries
the ids too.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from fastapi.routing import RouteContext, iter_route_contexts
from opentelemetry import trace
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coach.metrics import HTTP_DURATION, HTTP_REQUESTS

REQUEST_ID_HEADER = b"x-request-id"
TRACE_ID_HEADER = b"x-trace-id"
TRACEPARENT_HEADER = b"traceparent"
UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SAFE_ID = re.compile(rb"^[A-Za-z0-9._-]{8,128}$")
# version-traceid-parentid-flags; an all-zero trace id is invalid (W3C Trace Context §3.2.2.3)
_TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-(?!0{32})([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def caller_trace_id(traceparent: bytes) -> str | None:
    match = _TRACEPARENT.match(traceparent.strip().lower())
    return match.group(1).decode() if match else None


def bind_trace_id(scope: Scope, trace_id: str) -> None:
    scope.setdefault("state", {})["trace_id"] = trace_id
    structlog.contextvars.bind_contextvars(trace_id=trace_id)


def on_server_span(span: trace.Span, scope: dict[str, Any]) -> None:
    """OpenTelemetry's server_request_hook: the span's trace id becomes the request's."""
    span_context = span.get_span_context()
    if span_context.is_valid:
        bind_trace_id(scope, trace.format_trace_id(span_context.trace_id))


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(REQUEST_ID_HEADER, b"")
        # Only well-formed ids are trusted; anything else could forge or flood log fields.
        request_id = incoming.decode() if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        # Provisional: the server span, once started, binds its own (the same when given).
        bind_trace_id(
            scope, caller_trace_id(headers.get(TRACEPARENT_HEADER, b"")) or uuid.uuid4().hex
        )

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                    (TRACE_ID_HEADER, str(state["trace_id"]).encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_ids)


class HttpMetricsMiddleware:
    """coach_http_requests_total{method,route,status} and coach_http_request_duration_seconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: list[RouteContext] | None = None  # flattened once, on the first request

    def route_template(self, scope: Scope) -> str:
        """The matched route's template (/api/v1/snippets/{snippet_id}); a route matching all
        but the method (a 405) counts as itself; anything else is one bounded value."""
        if self._routes is None:
            self._routes = list(iter_route_contexts(scope["app"].routes))
        partial: RouteContext | None = None
        for route in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return str(route.path_format or route.path)
            if match is Match.PARTIAL and partial is None:
                partial = route
        return str(partial.path_format or partial.path) if partial is not None else UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        route = self.route_template(scope)  # before the app runs: routing rewrites the scope
        status = 500  # unless a response starts: an exception escaping the app is a 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            HTTP_DURATION.labels(method=method, route=route).observe(time.perf_counter() - started)
