"""kubernetes.*: the manifests in infra/kubernetes, generated from the compose files
(docs/kubernetes.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ops.cli.common import JsonOption
from ops.cli.spec import Command, opt
from ops.console import Reporter
from ops.errors import ConfigError
from ops.kubernetes import render


@dataclass(frozen=True)
class RenderOptions(JsonOption):
    check: bool = opt(
        False, "change nothing: fail if the committed manifests differ from a fresh render"
    )


def run_render(options: RenderOptions, reporter: Reporter) -> None:
    files = render.render()
    root = render.K8S_DIR  # read here, not at import: a test points it at a copy
    where = render.relative(root)
    if options.check:
        stale = render.stale(files, root)
        if stale:
            raise ConfigError(
                f"{where} is out of date with infra/compose: {', '.join(stale)}",
                hint="`invoke kubernetes.render` writes them again (then commit them)",
            )
        reporter.result(f"{where}: {len(files)} files match the compose files", stale=[])
        return
    changed = render.write(files, root)
    text = f"{where}: " + (f"wrote {', '.join(changed)}" if changed else "already up to date")
    reporter.result(text, changed=changed)


RENDER = Command(
    "kubernetes.render",
    RenderOptions,
    run_render,
    """Write infra/kubernetes (kustomize base, dev and prod overlays) from the compose files.

The production compose model (`docker compose config`, images from infra/compose/.env, the
settings of .env.prod.example) becomes Deployments, StatefulSets, Jobs, ConfigMaps, Secret
mounts, NetworkPolicies and an Ingress. --check fails where a committed file differs.

example: ./run invoke kubernetes.render --check
""",
)

COMMANDS = (RENDER,)
