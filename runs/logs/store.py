"""Durable run logs: one append-only file per (run, stream); a byte's offset is its position.

Storage is the truth for every reader (page, websocket, API, CLI): the channel
layer only wakes readers up. Appends are idempotent by offset, so a monitor
that resumes after a crash, or a second monitor, never stores a byte twice.
Output read from a file on a target is stored masked, so its offsets there and
here part ways: each stream records with its bytes how far into that file they
reach (`<stream>.source`), and bytes read from anywhere else are not stored.

A disk that fills mid-append leaves no trace: bytes beyond the stream's
record are cut off before the next append (they are read again from the
source), and so is a cut-short record of the arrival index.

Each append that stores new bytes also adds a fixed-size record (stream, its
new size) to the run's arrival index, so a finished log can be replayed with
its streams interleaved as they arrived (a traceback after the line that
caused it), reading only the end of the index for the end of the log.
"""

import fcntl
import json
import os
import re
import shutil
import struct
from pathlib import Path

from django.conf import settings

STREAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


ARRIVAL_RECORD = struct.Struct("<64sQ")
ARRIVAL_INDEX = "arrival.idx"
# Records read at once when walking the index back from its end.
ARRIVAL_BLOCK = 4096


def stream_path(run_id: int, stream: str) -> Path:
    if not STREAM_NAME.fullmatch(stream):
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


def source_path(run_id: int, stream: str) -> Path:
    return stream_path(run_id, stream).with_suffix(".source")


def source_record(run_id: int, stream: str) -> dict | None:
    """{"source", "read", "size"}: the stream's first `size` bytes are `source` up to `read`."""
    try:
        return json.loads(source_path(run_id, stream).read_text())
    except FileNotFoundError:
        return None


def source_read(run_id: int, stream: str, source: str) -> int | None:
    """How far into `source` the stored bytes reach; None when none of them came from it."""
    record = source_record(run_id, stream)
    return record["read"] if record and record["source"] == source else None


def write_source_record(run_id: int, stream: str, source: str, read: int, size: int) -> None:
    path = source_path(run_id, stream)
    partial = path.with_suffix(".source-part")
    try:
        with open(partial, "w") as f:
            json.dump({"source": source, "read": read, "size": size}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except OSError:
        # A full disk: the old record stays whole, and so do the bytes it counts.
        partial.unlink(missing_ok=True)
        raise


def append_from_source(
    run_id: int, stream: str, data: bytes, *, source: str, read_from: int, read_to: int
) -> int | None:
    """Store `data`, made of what was read from `source` between `read_from` and `read_to`.

    Returns where in the stream it was stored; None, storing nothing, unless the
    stream holds `source` exactly up to `read_from` (or nothing of it yet): those
    bytes were stored already, by a monitor that read them before this one.
    """
    path = stream_path(run_id, stream)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        record = source_record(run_id, stream)
        if record and os.fstat(f.fileno()).st_size > record["size"]:
            # Bytes whose record was never written (their writer died in between):
            # they are read again from the source.
            f.truncate(record["size"])
        at = os.fstat(f.fileno()).st_size
        read = source_read(run_id, stream, source)
        if read is None:
            write_source_record(run_id, stream, source, read_from, at)
        elif read != read_from:
            return None
        write_bytes(f, path, stream, data)
        write_source_record(run_id, stream, source, read_to, at + len(data))
        return at


def write_bytes(f, path: Path, stream: str, data: bytes) -> None:
    """Append `data` to the open stream `f` durably, and note its arrival in the index."""
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
    with open(path.parent / ARRIVAL_INDEX, "ab") as index:
        cut = index.tell() % ARRIVAL_RECORD.size
        if cut:
            # A record cut short by a full disk would shift every later one: drop it.
            index.truncate(index.tell() - cut)
        index.write(ARRIVAL_RECORD.pack(stream.encode(), os.fstat(f.fileno()).st_size))


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
            write_bytes(f, path, stream, data[skip:])
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


def arrival_order(run_id: int, offsets: dict[str, int]) -> list[tuple[str, int]]:
    """How the bytes of `offsets`' streams after those offsets arrived: (stream, end) in order.

    Sending each stream up to each `end` in turn replays the streams interleaved
    as they were stored. Bytes the index does not cover (a log stored before it
    existed) are not listed: read them after these.
    """
    path = Path(settings.LOG_DIR) / str(run_id) / ARRIVAL_INDEX
    if not path.exists():
        return []
    backwards: list[tuple[str, int]] = []
    with open(path, "rb") as index:
        count = os.fstat(index.fileno()).st_size // ARRIVAL_RECORD.size
        pending = set(offsets)
        while count > 0 and pending:
            first = max(0, count - ARRIVAL_BLOCK)
            index.seek(first * ARRIVAL_RECORD.size)
            block = index.read((count - first) * ARRIVAL_RECORD.size)
            for at in range(count - first - 1, -1, -1):
                name, end = ARRIVAL_RECORD.unpack_from(block, at * ARRIVAL_RECORD.size)
                stream = name.rstrip(b"\0").decode()
                if stream not in offsets:
                    continue
                if end <= offsets[stream]:
                    # Everything of this stream from here back is before the offset.
                    pending.discard(stream)
                    continue
                if stream in pending:
                    backwards.append((stream, end))
            count = first
    order: list[tuple[str, int]] = []
    for stream, end in reversed(backwards):
        if order and order[-1][0] == stream:
            order[-1] = (stream, end)
        else:
            order.append((stream, end))
    return order


def folder_copy(run_id: int, into: Path) -> None:
    """Copy a run's log folder into `into`, consistent even while the run is being stored.

    Each stream's `.source` record is copied before its log, and the log cut at the size
    the record gives: bytes past it are read again from the target, as after a monitor
    that died between the two writes. The arrival index comes last, without the records
    of bytes past the copied logs.
    """
    folder = Path(settings.LOG_DIR) / str(run_id)
    into.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int | None] = {}
    for record in sorted(folder.glob("*.source")):
        shutil.copyfile(record, into / record.name)
        sizes[record.stem] = json.loads((into / record.name).read_text())["size"]
    for log in sorted(folder.glob("*.log")):
        limit = sizes.get(log.stem)
        with open(log, "rb") as src, open(into / log.name, "wb") as dst:
            left = limit
            while left is None or left > 0:
                chunk = src.read(1 << 20 if left is None else min(1 << 20, left))
                if not chunk:
                    break
                dst.write(chunk)
                if left is not None:
                    left -= len(chunk)
            sizes[log.stem] = dst.tell()
    try:
        index = open(folder / ARRIVAL_INDEX, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with index, open(into / ARRIVAL_INDEX, "wb") as out:
        while block := index.read(ARRIVAL_BLOCK * ARRIVAL_RECORD.size):
            whole = len(block) - len(block) % ARRIVAL_RECORD.size
            for name, end in ARRIVAL_RECORD.iter_unpack(block[:whole]):
                stream = name.rstrip(b"\0").decode()
                if end <= (sizes.get(stream) or 0):
                    out.write(ARRIVAL_RECORD.pack(name, end))
