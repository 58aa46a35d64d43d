"""The runs API: submit with an archive, list, inspect, cancel, metrics, files, experiments."""

import hashlib
import io
import tarfile
import uuid
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from runs.models import Metric, Run, RunFile, RunStatus
from studio.blobs import blob_path, blob_store_bytes


def archive(files: dict[str, bytes]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return SimpleUploadedFile("src.tar.gz", buffer.getvalue())


def submit(client, **fields):
    data = {
        "experiment": "api-exp",
        "target": "local",
        "entry_script": "train.py",
        "arguments": "--epochs 2",
        "snapshot": archive({"train.py": b"print(1)\n"}),
    }
    data.update(fields)
    return client.post("/api/v1/runs?workspace=vision", data)


@pytest.fixture
def run(api_alice):
    response = submit(api_alice, tags="model=cnn")
    assert response.status_code == 201, response.content
    return Run.objects.get(pk=response.json()["id"])


def test_submit_returns_the_queued_run(api_carol):
    response = submit(api_carol)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "Queued"
    assert body["experiment"] == "api-exp" and body["number"] == 1
    assert body["arguments"] == ["--epochs", "2"]
    assert body["environment"] == "trainyard-minimal-python:1"
    assert [e["status"] for e in body["timeline"]] == ["NotStarted", "Queued"]
    assert body["url"] == f"/w/vision/runs/{body['id']}/"
    assert body["is_sweep"] is False


def test_submit_needs_a_contributor_and_a_member(api_bob, api_charlie):
    assert submit(api_bob).status_code == 403
    assert submit(api_charlie).status_code == 404
    assert not Run.objects.exists()


def test_submit_errors_say_what_to_fix(api_alice):
    missing = submit(api_alice, entry_script="main.py")
    assert missing.status_code == 400
    assert "main.py is not in the source folder" in missing.json()["detail"]
    unsafe = submit(api_alice, snapshot=archive({"../x.py": b"1"}))
    assert "points outside the source folder" in unsafe.json()["detail"]
    target = submit(api_alice, target="nope")
    assert "no compute target 'nope'" in target.json()["detail"]


def test_a_submit_error_names_its_field_and_a_bad_runconfig_says_why(api_alice):
    missing = submit(api_alice, entry_script="main.py")
    assert missing.json()["detail"] == (
        "entry_script: main.py is not in the source folder. Python files in it: train.py."
    )
    assert list(missing.json()["errors"]) == ["entry_script"]
    runconfig = SimpleUploadedFile("bad.runconfig", b"script: train.py\narguments: 5\n")
    bad = submit(api_alice, entry_script="", arguments="", runconfig=runconfig)
    assert bad.status_code == 400
    assert bad.json()["detail"] == "arguments must be a list, e.g. [--epochs, 10]."
    assert not Run.objects.exists()


def test_submit_with_a_runconfig(api_alice):
    runconfig = SimpleUploadedFile(
        "local.runconfig", b"script: train.py\ntarget: local\narguments: [--x, '1']\n"
    )
    response = submit(api_alice, entry_script="", target="", arguments="", runconfig=runconfig)
    assert response.status_code == 201, response.content
    assert response.json()["arguments"] == ["--x", "1"]


def test_list_and_get(run, api_bob, api_charlie):
    listed = api_bob.get("/api/v1/runs?workspace=vision&experiment=api-exp").json()
    assert [r["id"] for r in listed] == [run.pk]
    assert api_bob.get("/api/v1/runs?workspace=vision&experiment=other").json() == []
    detail = api_bob.get(f"/api/v1/runs/{run.pk}").json()
    assert detail["status"] == "Queued" and detail["tags"] == {"model": "cnn"}
    assert api_charlie.get(f"/api/v1/runs/{run.pk}").status_code == 404
    assert api_charlie.get("/api/v1/runs?workspace=vision").status_code == 404


def test_cancel(run, api_bob, api_charlie, api_carol):
    assert api_bob.post(f"/api/v1/runs/{run.pk}/cancel").status_code == 403
    assert api_charlie.post(f"/api/v1/runs/{run.pk}/cancel").status_code == 404
    response = api_carol.post(f"/api/v1/runs/{run.pk}/cancel")
    assert response.json()["status"] == RunStatus.CANCELED
    assert response.json()["timeline"][-1]["message"] == "Canceled by carol"
    assert api_carol.post(f"/api/v1/runs/{run.pk}/cancel").status_code == 409


def test_metrics_and_files(run, api_bob, api_charlie):
    Metric.objects.bulk_create(
        [Metric(run=run, name="loss", step=s, value=v) for s, v in [(0, 0.9), (1, 0.5)]]
    )
    sha, _ = blob_store_bytes(b"weights")
    RunFile.objects.create(run=run, path="outputs/model.bin", sha256=sha, size=7)
    metrics = api_bob.get(f"/api/v1/runs/{run.pk}/metrics").json()
    assert metrics == [
        {"name": "loss", "points": [{"step": 0, "value": 0.9}, {"step": 1, "value": 0.5}]}
    ]
    files = api_bob.get(f"/api/v1/runs/{run.pk}/files").json()
    assert [(f["path"], f["size"]) for f in files] == [("outputs/model.bin", 7)]
    download = api_bob.get(f"/api/v1/runs/{run.pk}/files/outputs/model.bin")
    assert b"".join(download.streaming_content) == b"weights"
    for path in ("metrics", "files", "files/outputs/model.bin"):
        assert api_charlie.get(f"/api/v1/runs/{run.pk}/{path}").status_code == 404


def test_experiments(api_carol, api_bob, api_charlie):
    created = api_carol.post(
        "/api/v1/experiments?workspace=vision", {"name": "exp-1"}, content_type="application/json"
    )
    assert created.status_code == 201
    assert (
        api_bob.post(
            "/api/v1/experiments?workspace=vision",
            {"name": "exp-2"},
            content_type="application/json",
        ).status_code
        == 403
    )
    assert [e["name"] for e in api_bob.get("/api/v1/experiments?workspace=vision").json()] == [
        "exp-1"
    ]
    assert api_charlie.get("/api/v1/experiments?workspace=vision").status_code == 404
    again = api_carol.post(
        "/api/v1/experiments?workspace=vision", {"name": "exp-1"}, content_type="application/json"
    )
    assert again.status_code == 400
    assert again.json()["detail"] == (
        "name: An experiment named exp-1 already exists in this workspace: open it, or choose "
        "another name."
    )


def test_the_snapshot_lists_its_files_page_by_page_and_downloads_as_a_zip(api_alice, api_bob):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data, mode in [
            ("train.py", b"print(1)\n", 0o644),
            ("run.sh", b"#!/bin/sh\n", 0o755),
            ("lib/util.py", b"X = 1\n", 0o644),
        ]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    response = submit(api_alice, snapshot=SimpleUploadedFile("src.tar.gz", buffer.getvalue()))
    run_id = response.json()["id"]

    listed = api_bob.get(f"/api/v1/runs/{run_id}/snapshot").json()
    assert [(f["path"], f["size"], f["executable"]) for f in listed] == [
        ("lib/util.py", 6, False),
        ("run.sh", 10, True),
        ("train.py", 9, False),
    ]
    assert listed[2]["sha256"] == hashlib.sha256(b"print(1)\n").hexdigest()
    second = api_bob.get(f"/api/v1/runs/{run_id}/snapshot?limit=1&offset=1").json()
    assert [f["path"] for f in second] == ["run.sh"]
    assert api_bob.get(f"/api/v1/runs/{run_id}/snapshot?limit=501").status_code == 422

    download = api_bob.get(f"/api/v1/runs/{run_id}/snapshot.zip")
    assert download["Content-Disposition"] == 'attachment; filename="api-exp-1-snapshot.zip"'
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as archive_:
        assert archive_.read("lib/util.py") == b"X = 1\n"
        assert archive_.getinfo("run.sh").external_attr >> 16 == 0o100755


def test_a_strangers_snapshot_is_404_and_a_missing_blob_says_so(api_alice, api_charlie):
    # Content of its own: its blob is deleted, and blobs are shared by the whole session.
    source = archive({"train.py": f"# {uuid.uuid4().hex}\n".encode()})
    run_id = submit(api_alice, snapshot=source).json()["id"]
    for path in ("snapshot", "snapshot.zip"):
        response = api_charlie.get(f"/api/v1/runs/{run_id}/{path}")
        assert response.status_code == 404
        assert response.json() == {"detail": "No such workspace"}
    snapshot = Run.objects.get(pk=run_id).snapshot
    assert snapshot is not None
    (sha,) = [sha for _, sha, _, _ in snapshot.manifest]
    blob_path(sha).unlink()
    gone = api_alice.get(f"/api/v1/runs/{run_id}/snapshot.zip")
    assert gone.status_code == 404
    assert gone.json() == {"detail": "Some of the snapshot's files are no longer stored"}
