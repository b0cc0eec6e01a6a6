"""images.*: get every image the stacks need — pulled, loaded or baked from Debian."""

from __future__ import annotations

from invoke import Context, task

from ops.images import bake as baking
from ops.tasks._util import exits_cleanly


def _mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


@task(iterable=["only"], help={
    "only": "Bake just this recipe (repeatable); its bases come along. Default: all.",
    "force": "Rebuild even when the recipe is unchanged (e.g. to pick up Debian updates).",
})
@exits_cleanly
def bake(c: Context, only: list[str] | None = None, force: bool = False) -> None:
    """Build Debian-based stand-ins for the official images (cached by recipe hash)."""
    results = baking.bake(only or None, force=force)
    width = max(len(r.recipe.ref) for r in results)
    print(f"{'image':<{width}}  {'source':<14} {'size':>8}  seconds")
    for r in results:
        source = "baked (cached)" if r.action == "cached" else "baked (built)"
        print(f"{r.recipe.ref:<{width}}  {source:<14} {_mb(r.size_bytes):>8}  {r.seconds:7.1f}")
