"""nginx's configuration as the container renders it, without Docker: the compose files' nginx
service gives the mounted files and the environment (each `${NAME:-default}` at its default),
and the templates go through the same envsubst rule as the image's entrypoint (only names that
are defined and match NGINX_ENVSUBST_FILTER). `nox -s gixy` checks what this writes.

    python -m ops.stack.nginx {dev,prod,tls} DEST   # prints DEST/etc/nginx/nginx.conf
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ops.errors import ConfigError
from ops.paths import COMPOSE_DIR
from ops.stack import roles

FILE_SETS: dict[str, tuple[str, ...]] = {
    "dev": ("docker-compose.yml", "docker-compose.override.yml"),
    "prod": ("docker-compose.yml", "docker-compose.prod.yml"),
    "tls": ("docker-compose.yml", "docker-compose.prod.yml", "docker-compose.tls.yml"),
}
TEMPLATE_DIR = PurePosixPath("/etc/nginx/templates")  # the image's default
MAIN_CONF = PurePosixPath("/etc/nginx/nginx.conf")
_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
_SHELL_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_INCLUDE = re.compile(r"^(\s*include\s+)(/\S+;)", re.MULTILINE)


class _ComposeLoader(yaml.SafeLoader):
    """Compose's merge tags (!override, !reset) read as the plain value they carry."""


def _untagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


for _tag in ("!override", "!reset"):
    _ComposeLoader.add_constructor(_tag, _untagged)


def load_compose_file(name: str) -> dict[str, Any]:
    """One file of infra/compose as written (no interpolation, no merge), tags read plain."""
    data: dict[str, Any] = yaml.load((COMPOSE_DIR / name).read_text(), _ComposeLoader)  # noqa: S506 - a SafeLoader
    return data


def interpolate(value: str) -> str:
    """Compose's `${NAME:-default}` at its default, as on a host that sets none of them."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.groups()
        if op in ("?", ":?"):
            raise ConfigError(f"{name} is required by the compose files: {arg}")
        return arg or ""

    return _INTERPOLATION.sub(one, value)


def nginx_service(file_set: str) -> tuple[dict[str, str], dict[str, Path]]:
    """(environment, {container path: host file}) of the edge service, merged over the files
    in order as compose merges them (environment by name, volumes by target)."""
    composes = [load_compose_file(name) for name in FILE_SETS[file_set]]
    (edge,) = roles.services_with(composes[0], role="edge")
    environment: dict[str, str] = {}
    mounts: dict[str, Path] = {}
    for compose in composes:
        service = (compose.get("services") or {}).get(edge) or {}
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        environment |= {k: interpolate(str(v)) for k, v in env.items()}
        for volume in service.get("volumes") or []:
            source, target = interpolate(volume).split(":")[:2]
            mounts[target] = (COMPOSE_DIR / source).resolve()
    return environment, mounts


def envsubst(text: str, environment: dict[str, str]) -> str:
    """The entrypoint's envsubst: `$NAME`/`${NAME}` for names defined and matching the filter."""
    pattern = re.compile(environment.get("NGINX_ENVSUBST_FILTER", ""))
    defined = {k: v for k, v in environment.items() if pattern.search(k)}

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return defined.get(name, match.group(0))

    return _SHELL_VAR.sub(one, text)


def render(file_set: str, dest: Path) -> Path:
    """Write the container's /etc/nginx and rendered templates under dest (absolute includes
    pointed there), and return the path of nginx.conf."""
    environment, mounts = nginx_service(file_set)
    output_dir = PurePosixPath(environment.get("NGINX_ENVSUBST_OUTPUT_DIR", "/etc/nginx/conf.d"))
    files: dict[PurePosixPath, str] = {}
    for target, source in mounts.items():
        path = PurePosixPath(target)
        if path.parent == TEMPLATE_DIR and path.name.endswith(".template"):
            rendered = envsubst(source.read_text(), environment)
            files[output_dir / path.name.removesuffix(".template")] = rendered
        else:
            files[path] = source.read_text()
    # The image's own mime.types: only the types matter to nginx, none to the checks.
    files.setdefault(PurePosixPath("/etc/nginx/mime.types"), "types {}\n")
    for path, text in files.items():
        local = dest / path.relative_to("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(_INCLUDE.sub(lambda m: f"{m.group(1)}{dest}{m.group(2)}", text))
    return dest / MAIN_CONF.relative_to("/")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file_set", choices=sorted(FILE_SETS))
    parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    print(render(args.file_set, args.dest.resolve()))


if __name__ == "__main__":
    main()
