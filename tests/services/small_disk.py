"""A disk that fills: a small tmpfs of its own, filled and freed by the test. Needs root."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SIZE_MB = 8


class SmallDisk:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self, leave: int = 0) -> None:
        """Write a file until the disk refuses more, then give back `leave` bytes of it."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        block = b"\0" * (1 << 16)
        try:
            while True:
                os.write(fd, block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)
        if leave:
            size = self.filler.stat().st_size
            os.truncate(self.filler, max(0, size - leave))

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def leftovers(self, pattern: str) -> list[str]:
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob(pattern))


@pytest.fixture
def small_disk() -> Iterator[SmallDisk]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = Path(tempfile.mkdtemp(prefix="trainyard-disk-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}M,mode=0700", "tmpfs", str(path)],
        check=True,
    )
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)
        path.rmdir()


@pytest.fixture
def storage_on_small_disk(settings, small_disk: SmallDisk) -> SmallDisk:
    """Run logs and blobs on the small disk; the database and the rest of DATA_DIR stay."""
    settings.LOG_DIR = small_disk.path / "logs"
    settings.BLOB_DIR = small_disk.path / "blobs"
    return small_disk
