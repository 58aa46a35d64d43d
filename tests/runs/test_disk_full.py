"""The disk under the blobs fills while a run's outputs are collected or a folder is
submitted: the user is told the disk is full and what to do, nothing is half-stored."""

import hashlib
import html
import io
import tarfile
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compute.models import ComputeTarget
from runs.logs import store as logstore
from runs.models import Run, RunStatus, Snapshot
from runs.monitor import STORAGE_FULL_REASON
from studio.blobs import blob_path
from tests.support.cloud import wait_until
from tests.support.runs import minimal_environment, running_monitor, submit, wait_final, write_tree

OUTPUT = """\
import hashlib, os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
os.makedirs("outputs", exist_ok=True)
data = os.urandom(3 * 1024 * 1024)
open("outputs/big.bin", "wb").write(data)
print("big", hashlib.sha256(data).hexdigest(), flush=True)
"""


@pytest.mark.sandbox
@pytest.mark.django_db(transaction=True)
def test_outputs_the_disk_cannot_hold_are_collected_once_space_frees(
    tmp_path, shared_dir, workspace, alice, storage_on_small_disk
):
    disk = storage_on_small_disk
    go = shared_dir / "go"
    local = ComputeTarget.objects.get(workspace=workspace, name="local")
    source = write_tree(tmp_path / "src", {"train.py": OUTPUT})
    with running_monitor():
        run = submit(
            workspace=workspace, user=alice, target=local, source=source, arguments=[str(go)]
        )
        # Room for the log, not for the 3 MB output.
        disk.fill(leave=512 * 1024)
        go.touch()

        def waits_for_room():
            run.refresh_from_db()
            return run.status_reason == STORAGE_FULL_REASON

        wait_until(waits_for_room)
        assert run.status == RunStatus.FINALIZING
        # Collection is tried again while the disk stays full: no half-written blob.
        time.sleep(1)
        assert disk.leftovers(".part-*") == []
        assert not run.files.filter(path="outputs/big.bin").exists()

        freed = time.monotonic()
        disk.free()
        run = wait_final(run)
    recovered = time.monotonic() - freed
    assert recovered < 10, recovered
    print(f"outputs collected {recovered:.2f} s after space freed")
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert run.status_reason == ""
    printed = logstore.read(run.pk, "stdout")[0].decode().split()[1]
    kept = run.files.get(path="outputs/big.bin")
    assert kept.sha256 == printed
    assert hashlib.sha256(blob_path(kept.sha256).read_bytes()).hexdigest() == printed
    messages = [e.message for e in run.events.all()]
    assert messages.count(STORAGE_FULL_REASON) == 1
    assert any("room in DATA_DIR again" in m for m in messages)


def archive(files: dict[str, bytes]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return SimpleUploadedFile("src.tar.gz", buffer.getvalue())


@pytest.mark.django_db
def test_a_submit_to_a_full_disk_says_so_and_stores_nothing(
    workspace, as_carol, api_alice, storage_on_small_disk
):
    disk = storage_on_small_disk
    disk.fill()
    page = as_carol.post(
        reverse("run_submit", args=[workspace.slug]),
        {
            "experiment": "full",
            "target": "local",
            "entry_script": "train.py",
            "environment": str(minimal_environment().pk),
            "source_paths": "train.py",
            "source_folder": [SimpleUploadedFile("train.py", b"print('page')\n")],
        },
    )
    assert page.status_code == 200
    assert (
        "The source folder was not stored: the studio's data folder (DATA_DIR) has no "
        "space left: free space there (or give it a larger disk or quota), then try again."
    ) in html.unescape(page.content.decode())

    api_submit = {
        "experiment": "full",
        "target": "local",
        "entry_script": "train.py",
        "snapshot": archive({"train.py": b"print('api')\n"}),
    }
    response = api_alice.post("/api/v1/runs?workspace=vision", api_submit)
    assert response.status_code == 507, response.content
    body = response.json()
    assert body["code"] == "disk_full"
    assert "DATA_DIR" in body["detail"] and "try again" in body["detail"]

    assert not Run.objects.exists() and not Snapshot.objects.exists()
    assert disk.leftovers(".part-*") == []

    disk.free()
    api_submit["snapshot"] = archive({"train.py": b"print('api')\n"})
    response = api_alice.post("/api/v1/runs?workspace=vision", api_submit)
    assert response.status_code == 201, response.content
    snapshot = Run.objects.get().snapshot
    assert snapshot is not None
    assert all(blob_path(sha).exists() for _, sha, _, _ in snapshot.manifest)
