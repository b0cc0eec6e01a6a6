"""Pick, per image, where it comes from: present locally → pullable (through the mirror) →
baked from Debian → unavailable; and tell compose which reference to run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ops.console import Reporter
from ops.errors import ImageError
from ops.images import bake as baking
from ops.images.catalog import ImageRef, load_images
from ops.images.pull import pull_all
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


def resolve(
    variables: list[str] | None = None,
    *,
    settings: OpsSettings | None = None,
    images_file: Path | None = None,
    allow_pull: bool = True,
    allow_bake: bool = True,
    reporter: Reporter | None = None,
) -> list[Resolved]:
    """Resolve the given *_IMAGE variables (default: all in the images file), in file order."""
    settings = settings or get_settings()
    catalog = load_images(images_file) if images_file else load_images()
    wanted = variables or list(catalog)
    unknown = [v for v in wanted if v not in catalog]
    if unknown:
        raise ImageError(
            f"unknown image variable(s) {', '.join(unknown)}", hint=f"known: {', '.join(catalog)}"
        )
    missing = [v for v in dict.fromkeys(wanted) if not present(str(catalog[v]))]
    results = {
        v: Resolved(v, catalog[v], str(catalog[v]), "local") for v in wanted if v not in missing
    }
    failures: dict[str, str] = {}
    if allow_pull and settings.pull == "auto":
        # All at once, a few at a time: one slow mirror must not hold up every other image.
        pulled = pull_all([catalog[v] for v in missing], settings, reporter)
        for var, outcome in zip(missing, pulled, strict=True):
            if outcome.ok:
                image = catalog[var]
                results[var] = Resolved(var, image, str(image), "pulled", outcome.detail)
            else:
                failures[var] = f"pull failed: {outcome.detail}"
    else:
        failures = dict.fromkeys(missing, "pulls disabled")
    bakeable = [baking.BY_IMAGE_VAR[v].name for v in failures if v in baking.BY_IMAGE_VAR]
    if bakeable and allow_bake:
        for result in baking.bake(bakeable, reporter=reporter):
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
