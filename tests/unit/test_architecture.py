"""The tree reads as the architecture: ops/ is rooms ranked from the core up, a room imports
only rooms below it (or its own), the application (coach, backend, worker) never imports the
operations tooling, and every room says in its docstring what it owns."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.processes import ROOT

# Lowest first. The core modules are the ground floor every room stands on.
RANKS = {
    "ops.errors": 0,
    "ops.paths": 0,
    "ops.settings": 0,
    "ops.console": 0,
    "ops.proc": 0,
    "ops.reports": 0,
    "ops.releases": 0,
    "ops.host": 1,
    "ops.images": 2,
    "ops.stack": 3,
    "ops.swarm": 4,
    "ops.kubernetes": 4,  # core and stack only, like swarm
    "ops.data": 5,
    "ops.cli": 6,
}
ROOMS = ["host", "images", "stack", "swarm", "kubernetes", "data", "cli"]


def _room(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def _module_of(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module imported anywhere in the file (function-local imports too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _rank(module: str) -> int | None:
    return RANKS.get(_room(module)) if module.startswith("ops.") else None


OPS_FILES = sorted((ROOT / "ops").rglob("*.py"))


def test_every_ops_module_belongs_to_a_ranked_room() -> None:
    for path in OPS_FILES:
        module = _module_of(path)
        if module == "ops":
            continue
        assert _rank(module) is not None, (
            f"{module}: not in a room (tests/unit/{Path(__file__).name})"
        )


@pytest.mark.parametrize("path", OPS_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_room_imports_only_rooms_below_it(path: Path) -> None:
    module = _module_of(path)
    own = _rank(module)
    if own is None:
        return
    for line, imported in _imports(path):
        rank = _rank(imported)
        if rank is None or _room(imported) == _room(module):
            continue
        assert rank < own or rank == 0, (
            f"{path.relative_to(ROOT)}:{line} imports {imported}: rank {rank} is not below "
            f"{_room(module)}'s {own}"
        )


def test_the_application_never_imports_the_tooling() -> None:
    for package in ("coach", "backend", "worker"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, imported in _imports(path):
                assert (
                    not imported.startswith(("ops.", "scripts", "tasks")) and imported != "ops"
                ), f"{path.relative_to(ROOT)}:{line} imports {imported}"


@pytest.mark.parametrize("room", ROOMS)
def test_every_room_says_what_it_owns(room: str) -> None:
    init = ROOT / "ops" / room / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text())) if init.is_file() else None
    assert doc and "Imports" in doc, f"ops/{room}/__init__.py: say what it owns and may import"


def test_no_module_under_ops_imports_scripts() -> None:
    for path in OPS_FILES:
        for line, imported in _imports(path):
            assert not imported.startswith("scripts"), f"{path}:{line}"
