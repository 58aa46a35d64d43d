"""What list and show print: a table or `key: value` lines, or JSON with `--output json`."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def printed(key: str, value: Any) -> str:
    """`value` as a person reads it; times (the `*_at` fields) in ISO form to the second."""
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(printed(key, v) for v in value)
    if key.endswith("_at") and isinstance(value, str):
        return value[:19].replace("T", " ")
    return str(value)


def table(rows: list[dict], columns: Sequence[tuple[str, str]]) -> None:
    """One row per item, one column per (heading, key) pair."""
    cells = [[printed(key, row.get(key)) for _, key in columns] for row in rows]
    headings = [heading for heading, _ in columns]
    widths = [max(len(c) for c in column) for column in zip(headings, *cells, strict=False)]
    for line in [headings, *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def details(item: dict, keys: Sequence[str]) -> None:
    """The `keys` of `item` that have a value, one `key: value` line each."""
    shown = [(k, item.get(k)) for k in keys if item.get(k) not in (None, "", [], {})]
    width = max((len(k) for k, _ in shown), default=0)
    for key, value in shown:
        if isinstance(value, dict):
            print(f"{key}:")
            for name, inner in value.items():
                print(f"  {name}: {printed(name, inner)}")
        else:
            print(f"{key.ljust(width)}  {printed(key, value)}")


def as_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
