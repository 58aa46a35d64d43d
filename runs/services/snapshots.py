"""Snapshots: a folder, an upload or a manifest stored as a workspace's snapshot."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from runs import selectors
from runs.models import (
    Snapshot,
    SnapshotBlob,
)
from runs.snapshots.archives import extract_archive
from runs.snapshots.capture import (
    Capture,
    SnapshotError,
    StoredFile,
    capture_dir,
    capture_upload,
    manifest_text,
)
from studio.blobs import blob_store_bytes
from studio.disk import disk_full_refused
from studio.errors import ServiceError
from studio.models import Workspace

# Each file is stored before the snapshot naming it: one that finds the disk full leaves
# blobs (or none) but no snapshot.
NOT_STORED = "The source folder was not stored"


@disk_full_refused(NOT_STORED)
def snapshot_create(*, workspace: Workspace, root: Path) -> tuple[Snapshot, Capture]:
    """Capture a folder: store new blobs, and the snapshot (reused when the tree is the same)."""
    return _snapshot_store(workspace=workspace, capture=capture_dir(root))


@disk_full_refused(NOT_STORED)
def snapshot_from_upload(
    *,
    workspace: Workspace,
    files: list[tuple[str, object]] | None = None,
    archive: UploadedFile | None = None,
    git_files: dict[str, str] | None = None,
    executables: set[str] | None = None,
) -> tuple[Snapshot, Capture]:
    """A snapshot of a folder chosen in the browser or sent with its manifest (with its .git/
    facts, and the paths of its executable files), or of an archive.

    A file not sent is named by its digest (a bare one, or a StoredFile from a signed
    plan): only a file the workspace holds may be left out."""
    if files and archive is not None:
        raise SnapshotError("Choose the source folder or upload it as an archive, not both.")
    if archive is None:
        files = _held_files(workspace, files or [])
        capture = capture_upload(files, git_files=git_files, executables=executables)
        held = {s.sha256: s.size for _, s in files if isinstance(s, StoredFile)}
        return _snapshot_store(workspace=workspace, capture=capture, stored=held)
    assert archive.name is not None  # an upload always carries its file's name
    with tempfile.TemporaryDirectory(prefix="snapshot-", dir=settings.DATA_DIR) as tmp:
        extract_archive(archive, archive.name, Path(tmp))
        return snapshot_create(workspace=workspace, root=Path(tmp))


def _held_files(workspace: Workspace, files: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """`files` with each bare digest the workspace holds as that StoredFile."""
    named = [source for _, source in files if isinstance(source, str)]
    if not named:
        return files
    sizes = selectors.snapshot_blob_sizes(workspace=workspace, hashes=named)
    held: list[tuple[str, object]] = []
    for path, source in files:
        if isinstance(source, str) and source in sizes:
            source = StoredFile(source, sizes[source])
        held.append((path, source))
    return held


def _snapshot_store(
    *, workspace: Workspace, capture: Capture, stored: dict[str, int] | None = None
) -> tuple[Snapshot, Capture]:
    if not capture.manifest:
        raise ServiceError(
            "The source folder has no files to snapshot (after .amlignore / .gitignore): "
            "choose the folder with your training script."
        )
    snapshot = snapshot_of_manifest(workspace=workspace, manifest=capture.manifest, stored=stored)
    return snapshot, capture


@disk_full_refused(NOT_STORED)
def snapshot_of_manifest(
    *, workspace: Workspace, manifest: list[list], stored: dict[str, int] | None = None
) -> Snapshot:
    """The snapshot of exactly these files (their blobs are stored already), reused when the
    workspace has it; the workspace holds its files from now on.

    `stored` has the sizes of the files the workspace holds already, when they are known.
    """
    manifest = sorted(manifest, key=lambda entry: entry[0])
    if stored is None:
        hashes = [sha for _, sha, _, _ in manifest]
        stored = selectors.snapshot_blob_sizes(workspace=workspace, hashes=hashes)
    new = {sha: size for _, sha, size, _ in manifest if sha not in stored}
    digest, _ = blob_store_bytes(manifest_text(manifest))
    with transaction.atomic():
        SnapshotBlob.objects.bulk_create(
            [SnapshotBlob(workspace=workspace, sha256=sha, size=size) for sha, size in new.items()],
            ignore_conflicts=True,
        )
        snapshot, _ = Snapshot.objects.get_or_create(
            workspace=workspace,
            digest=digest,
            defaults={
                "file_count": len(manifest),
                "total_bytes": sum(size for _, _, size, _ in manifest),
            },
        )
    return snapshot


def snapshot_has(snapshot: Snapshot, path: str) -> bool:
    return any(entry[0] == path for entry in snapshot.manifest)
