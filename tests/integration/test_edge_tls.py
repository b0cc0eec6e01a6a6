"""HTTPS as production serves it: the real nginx image with the TLS file set's templates,
environment and mounts (read from the compose files, rendered by the image's own entrypoint),
in front of a stand-in upstream on the edge-only name `backend-edge`. Old protocols and weak
ciphers are refused by the server (the client here offers them, SECLEVEL=0), plain HTTP
redirects to HTTPS except the health checks, and HTTPS answers carry HSTS."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ops.stack import nginx
from tests.support.containers import LABELS, container, network, running
from tests.support.processes import free_port, wait_until
from tests.support.tls import self_signed

# Answers 200 with a JSON body to every GET, like the backend's health routes.
UPSTREAM = """
import http.server
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Ok).serve_forever()
"""


@dataclass(frozen=True)
class Edge:
    http_port: int
    https_port: int
    cafile: Path


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    certs = tmp_path_factory.mktemp("tls")
    self_signed(certs)
    environment, mounts = nginx.nginx_service("tls")
    http_port, https_port = free_port(), free_port()
    environment["NGINX_HTTPS_PORT"] = str(https_port)  # as compose sets it from HTTPS_PORT
    with network() as net:
        upstream = (
            container("PYTHON_IMAGE")
            .with_command(["python", "-c", UPSTREAM])
            .with_network(net)
            .with_network_aliases("backend-edge")
        )
        proxy = container("NGINX_IMAGE").with_network(net)
        for name, value in environment.items():
            proxy = proxy.with_env(name, value)
        for target, source in mounts.items():
            proxy = proxy.with_volume_mapping(source, target, "ro")
        for name in ("tls_cert", "tls_key"):
            proxy = proxy.with_volume_mapping(certs / name, f"/run/secrets/{name}", "ro")
        proxy = (
            proxy.with_bind_ports(8080, http_port)
            .with_bind_ports(8443, https_port)
            .with_tmpfs_mount("/tmp")
            .with_kwargs(labels=dict(LABELS), read_only=True)
        )
        with running(upstream), running(proxy):

            def answers() -> bool:
                try:
                    return httpx.get(f"http://127.0.0.1:{http_port}/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(answers, seconds=30, what="nginx answering /healthz")
            yield Edge(http_port, https_port, certs / "tls_cert")


def _handshake(
    edge: Edge, version: ssl.TLSVersion, ciphers: str = "DEFAULT"
) -> tuple[str, ssl.SSLSession | None]:
    """(negotiated cipher, session) of a client offering only `version` and `ciphers`, with
    the client's own security level at 0: a refusal can only be the server's."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    context.minimum_version = context.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", edge.https_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        tls.recv(1024)  # a TLS 1.3 server sends its tickets after the handshake
        cipher = tls.cipher()
        assert cipher is not None
        return cipher[0], tls.session


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"]
)
def test_tls_1_0_and_1_1_are_refused(edge: Edge, version: ssl.TLSVersion) -> None:
    with pytest.raises(ssl.SSLError, match=r"(?i)alert.protocol.version"):
        _handshake(edge, version)


@pytest.mark.parametrize("cipher", ["AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA"])
def test_weak_ciphers_are_refused(edge: Edge, cipher: str) -> None:
    """Static RSA key exchange (no forward secrecy) and CBC suites: not in Mozilla's list."""
    with pytest.raises(ssl.SSLError, match=r"(?i)alert.handshake.failure"):
        _handshake(edge, ssl.TLSVersion.TLSv1_2, cipher)


def test_tls_1_2_with_ecdhe_aes_gcm_is_accepted_without_session_tickets(edge: Edge) -> None:
    cipher, session = _handshake(edge, ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256")
    assert cipher == "ECDHE-RSA-AES128-GCM-SHA256"
    assert session is not None and not session.has_ticket, "ssl_session_tickets off"


def test_tls_1_3_is_accepted(edge: Edge) -> None:
    cipher, _ = _handshake(edge, ssl.TLSVersion.TLSv1_3)
    assert cipher.startswith("TLS_")


def test_http_redirects_to_https_but_health_stays_plain(edge: Edge) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{edge.http_port}", timeout=10) as http:
        moved = http.post("/api/v1/snippets?page=2", json={})
        assert moved.status_code == 308  # 308: the method and body are kept on the way
        assert moved.headers["location"] == (
            f"https://127.0.0.1:{edge.https_port}/api/v1/snippets?page=2"
        )
        assert "strict-transport-security" not in moved.headers
        for path in ("/health/ready", "/health/live", "/healthz"):
            assert http.get(path).status_code == 200, path


def test_https_answers_carry_hsts_and_the_security_headers(edge: Edge) -> None:
    trust = ssl.create_default_context(cafile=str(edge.cafile))
    base = f"https://localhost:{edge.https_port}"
    with httpx.Client(base_url=base, verify=trust, timeout=10) as https:
        ready = https.get("/health/ready")
        missing = https.get("/metrics")
    assert ready.status_code == 200
    for answer in (ready, missing):
        assert answer.headers["strict-transport-security"] == "max-age=63072000"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "NotFound",
        "detail": "no such resource",
        "request_id": missing.headers["x-request-id"],
        "trace_id": None,
    }
