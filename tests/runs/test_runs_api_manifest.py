"""Submitting over the API with a manifest: only the files the workspace lacks are sent."""

import hashlib
import json
import uuid
from urllib.parse import quote

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from runs.models import Run
from studio.blobs import blob_path


@pytest.fixture
def folder() -> dict[str, bytes]:
    # Blobs outlive a test: content of its own keeps the server from storing it already.
    mark = uuid.uuid4().hex.encode()
    return {
        "train.py": b"print('train')  # " + mark + b"\n",
        "lib/util.py": b"X = 1  # " + mark + b"\n",
        "run.sh": b"#!/bin/sh\npython train.py  # " + mark + b"\n",
    }


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(folder: dict[str, bytes]) -> str:
    return json.dumps(
        [
            {
                "path": path,
                "sha256": digest(data),
                "size": len(data),
                "mode": 0o755 if path.endswith(".sh") else 0o644,
            }
            for path, data in folder.items()
        ]
    )


def missing(client, digests: list[str]):
    return client.post(
        "/api/v1/snapshots/missing?workspace=vision", digests, content_type="application/json"
    )


def submit(client, folder: dict[str, bytes], sent: dict[str, bytes], workspace: str = "vision"):
    uploads = [SimpleUploadedFile(quote(path, safe=""), data) for path, data in sent.items()]
    fields = {"experiment": "api-exp", "target": "local", "entry_script": "train.py"}
    return client.post(
        f"/api/v1/runs?workspace={workspace}",
        fields | {"manifest": manifest(folder), "files": uploads},
    )


def incremental_submit(client, folder: dict[str, bytes]):
    """What the command line does: ask which files are missing, send only those."""
    lacking = set(missing(client, [digest(d) for d in folder.values()]).json())
    sent = {path: data for path, data in folder.items() if digest(data) in lacking}
    return submit(client, folder, sent), sent


def test_a_second_submit_sends_only_the_changed_file(api_carol, folder):
    first, sent = incremental_submit(api_carol, folder)
    assert first.status_code == 201, first.content
    assert set(sent) == set(folder)

    changed = folder | {"lib/util.py": folder["lib/util.py"] + b"X = 2\n"}
    second, sent = incremental_submit(api_carol, changed)
    assert second.status_code == 201, second.content
    assert list(sent) == ["lib/util.py"]

    snapshot = Run.objects.get(pk=second.json()["id"]).snapshot
    assert snapshot is not None
    stored = {path: blob_path(sha).read_bytes() for path, sha, _, _ in snapshot.manifest}
    assert stored == changed
    executable = {path for path, _, _, x in snapshot.manifest if x}
    assert executable == {"run.sh"}


def test_missing_names_only_digests_the_server_lacks(api_carol, folder):
    assert submit(api_carol, folder, folder).status_code == 201
    new = digest(b"new file\n")
    response = missing(api_carol, [digest(folder["train.py"]), new])
    assert response.status_code == 200
    assert response.json() == [new]
    malformed = missing(api_carol, ["not-a-digest"])
    assert malformed.status_code == 422


def test_files_of_another_workspace_are_missing_here_and_cannot_be_named(
    api_carol, api_charlie, folder
):
    charlies = submit(api_charlie, folder, folder, workspace="charlies-own")
    assert charlies.status_code == 201, charlies.content
    digests = [digest(data) for data in folder.values()]
    assert missing(api_carol, digests).json() == digests
    response = submit(api_carol, folder, {"train.py": folder["train.py"]})
    assert response.status_code == 400
    assert "lib/util.py was not uploaded and is not stored" in response.json()["detail"]


@override_settings(DATA_UPLOAD_MAX_NUMBER_FILES=2)
def test_missing_refuses_more_digests_than_a_submit_can_send(api_carol):
    response = missing(api_carol, [digest(bytes([i])) for i in range(3)])
    assert response.status_code == 400
    assert "at most 2 digests at a time" in response.json()["detail"]


def test_a_file_neither_sent_nor_stored_is_named(api_carol, folder):
    response = submit(api_carol, folder, {"train.py": folder["train.py"]})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "lib/util.py was not uploaded and is not stored" in detail
    assert "send the file with the submit" in detail
    assert not Run.objects.exists()


def test_paths_outside_the_folder_are_refused(api_carol, folder):
    for path in ("../evil.py", "/etc/evil.py"):
        response = submit(api_carol, folder | {path: b"1"}, folder | {path: b"1"})
        assert response.status_code == 400
        assert (
            f"manifest: {path!r} is not a path inside the source folder"
            in (response.json()["detail"])
        )


def test_a_malformed_manifest_and_a_stray_file_say_what_to_send(api_carol, folder):
    bad = api_carol.post(
        "/api/v1/runs?workspace=vision",
        {"experiment": "api-exp", "entry_script": "train.py", "manifest": '[{"path": "a"}]'},
    )
    assert bad.status_code == 400
    assert "Send a JSON list of" in bad.json()["detail"]
    stray = submit(api_carol, folder, folder | {"other.py": b"2"})
    assert stray.status_code == 400
    assert "other.py is not in the manifest" in stray.json()["detail"]


@override_settings(SNAPSHOT_MAX_BYTES=20)
def test_a_folder_over_the_snapshot_limit_is_refused(api_carol, folder):
    response = submit(api_carol, folder, folder)
    assert response.status_code == 400
    assert "over the limit of 20 B" in response.json()["detail"]


def test_a_sweep_takes_the_manifest_too(api_carol, folder):
    hdconfig = SimpleUploadedFile(
        "hdconfig.yml",
        b"sampling:\n  type: random\n  parameter_space:\n  - name: --lr\n"
        b"    expression: choice\n    values: [0.1]\npolicy:\n  type: NoTerminationPolicy\n"
        b"primary_metric_name: loss\nprimary_metric_goal: Minimize\nmax_total_runs: 1\n"
        b"max_concurrent_runs: 1\n",
    )
    uploads = [SimpleUploadedFile(quote(p, safe=""), d) for p, d in folder.items()]
    response = api_carol.post(
        "/api/v1/sweeps?workspace=vision",
        {
            "experiment": "api-exp",
            "target": "local",
            "entry_script": "train.py",
            "manifest": manifest(folder),
            "files": uploads,
            "hyperdrive_config": hdconfig,
        },
    )
    assert response.status_code == 201, response.content
    snapshot = Run.objects.get(pk=response.json()["id"]).snapshot
    assert snapshot is not None
    assert sorted(p for p, *_ in snapshot.manifest) == sorted(folder)


def test_missing_needs_a_contributor_and_a_member(api_bob, api_charlie, folder):
    assert missing(api_bob, []).status_code == 403
    assert missing(api_charlie, []).status_code == 404
    assert submit(api_bob, folder, folder).status_code == 403
    assert submit(api_charlie, folder, folder).status_code == 404
    assert not Run.objects.exists()


def test_the_manifest_submit_is_documented(api_bob):
    paths = api_bob.get("/api/v1/openapi.json").json()["paths"]
    assert "/api/v1/snapshots/missing" in paths
    for path in ("/api/v1/runs", "/api/v1/sweeps"):
        described = paths[path]["post"]["description"]
        assert "`manifest`" in described and "/api/v1/snapshots/missing" in described
