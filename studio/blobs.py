"""The content-addressed blob store: each file stored once under its SHA-256.

Blobs are shared by all workspaces on disk (under BLOB_DIR); which of them a workspace may
name by digest alone is what its snapshots hold (runs.models.SnapshotBlob).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO

from django.conf import settings

# A blob's name: the SHA-256 of its content.
SHA256 = re.compile(r"[0-9a-f]{64}")
# Files up to this size are hashed and stored from memory in one read.
SMALL_FILE = 8 * 1024 * 1024


def blob_path(sha: str) -> Path:
    return Path(_blob_file(sha))


def blob_exists(sha: str) -> bool:
    return os.path.exists(_blob_file(sha))


def _blob_file(sha: str) -> str:
    # A string, not a Path: checking 10,000 blobs of a submit is mostly path building.
    if not SHA256.fullmatch(sha):
        raise ValueError(f"not a sha256: {sha!r}")
    return f"{settings.BLOB_DIR}/{sha[:2]}/{sha}"


def _blob_write(sha: str, write: Callable[[BinaryIO], object]) -> bool:
    """Store a blob through `write(file)` unless it exists; True when it was new."""
    path = blob_path(sha)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def blob_store_bytes(data: bytes) -> tuple[str, bool]:
    sha = hashlib.sha256(data).hexdigest()
    return sha, _blob_write(sha, lambda f: f.write(data))


def blob_store_stream(src: IO[bytes]) -> tuple[str, bool]:
    """Hash and store what the file object `src` reads, a chunk at a time (any size);
    returns (sha256, newly stored)."""
    Path(settings.BLOB_DIR).mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=settings.BLOB_DIR, prefix=".part-")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        sha = digest.hexdigest()
        path = blob_path(sha)
        if path.exists():
            Path(tmp).unlink()
            return sha, False
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha, True


def blob_store_file(path: Path, size: int) -> tuple[str, bool]:
    """Hash a file and store it as a blob; returns (sha256, newly stored)."""
    if size <= SMALL_FILE:
        data = path.read_bytes()
        return blob_store_bytes(data)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    sha = digest.hexdigest()
    return sha, _blob_write(sha, lambda out: _copy_into(path, out))


def _copy_into(path: Path, out: BinaryIO) -> None:
    with open(path, "rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)
