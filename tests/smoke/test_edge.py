"""The edge on the development stack: nginx's rate limits hold the backend to the configured
rate, nginx's own errors come in the API's JSON shape, and neither the client's address nor
the request id can be forged past it."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.smoke.conftest import SmokeStack
from tests.support import apikeys

ASK = "/api/v1/coach/ask"
BURST = 50
# The backend's counters, read inside its container (/metrics is not published by nginx).
SCRAPE = (
    "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8000/metrics').read().decode())"
)


def _asks_seen(smoke: SmokeStack) -> float:
    """coach_http_requests_total of POST /api/v1/coach/ask, whatever the status."""
    text = smoke.project.run(
        "exec", "-T", "backend", "python", "-c", SCRAPE, capture=True, quiet=True
    ).stdout
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "coach_http_requests_total"
        and sample.labels.get("route") == ASK
        and sample.labels.get("method") == "POST"
    )


def _per_second(rate: str) -> float:
    """nginx's `Nr/s` or `Nr/m`."""
    match = re.fullmatch(r"(\d+)r/([sm])", rate)
    assert match, rate
    return int(match.group(1)) / (1 if match.group(2) == "s" else 60)


def _nginx_env(smoke: SmokeStack) -> dict[str, str]:
    environment: dict[str, str] = smoke.project.config()["services"]["nginx"]["environment"]
    return environment


def _assert_nginx_error(answer: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    assert set(body) == {"error", "detail", "request_id", "trace_id"}
    assert body["error"] == error and body["detail"]
    assert body["request_id"] == answer.headers["x-request-id"]
    assert body["trace_id"] is None  # nginx answered: no span behind it
    return body


def test_a_burst_of_asks_from_one_key_is_cut_to_the_configured_rate(smoke: SmokeStack) -> None:
    env = _nginx_env(smoke)
    rate, burst = _per_second(env["NGINX_ASK_RATE"]), int(env["NGINX_ASK_BURST"])
    key = apikeys.make_key(smoke, "edge-burst", "write")
    before = _asks_seen(smoke)
    with smoke.client(timeout=60, key=key) as http, ThreadPoolExecutor(BURST) as pool:
        started = time.monotonic()
        answers = list(
            pool.map(lambda _: http.post(ASK, json={"question": "what is fib?"}), range(BURST))
        )
        elapsed = time.monotonic() - started
    seen = _asks_seen(smoke) - before
    limited = [a for a in answers if a.status_code == 429]
    passed = [a for a in answers if a.status_code != 429]
    print(f"{BURST} asks in {elapsed:.2f}s: {len(limited)} got 429, the backend saw {seen:.0f}")
    assert limited, f"no 429 among {BURST} asks at once ({rate}/s, burst {burst})"
    for answer in limited:
        _assert_nginx_error(answer, 429, "TooManyRequests")
        assert answer.headers["retry-after"] == env["NGINX_RETRY_AFTER"]
    # What nginx let through, the backend saw; never more than the rate allows.
    assert seen == len(passed), (seen, [a.status_code for a in passed])
    assert 1 <= seen <= burst + 1 + math.ceil(rate * elapsed), (seen, elapsed)
    # The key's bucket, not the stack's: another key still gets through at once.
    with smoke.client() as http:
        assert http.post(ASK, json={"question": "what is fib?"}).status_code != 429


def test_nginx_own_errors_are_json_with_the_request_id(smoke: SmokeStack) -> None:
    with smoke.client() as http:
        _assert_nginx_error(http.get("/metrics"), 404, "NotFound")
        too_big = http.post(
            "/api/v1/snippets",
            content=b"x" * (2 * 1024 * 1024),
            headers={"content-type": "application/json"},
        )
        body = _assert_nginx_error(too_big, 413, "PayloadTooLarge")
        assert _nginx_env(smoke)["CLIENT_MAX_BODY_SIZE"] in body["detail"]
        listed = http.get("/api/v1/snippets")
        assert listed.status_code == 200
    for answer in (too_big, listed):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )
        assert "strict-transport-security" not in answer.headers  # plain http


def test_docs_page_is_served_in_development_with_its_own_csp(smoke: SmokeStack) -> None:
    with smoke.client() as http:
        docs = http.get("/api/v1/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    csp = docs.headers["content-security-policy"]
    assert "script-src 'unsafe-inline' https://cdn.jsdelivr.net" in csp
    assert "frame-ancestors 'none'" in csp


def test_request_ids_follow_the_backend_rule_and_both_logs_agree(smoke: SmokeStack) -> None:
    probe = uuid.uuid4().hex
    with smoke.client() as http:
        kept = http.get("/health/live", headers={"X-Request-ID": f"edge-{probe}"})
        replaced = http.get(f"/health/live?{probe}", headers={"X-Request-ID": "bad id!"})
    assert kept.headers.get_list("x-request-id") == [f"edge-{probe}"]
    made = replaced.headers.get_list("x-request-id")
    assert len(made) == 1 and re.fullmatch(r"[0-9a-f]{32}", made[0]), made
    nginx = _json_lines(smoke, "nginx")
    backend = _json_lines(smoke, "backend")
    for request_id in (f"edge-{probe}", made[0]):
        assert any(line.get("request_id") == request_id for line in nginx), request_id
        assert any(line.get("request_id") == request_id for line in backend), request_id


def test_a_forged_forwarded_for_does_not_reach_the_backend(smoke: SmokeStack) -> None:
    """The backend logs the address nginx saw, not one the client claims, and not nginx's."""
    probe = uuid.uuid4().hex
    with smoke.client() as http:
        answer = http.get(
            f"/health/live?{probe}",
            headers={"X-Forwarded-For": "203.0.113.9", "X-Request-ID": f"xff-{probe}"},
        )
    assert answer.status_code == 200
    (edge,) = [line for line in _json_lines(smoke, "nginx") if probe in line.get("uri", "")]
    (access,) = [
        line
        for line in _json_lines(smoke, "backend")
        if line.get("logger") == "uvicorn.access" and probe in str(line.get("path"))
    ]
    client = str(access["client"]).rsplit(":", 1)[0]
    assert client == edge["remote_addr"], (access, edge)
    assert "203.0.113.9" not in json.dumps(access)


def _json_lines(smoke: SmokeStack, service: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in smoke.log_lines(service) if line.startswith("{")]
