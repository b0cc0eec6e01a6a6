"""nginx's configuration as the containers render it (ops/stack/nginx.py, the same envsubst
rule as the image's entrypoint): the edge rules hold in every file set, and the backend's
edge settings (docs, trusted proxies) do what they say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.forwarded import connected_networks, trusted_proxies
from backend.middleware import _SAFE_ID
from coach.settings import Settings
from ops.errors import ConfigError
from ops.stack import nginx

# /proc/net/route of a container on two networks, with its default route via the first.
ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010013AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000013AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth1\t00000A0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""


def _rendered(file_set: str, tmp_path: Path) -> str:
    """Every file nginx reads, concatenated (the checks below look across includes)."""
    conf = nginx.render(file_set, tmp_path / file_set)
    root = conf.parents[2]
    return "\n".join(
        p.read_text() for p in sorted(root.rglob("*")) if p.suffix != ".pem" and p.is_file()
    )


@pytest.mark.parametrize("file_set", ["dev", "prod", "tls"])
def test_every_template_variable_is_rendered(file_set: str, tmp_path: Path) -> None:
    text = _rendered(file_set, tmp_path)
    directives = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.findall(r"\$\{?[A-Z][A-Z0-9_]*", directives), "an unset ${NAME} left for nginx"
    assert "limit_req zone=ask burst=10 nodelay;" in text
    assert "rate=1r/s;" in text and "rate=2r/s;" in text


@pytest.mark.parametrize("file_set", ["dev", "prod", "tls"])
def test_client_address_and_request_id_cannot_be_forged(file_set: str, tmp_path: Path) -> None:
    text = _rendered(file_set, tmp_path)
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text
    assert "$proxy_add_x_forwarded_for" not in text
    # nginx keeps a caller's id only under the backend's own rule, else uses its $request_id.
    rule = re.search(r'map \$http_x_request_id \$req_id \{\s*"~([^"]+)"', text)
    assert rule is not None and rule.group(1).encode() == _SAFE_ID.pattern
    assert "default                      $request_id;" in text


def test_tls_is_mozilla_intermediate_and_http_redirects(tmp_path: Path) -> None:
    text = _rendered("tls", tmp_path)
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    ciphers = re.search(r"ssl_ciphers (\S+);", text)
    assert ciphers is not None
    assert all(("GCM" in c or "CHACHA20" in c) and "HE-" in c for c in ciphers.group(1).split(":"))
    assert "ssl_session_tickets off;" in text
    assert re.search(r"map \$uri \$to_https \{\s*\"~\^/health\" 0;\s*default\s+1;", text)
    assert "return 308 https://$host$https_port_suffix$request_uri;" in text
    # Without TLS nothing redirects.
    assert re.search(r"default\s+0;", _rendered("prod", tmp_path / "plain"))


def test_compose_defaults_are_interpolated_and_required_values_refused() -> None:
    assert nginx.interpolate("${NGINX_ASK_RATE:-1r/s} $${x} ${UNSET}") == "1r/s ${x} "
    with pytest.raises(ConfigError, match="NGINX_IMAGE"):
        nginx.interpolate("${NGINX_IMAGE:?pinned}")


def test_envsubst_touches_only_defined_names_the_filter_allows() -> None:
    env = {"NGINX_ENVSUBST_FILTER": "^(BACKEND_HOST)$", "BACKEND_HOST": "b", "host": "no"}
    assert nginx.envsubst("$BACKEND_HOST ${BACKEND_HOST} $host $BACKEND_HOSTX", env) == (
        "b b $host $BACKEND_HOSTX"
    )


def test_api_docs_follow_the_environment_unless_set() -> None:
    assert Settings(environment="development").serve_api_docs
    assert not Settings(environment="production").serve_api_docs
    assert Settings(environment="production", api_docs_enabled=True).serve_api_docs
    assert not Settings(environment="development", api_docs_enabled=False).serve_api_docs


def test_connected_networks_read_from_the_route_table() -> None:
    assert [str(n) for n in connected_networks(ROUTES)] == ["172.19.0.0/16", "10.10.0.0/24"]


def test_a_proxy_name_stands_for_the_network_it_resolves_on() -> None:
    trusted = trusted_proxies(
        "backend-edge, 192.0.2.7",
        resolver=lambda name: ["10.10.0.5"] if name == "backend-edge" else [],
        routes=lambda: ROUTES,
    )
    assert trusted == "10.10.0.0/24,192.0.2.7/32"


def test_an_unresolvable_proxy_name_trusts_nobody_more() -> None:
    def unknown(name: str) -> list[str]:
        raise OSError("Name or service not known")

    assert trusted_proxies("nginx", resolver=unknown, routes=lambda: ROUTES, wait_s=0) == (
        "127.0.0.1"
    )
