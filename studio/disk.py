"""A full disk under DATA_DIR: how to recognise it and what to tell the user.

Blobs, logs and the temporary files of submits and output collection all live
in DATA_DIR. A write that finds no room there (ENOSPC, or EDQUOT when a quota
is reached, which users fix the same way) leaves nothing half-stored behind,
and whoever asked is told the disk is full and what to do.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings

from studio.errors import ServiceError
from studio.units import human_bytes

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DISK_FULL_ADVICE = (
    "the studio's data folder (DATA_DIR) has no space left: free space there (or give it a "
    "larger disk or quota)"
)


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` is a write refused for want of space."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


@contextmanager
def disk_full_refused(what: str) -> Iterator[None]:
    """A full disk met inside as the ServiceError the user sees: `what` was not done, and
    why. Whatever was written is cleaned up by the code that wrote it."""
    try:
        yield
    except OSError as exc:
        if not disk_full(exc):
            raise
        raise ServiceError(
            f"{what}: {DISK_FULL_ADVICE}, then try again.", code="disk_full", status=507
        ) from None


def disk_free_bytes() -> int:
    return shutil.disk_usage(settings.DATA_DIR).free


def disk_free_warning() -> str:
    """What to say when DATA_DIR has less free space than DISK_FREE_WARN_MB ("" when not)."""
    free = disk_free_bytes()
    limit = settings.DISK_FREE_WARN_MB * 1024 * 1024
    if free >= limit:
        return ""
    return (
        f"only {human_bytes(free)} free in DATA_DIR (below DISK_FREE_WARN_MB = "
        f"{settings.DISK_FREE_WARN_MB} MB): free space there before runs' logs and outputs "
        "and new snapshots have to wait for it"
    )
