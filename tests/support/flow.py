"""The user's flow against any running stack: upload a snippet, wait for the worker to index
it, ask the coach about it. Shared by the smoke, acceptance and Swarm suites."""

from __future__ import annotations

import httpx

from tests.support.processes import wait_until
from tests.support.samples import FIB


def upload(http: httpx.Client, content: str = FIB, title: str = "fib.py") -> str:
    accepted = http.post(
        "/api/v1/snippets", json={"title": title, "language": "python", "content": content}
    )
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["id"])


def wait_indexed(http: httpx.Client, sid: str, seconds: float = 90) -> None:
    def indexed() -> bool:
        body = http.get(f"/api/v1/snippets/{sid}").json()
        assert body["status"] != "failed", body
        return bool(body["status"] == "indexed")

    wait_until(indexed, seconds=seconds, what=f"snippet {sid} indexed by a worker")


def upload_index_ask(http: httpx.Client, content: str = FIB) -> str:
    """The whole flow; returns the snippet id once the coach's answer cites it."""
    sid = upload(http, content)
    wait_indexed(http, sid)
    answer = http.post(
        "/api/v1/coach/ask", json={"question": "how is fibonacci computed?", "snippet_id": sid}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["citations"][0]["snippet_id"] == sid
    assert http.get(f"/api/v1/snippets/{sid}/content").text == content
    return sid
