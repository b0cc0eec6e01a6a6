"""The benchmarks' shared ending: figures against their goals, printed as one table and appended
to .state/reports/bench.json (one row per figure: name, value, unit, goal, ratio, verdict), so
`nox -s bench` leaves every figure of the run in one file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ops.console import table
from ops.reports import REPORTS

BENCH_JSON = REPORTS / "bench.json"


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    goal: float | None = None  # None: reported for context, no verdict
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        """Above 1 when the goal is beaten, whichever direction is better."""
        if self.goal is None or not self.value:
            return None
        return self.value / self.goal if self.higher_is_better else self.goal / self.value

    @property
    def verdict(self) -> str:
        ratio = self.ratio
        return "-" if ratio is None else ("met" if ratio >= 1 else "missed")

    def row(self) -> dict[str, object]:
        fields = asdict(self)
        del fields["higher_is_better"]
        return {**fields, "ratio": self.ratio, "verdict": self.verdict}


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def report(bench: str, figures: Sequence[Figure], path: Path = BENCH_JSON) -> None:
    """Print `figures` as a table and append them to `path` under the benchmark's name
    (replacing the rows of an earlier run of the same figures)."""
    rows = [{"bench": bench, **f.row()} for f in figures]
    print(
        table(
            ["figure", "value", "unit", "goal", "ratio", "verdict"],
            [
                (f.name, _number(f.value), f.unit, _number(f.goal), _number(f.ratio), f.verdict)
                for f in figures
            ],
        )
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text()) if path.exists() else []
    fresh = {(r["bench"], r["name"]) for r in rows}  # a rerun replaces its own earlier rows
    kept = [r for r in existing if (r.get("bench"), r.get("name")) not in fresh]
    path.write_text(json.dumps([*kept, *rows], indent=2) + "\n")
