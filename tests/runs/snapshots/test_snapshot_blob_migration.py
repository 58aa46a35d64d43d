"""Upgrading: the workspaces of existing snapshots hold those snapshots' files."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from runs.models import SnapshotBlob
from runs.snapshots.capture import manifest_text
from studio.blobs import blob_store_bytes

BEFORE = [("runs", "0006_run_git")]
AFTER = [("runs", "0007_snapshot_blob")]


@pytest.mark.django_db(transaction=True)
def test_existing_snapshots_make_their_files_held_by_their_workspace():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    try:
        apps = executor.loader.project_state(BEFORE).apps
        workspace = apps.get_model("studio", "Workspace").objects.create(name="Old", slug="old")
        files = {"train.py": f"print('{uuid.uuid4()}')\n".encode(), "data.csv": b"a,b\n" * 9}
        digests = {path: blob_store_bytes(data)[0] for path, data in files.items()}
        manifest = sorted([path, digests[path], len(data), False] for path, data in files.items())
        digest, _ = blob_store_bytes(manifest_text(manifest))
        apps.get_model("runs", "Snapshot").objects.create(
            workspace=workspace, digest=digest, file_count=2, total_bytes=40
        )
        # A snapshot whose manifest is no longer stored is passed over.
        apps.get_model("runs", "Snapshot").objects.create(
            workspace=workspace, digest="f" * 64, file_count=1, total_bytes=1
        )
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        held = SnapshotBlob.objects.filter(workspace_id=workspace.pk)
        assert sorted(held.values_list("sha256", "size")) == sorted(
            (digests[path], len(data)) for path, data in files.items()
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
