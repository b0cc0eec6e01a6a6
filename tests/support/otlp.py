"""An OTLP/HTTP receiver inside the test process: the spans (/v1/traces) and metric points
(/v1/metrics) the application exports, decoded from protobuf, for assertions. Point
OTEL_EXPORTER_OTLP_ENDPOINT at `endpoint`."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import NumberDataPoint

from tests.support.processes import wait_until

SPAN_KIND = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}
STATUS = {0: "unset", 1: "ok", 2: "error"}


# One ask's spans, from the HTTP request through Celery into every agent step, whichever
# provider answers: the LLM API call adds `chat {model}` (chat_span) under coach.generate.
ASK_SPANS = frozenset(
    {
        "POST /api/v1/coach/ask",
        "apply_async/coach.ask",
        "run/coach.ask",
        "coach.retrieve",
        "coach.prompt",
        "coach.generate",
    }
)


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "unset"


@dataclass(frozen=True)
class ReceivedPoint:
    """One data point of one export: a histogram's count, sum and buckets, or a number."""

    service: str
    metric: str
    unit: str
    attributes: dict[str, Any]
    count: int = 0
    sum: float = 0.0
    bounds: tuple[float, ...] = ()
    buckets: tuple[int, ...] = ()
    value: float | None = None  # sums and gauges


def chat_span(model: str) -> str:
    """The GenAI conventions' name of an LLM API call's span."""
    return f"chat {model}"


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


def _attributes(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in attributes}


def _number(point: NumberDataPoint) -> float:
    return float(getattr(point, point.WhichOneof("value") or "as_double"))


def decode_metrics(body: bytes) -> list[ReceivedPoint]:
    request = ExportMetricsServiceRequest.FromString(body)
    points: list[ReceivedPoint] = []
    for resource_metrics in request.resource_metrics:
        service = str(_attributes(resource_metrics.resource.attributes).get("service.name", ""))
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                which = metric.WhichOneof("data")
                if which == "histogram":
                    points.extend(
                        ReceivedPoint(
                            service,
                            metric.name,
                            metric.unit,
                            _attributes(p.attributes),
                            count=p.count,
                            sum=p.sum,
                            bounds=tuple(p.explicit_bounds),
                            buckets=tuple(p.bucket_counts),
                        )
                        for p in metric.histogram.data_points
                    )
                elif which in ("sum", "gauge"):
                    points.extend(
                        ReceivedPoint(
                            service,
                            metric.name,
                            metric.unit,
                            _attributes(p.attributes),
                            value=_number(p),
                        )
                        for p in getattr(metric, which).data_points
                    )
    return points


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            spans.extend(
                ReceivedSpan(
                    service=str(resource.get("service.name", "")),
                    name=span.name,
                    kind=SPAN_KIND.get(span.kind, str(span.kind)),
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_id=span.parent_span_id.hex(),
                    attributes=_attributes(span.attributes),
                    status=STATUS.get(span.status.code, str(span.status.code)),
                )
                for span in scope_spans.spans
            )
    return spans


class OtlpReceiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._points: list[ReceivedPoint] = []
        self.requests = 0
        self.metric_requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path == "/v1/traces":
                    receiver._add(decode(body))
                    answer = ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    receiver._add_points(decode_metrics(body))
                    answer = ExportMetricsServiceResponse().SerializeToString()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return None  # quiet: the test output is for the application's lines

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _add(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self._spans.extend(spans)
            self.requests += 1

    def _add_points(self, points: list[ReceivedPoint]) -> None:
        with self._lock:
            self._points.extend(points)
            self.metric_requests += 1

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def points(self, metric: str | None = None) -> list[ReceivedPoint]:
        """Every point received, in order: cumulative exports repeat a series, its last wins."""
        with self._lock:
            return [p for p in self._points if metric is None or p.metric == metric]

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans() if s.trace_id == trace_id]

    def wait_for(
        self, check: Callable[[list[ReceivedSpan]], bool], *, seconds: float, what: str
    ) -> list[ReceivedSpan]:
        wait_until(lambda: check(self.spans()), seconds=seconds, what=what, interval=0.2)
        return self.spans()

    def wait_for_points(
        self, check: Callable[[list[ReceivedPoint]], bool], *, seconds: float, what: str
    ) -> list[ReceivedPoint]:
        wait_until(lambda: check(self.points()), seconds=seconds, what=what, interval=0.2)
        return self.points()

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
