"""Benchmark (not a test): cold `up` to all-healthy with images built, and a rebuild of the
application image after a source-only change against a full no-cache build, side by side.

    ./run nox -s bench -- stack_up
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ops.console import table
from ops.images.build import build_image
from ops.images.resolve import resolve
from ops.paths import ROOT
from ops.stack import up as stacks
from tests.support.compose import isolated_project

CONTEXT = ("pyproject.toml", "uv.lock", "coach", "backend", "worker", "Dockerfile", ".dockerignore")


def cold_up() -> float:
    project, _ = isolated_project("coach-bench")
    stacks.down(project, volumes=True)
    project.run("build", "backend", quiet=True)  # images built: the figure is start-up only
    try:
        result = stacks.up(project, build=False)
        if not result.ok:
            raise SystemExit(f"stack unhealthy: {', '.join(result.failed)}")
        return result.seconds
    finally:
        stacks.down(project, volumes=True)


def rebuilds(python_image: str) -> tuple[float, float, float]:
    """(full no-cache build, unchanged rebuild, rebuild after a source-only change)."""
    with tempfile.TemporaryDirectory() as scratch:
        context = Path(scratch)
        for name in CONTEXT:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(
                    source, context / name, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy(source, context / name)
        args = {"PYTHON_IMAGE": python_image}
        tag = "coach/app:bench"
        dockerfile = context / "Dockerfile"
        full = build_image(tag, context=context, dockerfile=dockerfile, args=args, no_cache=True)
        unchanged = build_image(tag, context=context, dockerfile=dockerfile, args=args)
        with (context / "coach" / "agent.py").open("a") as source_file:
            source_file.write("\n# a source-only change\n")
        changed = build_image(tag, context=context, dockerfile=dockerfile, args=args)
    return full, unchanged, changed


def main() -> None:
    resolved = {r.var: r.ref for r in resolve(["PYTHON_IMAGE"])}
    full, unchanged, changed = rebuilds(resolved["PYTHON_IMAGE"])
    up_seconds = cold_up()
    print(
        table(
            ["measure", "seconds", "ratio"],
            [
                ("cold up to all-healthy (images built)", f"{up_seconds:.1f}", ""),
                ("full image build, no layer cache", f"{full:.1f}", "1.00"),
                ("rebuild, nothing changed", f"{unchanged:.1f}", f"{unchanged / full:.2f}"),
                ("rebuild after a source-only change", f"{changed:.1f}", f"{changed / full:.2f}"),
            ],
        )
    )


if __name__ == "__main__":
    main()
