"""Durable run logs: one append-only file per (run, stream); a byte's offset is its position.

Storage is the truth for every reader (page, websocket, API, CLI): the channel
layer only wakes readers up. Appends are idempotent by offset, so a monitor
that resumes after a crash, or a second monitor, never stores a byte twice.
"""

import os
import re
from pathlib import Path

from django.conf import settings

STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def stream_path(run_id: int, stream: str) -> Path:
    if not STREAM_NAME.match(stream):
        raise ValueError(f"Bad log stream name {stream!r}")
    return Path(settings.LOG_DIR) / str(run_id) / f"{stream}.log"


def size(run_id: int, stream: str) -> int:
    try:
        return stream_path(run_id, stream).stat().st_size
    except FileNotFoundError:
        return 0


def streams(run_id: int) -> dict[str, int]:
    """Every stream of a run with its current size."""
    folder = Path(settings.LOG_DIR) / str(run_id)
    if not folder.is_dir():
        return {}
    return {p.stem: p.stat().st_size for p in sorted(folder.glob("*.log"))}


def append(run_id: int, stream: str, offset: int, data: bytes) -> int:
    """Store `data`, which starts at `offset` in the stream; return the new size.

    Bytes already stored (offset below the current size) are skipped; a gap
    (offset above it) is refused because it would lose output.
    """
    path = stream_path(run_id, stream)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        current = f.tell()
        if offset > current:
            raise ValueError(f"Log gap in run {run_id} {stream}: have {current}, got {offset}")
        skip = current - offset
        if skip < len(data):
            f.write(data[skip:])
            f.flush()
            os.fsync(f.fileno())
        return f.tell()


def read(run_id: int, stream: str, offset: int = 0, limit: int = 1 << 20) -> tuple[bytes, int]:
    """Up to `limit` bytes from `offset`, and the offset to read from next."""
    try:
        with open(stream_path(run_id, stream), "rb") as f:
            f.seek(max(0, offset))
            data = f.read(limit)
    except FileNotFoundError:
        return b"", offset
    return data, max(0, offset) + len(data)


def tail_offset(run_id: int, stream: str, nbytes: int) -> int:
    """Where the last `nbytes` of a stream begin, for viewers that load the tail first."""
    return max(0, size(run_id, stream) - nbytes)
