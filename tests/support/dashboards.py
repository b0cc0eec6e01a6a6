"""The Grafana dashboards as the tests read them: every panel's and annotation's expression,
the template variables, and an expression as Grafana would send it with every variable on
"All", so that a direct query to Prometheus evaluates what a panel shows by default."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ops.paths import INFRA

DIRECTORY = INFRA / "observability" / "grafana" / "dashboards"
# Grafana's own variables, as fixed windows (a direct query has no dashboard time range).
BUILTINS = {"__rate_interval": "2m", "__interval": "1m", "__range": "1h"}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),\s*)?(\w+)\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Expression:
    dashboard: str  # the file's stem
    where: str  # the panel's title, or "annotation <name>"
    expr: str

    @property
    def id(self) -> str:
        return f"{self.dashboard}:{self.where}"


@cache
def paths() -> tuple[Path, ...]:
    return tuple(sorted(DIRECTORY.rglob("*.json")))


@cache
def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    return [p for panel in items for p in (panel, *panels(panel.get("panels", [])))]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def prometheus_annotations(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The annotations that query Prometheus (Grafana's built-in one has no expression)."""
    return [a for a in dashboard.get("annotations", {}).get("list", []) if a.get("expr")]


def panel_expressions() -> list[Expression]:
    return [
        Expression(path.stem, panel["title"], target["expr"])
        for path in paths()
        for panel in panels(load(path)["panels"])
        for target in panel.get("targets", [])
    ]


def annotation_expressions() -> list[Expression]:
    return [
        Expression(path.stem, f"annotation {a['name']}", a["expr"])
        for path in paths()
        for a in prometheus_annotations(load(path))
    ]


def dashboard_of(expression: Expression) -> dict[str, Any]:
    return load(DIRECTORY / f"{expression.dashboard}.json")


def used_variables(expr: str) -> set[str]:
    return {a or b for a, b in _VARIABLE.findall(expr)} - set(BUILTINS)


def substitute(expr: str, dashboard: dict[str, Any]) -> str:
    """`expr` as Grafana sends it with every variable on All (its allValue, else ".*").
    An unknown variable is an error: Grafana would send it as it is, matching nothing."""
    defined = variables(dashboard)

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        if name not in defined:
            raise KeyError(f"${name} is not a variable of {dashboard.get('uid')}: {expr}")
        return str(defined[name].get("allValue") or ".*")

    return _VARIABLE.sub(value, expr)


def label_values(variable: dict[str, Any]) -> tuple[str, str]:
    """(series selector, label) of a `label_values(selector, label)` variable query."""
    query = variable["query"]
    text = query["query"] if isinstance(query, dict) else query
    match = _LABEL_VALUES.match(text)
    if match is None:
        raise ValueError(f"variable {variable['name']}: not a label_values() query: {text}")
    return match.group(1) or "", match.group(2)


def datasource_uid(
    dashboard: dict[str, Any], source: dict[str, Any], defaults: dict[str, str]
) -> str:
    """The data source uid a panel queries: a `${var}` of a datasource variable resolves to
    the provisioned default of its type (`defaults`: type -> uid), as Grafana starts it."""
    uid = str(source.get("uid", ""))
    match = _VARIABLE.fullmatch(uid)
    if match is None:
        return uid
    variable = variables(dashboard).get(match.group(1) or match.group(2) or "", {})
    if variable.get("type") != "datasource":
        return uid
    return defaults.get(str(variable.get("query")), uid)
