"""What each service of the stack is, from its `coach.*` labels in the compose files: the one
place the tooling learns service names, so adding a service is a compose edit, not a code edit.

Every function takes a merged compose model (`Project.config()`, i.e. `docker compose config
--format json`; read it once per operation) and checks every service's role first, so a
service added without one fails loudly wherever the tooling looks. The labels:

    coach.role       writer | one-shot | data | edge | observability | backup (required)
    coach.store      database | broker | vectors | objects (at most one service each)
    coach.app        "true": runs the app image (the local-stores fallback reconfigures these)
    coach.settings   "true": the app settings the tooling uses are read from it (exactly one)
    coach.fallback   local-stores | optional: may be left out when the image of
    coach.image-var  (this *_IMAGE variable) cannot be had
    coach.otlp-port  receives OTLP/HTTP traces on this port
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, cast, get_args

from ops.errors import StackError

Role = Literal["writer", "one-shot", "data", "edge", "observability", "backup"]
Store = Literal["database", "broker", "vectors", "objects"]
FallbackKind = Literal["local-stores", "optional"]

ROLE = "coach.role"
STORE = "coach.store"
APP = "coach.app"
SETTINGS = "coach.settings"
FALLBACK = "coach.fallback"
IMAGE_VAR = "coach.image-var"
OTLP_PORT = "coach.otlp-port"

ROLES: tuple[Role, ...] = get_args(Role)
STORES: tuple[Store, ...] = get_args(Store)
FALLBACK_KINDS: tuple[FallbackKind, ...] = get_args(FallbackKind)


class Fallback(NamedTuple):
    """The services one image runs, and what leaving them out means."""

    services: tuple[str, ...]
    kind: FallbackKind


def labels(spec: Mapping[str, Any]) -> dict[str, str]:
    """A service's labels as a map: compose renders a map, a hand-made model may hold a list."""
    raw = spec.get("labels") or {}
    if isinstance(raw, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in raw.items()}
    pairs = (str(item).partition("=") for item in raw)
    return {key: value for key, _, value in pairs}


def _services(config: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """service -> labels, once every service is known to have a valid role."""
    found = {name: labels(spec or {}) for name, spec in (config.get("services") or {}).items()}
    unknown = {name: ls.get(ROLE) for name, ls in found.items() if ls.get(ROLE) not in ROLES}
    if unknown:
        listed = ", ".join(
            f"{name} ({f'{ROLE}={role}' if role else f'no {ROLE}'})"
            for name, role in sorted(unknown.items())
        )
        raise StackError(
            f"service(s) without a known role: {listed}",
            hint=f"label every service in infra/compose with {ROLE}: {' | '.join(ROLES)}",
        )
    return found


def roles_of(config: Mapping[str, Any]) -> dict[str, Role]:
    """service -> role, for every service of the model."""
    return {name: cast(Role, ls[ROLE]) for name, ls in _services(config).items()}


def services_with(
    config: Mapping[str, Any],
    *,
    role: Role | None = None,
    label: str | None = None,
    value: str = "true",
) -> list[str]:
    """The services (sorted) with this role and/or whose `label` is `value`."""
    return sorted(
        name
        for name, ls in _services(config).items()
        if (role is None or ls[ROLE] == role) and (label is None or ls.get(label) == value)
    )


def one_shot(config: Mapping[str, Any]) -> list[str]:
    """Services that run once and must exit 0; every other one must run and be healthy."""
    return services_with(config, role="one-shot")


def writers(config: Mapping[str, Any]) -> list[str]:
    """Services that write to the stores: what a restore stops and starts again."""
    return services_with(config, role="writer")


def backup_services(config: Mapping[str, Any]) -> list[str]:
    """Services that take backups on a schedule: a restore stops them with the writers (a
    backup of a half-restored state would look whole) and starts them again only on success."""
    return services_with(config, role="backup")


def app_services(config: Mapping[str, Any]) -> list[str]:
    """Services running the app image: the ones the local-stores fallback reconfigures."""
    return services_with(config, label=APP)


def _the_one(config: Mapping[str, Any], label: str, value: str) -> str:
    found = services_with(config, label=label, value=value)
    if len(found) != 1:
        raise StackError(
            f"{len(found)} services labelled {label}={value} ({', '.join(found) or 'none'}): "
            "the tooling needs exactly one"
        )
    return found[0]


def store_service(config: Mapping[str, Any], store: Store) -> str:
    """The service holding `store` (e.g. "database": where pg_dump and psql run)."""
    return _the_one(config, STORE, store)


def store_of(config: Mapping[str, Any], service: str) -> Store | None:
    store = _services(config).get(service, {}).get(STORE)
    if store is None:
        return None
    if store not in STORES:
        raise StackError(f"{service}: unknown {STORE}={store} (known: {', '.join(STORES)})")
    return store


def migrate_service(config: Mapping[str, Any]) -> str:
    """The app's one-shot service, the migrate step: its settings are the ones that may change
    the schema and keep the database's roles (coach/dbroles.py)."""
    found = services_with(config, role="one-shot", label=APP)
    if len(found) != 1:
        raise StackError(
            f"{len(found)} one-shot app services ({', '.join(found) or 'none'}): the tooling "
            "needs exactly one, the migrate step"
        )
    return found[0]


def settings_service(config: Mapping[str, Any]) -> str:
    """The service whose environment holds the app settings the tooling uses."""
    return _the_one(config, SETTINGS, "true")


def fallbacks(config: Mapping[str, Any]) -> dict[str, Fallback]:
    """{image variable: (services it runs, kind)} for every service that may be left out."""
    groups: dict[str, tuple[list[str], set[str]]] = {}
    for name, ls in sorted(_services(config).items()):
        kind = ls.get(FALLBACK)
        if kind is None:
            continue
        var = ls.get(IMAGE_VAR)
        if kind not in FALLBACK_KINDS or not var:
            raise StackError(
                f"{name}: {FALLBACK}={kind} needs {IMAGE_VAR}=<*_IMAGE variable> and one of "
                f"{', '.join(FALLBACK_KINDS)}"
            )
        services, kinds = groups.setdefault(var, ([], set()))
        services.append(name)
        kinds.add(kind)
    mixed = {var: sorted(kinds) for var, (_, kinds) in groups.items() if len(kinds) > 1}
    if mixed:
        raise StackError(f"services of one image disagree on {FALLBACK}: {mixed}")
    return {
        var: Fallback(tuple(services), cast(FallbackKind, kinds.pop()))
        for var, (services, kinds) in groups.items()
    }


def otlp_endpoint(config: Mapping[str, Any], left_out: list[str]) -> str | None:
    """Where the app sends traces: the first trace receiver in the model and not left out."""
    for name, ls in sorted(_services(config).items()):
        if (port := ls.get(OTLP_PORT)) and name not in left_out:
            return f"http://{name}:{port}"
    return None


def build_targets(config: Mapping[str, Any]) -> list[str]:
    """One service per image that is built here (several services share the app image:
    building each would build it again)."""
    targets: dict[str, str] = {}
    for name, spec in sorted((config.get("services") or {}).items()):
        if spec.get("build") is not None:
            targets.setdefault(str(spec.get("image") or name), name)
    return sorted(targets.values())


def app_image(config: Mapping[str, Any]) -> str:
    """The image every app service runs (one image for all of them)."""
    services = config.get("services") or {}
    images = {str(services[name].get("image", "")) for name in app_services(config)}
    if len(images) != 1:
        raise StackError(
            f"the services labelled {APP}=true must run one image, not "
            f"{len(images)} ({', '.join(sorted(images)) or 'no such service'})"
        )
    return images.pop()
