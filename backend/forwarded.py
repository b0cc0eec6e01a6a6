"""Which peers' X-Forwarded-For gunicorn believes (its forwarded_allow_ips).

Docker and Swarm give networks subnets at run time, so compose cannot write nginx's network
as a CIDR. The setting may therefore name a host instead: a network alias only the edge
network has (the backend's own `backend-edge`). It stands for the subnets of this container's
networks that hold the addresses the name resolves to, that is the edge network alone, from
which nginx (resolving the same alias) always connects. Anything else comes from elsewhere and
keeps its own address, whatever header it sends.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[str]]
ROUTES = Path("/proc/net/route")  # Linux: this container's IPv4 routes, one per line


def resolve(name: str) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(name, None, socket.AF_INET)})


def connected_networks(routes: str) -> list[ipaddress.IPv4Network]:
    """The directly connected subnets (no gateway) of /proc/net/route's table."""
    networks = []
    for line in routes.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or int(fields[2], 16) != 0:  # via a gateway: not a local network
            continue
        dest, mask = (_hex_address(fields[i]) for i in (1, 7))
        if int(mask):
            networks.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    return networks


def _hex_address(field: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(field, 16).to_bytes(4, "little"))  # host byte order


def trusted_proxies(
    spec: str,
    *,
    resolver: Resolver = resolve,
    routes: Callable[[], str] = ROUTES.read_text,
    attempts: int = 10,
    wait_s: float = 1.0,
) -> str:
    """gunicorn's comma-separated forwarded_allow_ips for the setting `spec`: IPs and CIDRs as
    they are; a host name becomes the connected subnets holding its addresses. A name that does
    not resolve (Swarm may register a task's name a moment after it starts: retried) or matches
    no subnet is dropped with a warning: fewer trusted peers, never more."""
    trusted: list[str] = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        try:
            trusted.append(str(ipaddress.ip_network(entry, strict=False)))
            continue
        except ValueError:
            pass
        subnets = _subnets_of(entry, resolver, routes, attempts, wait_s)
        if not subnets:
            log.warning("trusted proxy name not on any of this container's networks", name=entry)
        trusted += [str(n) for n in subnets]
    return ",".join(dict.fromkeys(trusted)) or "127.0.0.1"


def _subnets_of(
    name: str, resolver: Resolver, routes: Callable[[], str], attempts: int, wait_s: float
) -> list[Network]:
    for attempt in range(attempts):
        try:
            addresses = resolver(name)
        except OSError:
            addresses = []
        if addresses:
            return _holding(connected_networks(routes()), addresses)
        if attempt + 1 < attempts:
            time.sleep(wait_s)
    return []


def _holding(networks: Iterable[Network], addresses: list[str]) -> list[Network]:
    ips = [ipaddress.ip_address(a) for a in addresses]
    return [n for n in networks if any(ip in n for ip in ips)]
