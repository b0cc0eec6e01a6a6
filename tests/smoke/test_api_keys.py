"""API keys through nginx on the development stack: no key is 401, a read key cannot upload,
one tenant's key never reaches another tenant's snippet (not listed, read, fetched or cited),
and a key revoked with `invoke keys.revoke` is 401 on its next request. Keys are made the
operators' way: `invoke keys.create` and its code (ops/stack/keys.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.smoke.conftest import SmokeStack
from tests.support import apikeys, flow
from tests.support.processes import ROOT
from tests.support.samples import FIB

INVOKE = Path(sys.executable).parent / "invoke"
# Tenant B's snippet: a name nothing else in the stack holds, and the question that finds it.
B_SOURCE = '''def zebra_stripe_count(herd):
    """Count the stripes of every zebra in the herd."""
    return sum(zebra.stripes for zebra in herd)
'''
B_QUESTION = "how does zebra_stripe_count count the stripes of the herd?"


def invoke(smoke: SmokeStack, *args: str) -> subprocess.CompletedProcess[str]:
    """`invoke ARGS --project <the smoke stack>`, as an operator types it."""
    return subprocess.run(
        [str(INVOKE), *args, "--project", smoke.project.name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def _error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and body["detail"], body
    assert body["request_id"], "the one error shape, with the request id"


def test_no_key_or_a_wrong_one_is_401_in_the_error_shape(smoke: SmokeStack) -> None:
    with smoke.client(anonymous=True) as http:
        missing = http.get("/api/v1/snippets")
        wrong = http.get("/api/v1/snippets", headers=apikeys.headers("coach_" + "x" * 43))
        upload = http.post(
            "/api/v1/snippets", json={"title": "a.py", "language": "python", "content": FIB}
        )
        ask = http.post("/api/v1/coach/ask", json={"question": "anything?"})
        # Outside /api/v1: health stays open to probes and load balancers.
        assert http.get("/health/ready").status_code == 200
    for response in (missing, wrong, upload, ask):
        _error(response, 401, "Unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")
    with smoke.client() as http:  # the dev key `invoke up` made
        assert http.get("/api/v1/snippets").status_code == 200


def test_a_read_key_from_keys_create_reads_but_cannot_upload_or_ask(smoke: SmokeStack) -> None:
    made = invoke(smoke, "keys.create", "--tenant", "smoke-reader", "--scope", "read")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("coach_") and made.stdout.count("\n") == 1, "the key alone on stdout"
    assert "shown this once" in made.stderr
    with smoke.client(key=key) as http:
        assert http.get("/api/v1/snippets").status_code == 200
        upload = http.post(
            "/api/v1/snippets", json={"title": "r.py", "language": "python", "content": FIB}
        )
        ask = http.post("/api/v1/coach/ask", json={"question": "fibonacci?"})
        listed = http.get("/api/v1/snippets").json()["items"]
    _error(upload, 403, "Forbidden")
    _error(ask, 403, "Forbidden")
    assert listed == [], "nothing was stored for the reader's tenant"


@dataclass(frozen=True)
class Tenants:
    a: str  # tenant A's write key
    b: str  # tenant B's write key
    a_sid: str
    b_sid: str


@pytest.fixture(scope="module")
def tenants(smoke: SmokeStack) -> Tenants:
    """Two tenants, each with a write key and one indexed snippet of its own."""
    a = apikeys.make_key(smoke, "smoke-a", "write", "tenant a")
    b = apikeys.make_key(smoke, "smoke-b", "write", "tenant b")
    sids = []
    for key, source, title in ((a, FIB, "fib.py"), (b, B_SOURCE, "zebra.py")):
        with smoke.client(key=key) as http:
            sid = flow.upload(http, source, title)
            flow.wait_indexed(http, sid)
            sids.append(sid)
    return Tenants(a, b, *sids)


def test_a_tenant_cannot_list_read_or_fetch_another_tenants_snippet(
    smoke: SmokeStack, tenants: Tenants
) -> None:
    with smoke.client(key=tenants.a) as http:
        page = http.get("/api/v1/snippets", params={"limit": 100}).json()
        listed = {s["id"] for s in page["items"]}
        meta = http.get(f"/api/v1/snippets/{tenants.b_sid}")
        content = http.get(f"/api/v1/snippets/{tenants.b_sid}/content")
    assert tenants.a_sid in listed and tenants.b_sid not in listed
    _error(meta, 404, "NotFound")  # as if it did not exist: nothing says it does
    _error(content, 404, "NotFound")
    with smoke.client(key=tenants.b) as http:  # the owner still reaches it
        assert http.get(f"/api/v1/snippets/{tenants.b_sid}/content").text == B_SOURCE
    with smoke.client() as http:  # and so does no third tenant (the dev key's)
        assert http.get(f"/api/v1/snippets/{tenants.b_sid}").status_code == 404


def test_asking_with_a_tenants_key_never_cites_another_tenant(
    smoke: SmokeStack, tenants: Tenants
) -> None:
    with smoke.client(key=tenants.b, timeout=60) as http:
        own = http.post("/api/v1/coach/ask", json={"question": B_QUESTION})
    assert own.status_code == 200, own.text
    assert tenants.b_sid in {c["snippet_id"] for c in own.json()["citations"]}, (
        "the question finds B's snippet for B: the check below is not vacuous"
    )
    with smoke.client(key=tenants.a, timeout=60) as http:
        asked = http.post("/api/v1/coach/ask", json={"question": B_QUESTION})
        pointed = http.post(
            "/api/v1/coach/ask", json={"question": B_QUESTION, "snippet_id": tenants.b_sid}
        )
    assert asked.status_code == 200, asked.text
    cited = {c["snippet_id"] for c in asked.json()["citations"]}
    assert tenants.b_sid not in cited and cited <= {tenants.a_sid}, cited
    # Naming B's snippet outright: as unknown as any id that does not exist.
    _error(pointed, 404, "NotFound")


def test_a_revoked_key_is_401_on_its_next_request(smoke: SmokeStack) -> None:
    made = apikeys.create(smoke, "smoke-revoked", "write", "to be revoked")
    with smoke.client(key=made.secret) as http:
        assert http.get("/api/v1/snippets").status_code == 200
        refused = invoke(smoke, "keys.revoke", made.key.prefix)  # no terminal, no --yes
        assert refused.returncode == 1 and "pass --yes" in refused.stderr, refused.stderr
        assert http.get("/api/v1/snippets").status_code == 200, "not confirmed: still valid"
        revoked = invoke(smoke, "keys.revoke", made.key.prefix, "--yes")
        assert revoked.returncode == 0, revoked.stderr
        _error(http.get("/api/v1/snippets"), 401, "Unauthorized")
    listed = invoke(smoke, "keys.list", "--tenant", "smoke-revoked", "--json")
    assert listed.returncode == 0, listed.stderr
    [result] = [e for e in map(json.loads, listed.stdout.splitlines()) if e["event"] == "result"]
    [entry] = [k for k in result["keys"] if k["id"] == made.key.id]
    assert entry["prefix"] == made.key.prefix and entry["revoked_at"], entry
    assert made.secret not in listed.stdout + listed.stderr, "a listing never shows a key"
    unknown = invoke(smoke, "keys.revoke", "coach_nosuchk", "--yes")
    assert unknown.returncode == 1 and "error: no API key" in unknown.stderr, unknown.stderr
