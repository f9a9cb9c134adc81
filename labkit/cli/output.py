"""How the CLI prints: aligned tables for people, one JSON object per line for programs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, default=str))


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows as an aligned text table with upper-case headers; missing values print as `-`."""
    widths = {c: max([len(c), *(len(_cell(r.get(c))) for r in rows)]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(_cell(r.get(c)).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def print_result(result: Mapping[str, Any], as_json: bool) -> None:
    """A benchmark's figures: `key: value` lines unless --json; the last line is always JSON."""
    if not as_json:
        for k, v in result.items():
            click.echo(f"{k:>22}: {v}")
    print_json(result)


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")
