"""Pick, per image, where it comes from: present locally → pullable (through the mirror) →
baked from Debian → unavailable; and tell compose which reference to run."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ops.console import say
from ops.images import bake as baking
from ops.images.catalog import ImageRef, load_images
from ops.paths import STATE_DIR
from ops.proc import run
from ops.settings import OpsSettings, get_settings

Source = Literal["local", "pulled", "baked", "unavailable"]
RESOLVED_ENV = STATE_DIR / "images.env"


@dataclass(frozen=True)
class Resolved:
    var: str
    pinned: ImageRef
    ref: str  # what to run: the pinned ref, or the baked stand-in
    source: Source
    detail: str = ""

    @property
    def available(self) -> bool:
        return self.source != "unavailable"


def present(ref: str) -> bool:
    return (
        run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
            check=False,
            capture=True,
            quiet=True,
        ).returncode
        == 0
    )


def pull(image: ImageRef, settings: OpsSettings) -> tuple[bool, str]:
    """Pull through the mirror and tag the result with the pinned name. (ok, detail)."""
    remote = image.via_mirror(settings)
    say(f"pulling {remote}")
    try:
        done = run(
            ["docker", "pull", "--quiet", remote],
            check=False,
            capture=True,
            quiet=True,
            timeout=settings.pull_timeout,
        )
    except subprocess.TimeoutExpired:
        return False, f"no answer within {settings.pull_timeout:.0f}s"
    if done.returncode != 0:
        last = (done.stderr or "pull failed").strip().splitlines()[-1]
        # Keep the cause, not the daemon's full URL chatter: "...: no such host".
        return False, last.rsplit(": ", 1)[-1][:120]
    if remote != str(image):
        run(["docker", "tag", remote, str(image)], quiet=True)
        return True, f"via {remote.split('/')[0]}"
    return True, ""


def resolve(
    variables: list[str] | None = None,
    *,
    settings: OpsSettings | None = None,
    images_file: Path | None = None,
    allow_pull: bool = True,
    allow_bake: bool = True,
) -> list[Resolved]:
    """Resolve the given *_IMAGE variables (default: all in the images file), in file order."""
    settings = settings or get_settings()
    catalog = load_images(images_file) if images_file else load_images()
    wanted = variables or list(catalog)
    unknown = [v for v in wanted if v not in catalog]
    if unknown:
        raise ValueError(
            f"unknown image variable(s) {', '.join(unknown)}; known: {', '.join(catalog)}"
        )
    results: dict[str, Resolved] = {}
    failures: dict[str, str] = {}
    for var in wanted:
        image = catalog[var]
        if present(str(image)):
            results[var] = Resolved(var, image, str(image), "local")
            continue
        if allow_pull and settings.pull == "auto":
            ok, detail = pull(image, settings)
            if ok:
                results[var] = Resolved(var, image, str(image), "pulled", detail)
                continue
            failures[var] = f"pull failed: {detail}"
        else:
            failures[var] = "pulls disabled"
    bakeable = [baking.BY_IMAGE_VAR[v].name for v in failures if v in baking.BY_IMAGE_VAR]
    if bakeable and allow_bake:
        for result in baking.bake(bakeable):
            if result.recipe.replaces in failures:
                var = result.recipe.replaces
                results[var] = Resolved(
                    var,
                    catalog[var],
                    result.recipe.ref,
                    "baked",
                    f"Debian stand-in ({result.action})",
                )
    for var, why in failures.items():
        if var not in results:
            no_recipe = "" if var in baking.BY_IMAGE_VAR else "; Debian cannot supply it"
            results[var] = Resolved(
                var, catalog[var], str(catalog[var]), "unavailable", why + no_recipe
            )
    return [results[v] for v in wanted]


def write_env(resolved: list[Resolved], path: Path = RESOLVED_ENV) -> Path:
    """An env file for `docker compose --env-file`, mapping each variable to what to run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by the image resolver (ops/images/resolve.py); do not edit."]
    lines += [f"{r.var}={r.ref}" for r in resolved]
    path.write_text("\n".join(lines) + "\n")
    return path
