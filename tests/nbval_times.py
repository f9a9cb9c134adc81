"""Seconds per notebook from a pytest JUnit XML report of an nbval run (`make test` prints them:
how long each notebook of the instructor edition takes, top to bottom)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def seconds_per_notebook(report: Path) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for case in ET.parse(report).iter("testcase"):
        # nbval names a cell's case after its file: "notebooks.instructor.02-saga.ipynb"
        where = case.get("file") or case.get("classname") or "?"
        name = where.removesuffix(".ipynb").replace("/", ".").rsplit(".", 1)[-1]
        totals[name] += float(case.get("time") or 0.0)
    return dict(sorted(totals.items()))


if __name__ == "__main__":
    for notebook, seconds in seconds_per_notebook(Path(sys.argv[1])).items():
        print(f"  {notebook:24s} {seconds:6.1f} s")
