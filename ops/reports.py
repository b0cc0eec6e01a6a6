"""Totals over the JUnit XML reports the pytest sessions write (for CI's closing line)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from ops.paths import STATE_DIR

REPORTS = STATE_DIR / "reports"


def totals(paths: list[Path]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in paths:
        for suite in ET.parse(path).getroot().iter("testsuite"):  # noqa: S314
            failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skipped = int(suite.get("skipped", 0))
            counts["failed"] += failed
            counts["skipped"] += skipped
            counts["passed"] += int(suite.get("tests", 0)) - failed - skipped
    return counts


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or sorted(REPORTS.glob("*.xml"))
    counts = totals(paths)
    for path in paths:
        one = totals([path])
        print(
            f"  {path.stem}: {one['passed']} passed, {one['failed']} failed, "
            f"{one['skipped']} skipped"
        )
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] or not counts["passed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
