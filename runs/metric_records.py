"""What a run may record as a metric or a tag, and why a record is skipped.

Records come from the run's own code (the metrics file the trainyard helper
appends to, or stdout read with the run's metric patterns), so any of them may
be malformed. One bad record must never stop the others, or the run: it is
skipped, and the run's timeline says why (runs.services.records.metrics_record).
"""

from __future__ import annotations

import json
import math

MAX_NAME = 255  # Metric.name
MAX_TAG_VALUE = 1024
MAX_TAGS = 100
MAX_STEP = 2**31 - 1  # Metric.step is a 32-bit integer column on every database
# A metrics file line or a stdout line longer than this is skipped unread: no real
# record is that long, and it bounds what one line costs to parse or match.
MAX_LINE_BYTES = 64 * 1024


class Skipped(ValueError):
    """The record cannot be stored; the message says what was wrong with it."""


def _shown(value) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer with more digits than Python prints
        text = "a huge integer"
    return text if len(text) <= 40 else f"{text[:40]}…"


def _storable(text: str) -> bool:
    """No database stores a NUL character, nor text that is not valid Unicode."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _name(value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise Skipped(f"a {what} name must be non-empty text, not {_shown(value)}")
    if len(value) > MAX_NAME:
        raise Skipped(f"{what} name {_shown(value)} is longer than {MAX_NAME} characters")
    if not _storable(value):
        raise Skipped(f"{what} name {_shown(value)} holds a NUL or an invalid character")
    return value


def metric(record: dict) -> tuple[str, float, int | None]:
    """(name, value, step or None for the next one) of a metric record, or Skipped."""
    name = _name(record.get("metric"), "metric")
    raw = record.get("value")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise Skipped(f"value {_shown(raw)} of metric {_shown(name)} is not a number")
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        raise Skipped(f"value {_shown(raw)} of metric {_shown(name)} is not a number") from None
    if not math.isfinite(value):
        raise Skipped(f"value {_shown(raw)} of metric {_shown(name)} is not a finite number")
    step = record.get("step")
    if step is None:
        return name, value, None
    if isinstance(step, bool) or not isinstance(step, int):
        raise Skipped(f"step {_shown(step)} of metric {_shown(name)} is not a whole number")
    return name, value, checked_step(step, name)


def checked_step(step: int, name: str) -> int:
    if not 0 <= step <= MAX_STEP:
        raise Skipped(f"step {step} of metric {_shown(name)} is outside 0 to {MAX_STEP}")
    return step


def tag(record: dict) -> tuple[str, str]:
    """(key, value) of a tag record, or Skipped."""
    key = _name(record.get("tag"), "tag")
    value = record.get("value", "")
    if isinstance(value, dict | list):
        raise Skipped(f"value of tag {_shown(key)} is not text")
    try:
        text = "" if value is None else str(value)
    except ValueError:
        raise Skipped(f"value of tag {_shown(key)} is not text") from None
    if len(text) > MAX_TAG_VALUE:
        raise Skipped(f"value of tag {_shown(key)} is longer than {MAX_TAG_VALUE} characters")
    if not _storable(text):
        raise Skipped(f"value of tag {_shown(key)} holds a NUL or an invalid character")
    return key, text


def file_line_read(line: bytes, records: list[dict]) -> str:
    """Add the record of one metrics file line; what is wrong with it, if anything."""
    if len(line) > MAX_LINE_BYTES:
        return f"is longer than {MAX_LINE_BYTES // 1024} KB"
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return "is not JSON"
    if not isinstance(record, dict):
        return "is not a JSON object"
    records.append(record)
    return ""


def stdout_lines_match(
    lines: list[bytes], patterns: list, records: list[dict], skipped: list[str]
) -> None:
    """Add the records `patterns` (compiled metric patterns) find in whole stdout lines."""
    long_lines = 0
    for line in lines:
        if len(line) > MAX_LINE_BYTES:
            long_lines += 1
            continue
        for text in line.decode(errors="replace").splitlines():
            for pattern in patterns:
                match = pattern.search(text)
                if match:
                    records.extend(pattern_match_records(match.groupdict()))
    if long_lines:
        skipped.append(
            f"{long_lines} stdout line(s) longer than {MAX_LINE_BYTES // 1024} KB were not "
            "matched against the metric patterns"
        )


def pattern_match_records(groups: dict) -> list[dict]:
    """The records of one match: each named group but `step` is a metric's value."""
    step = groups.pop("step", None)
    found = []
    for name, value in groups.items():
        if value is None:
            continue
        record = {"metric": name, "value": value}
        if step is not None and step.isascii() and step.isdigit():
            # int() refuses thousands of digits; a longer step stays text and is skipped.
            record["step"] = int(step) if len(step) <= 20 else step
        found.append(record)
    return found
