"""The submit form sends only the files the workspace does not hold; hashes stand for the rest."""

import hashlib
import json
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from runs.models import Run
from runs.services.snapshots import snapshot_from_upload
from runs.snapshots import upload_plan
from studio.models import Workspace
from tests.runs.test_run_pages import folder, submit_data

pytestmark = pytest.mark.django_db

# Contents of their own: the blob store outlives a test.
TRAIN = f"print('{uuid.uuid4()}')\n".encode()
DATA = f"{uuid.uuid4()}\n".encode() * 100


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hold(workspace, data: bytes) -> None:
    """A snapshot of the workspace holds `data` from now on."""
    upload = SimpleUploadedFile("table.csv", data)
    snapshot_from_upload(workspace=workspace, files=[("data/table.csv", upload)])


def ask(client, workspace, body):
    return client.post(
        reverse("snapshot_plan", args=[workspace.slug]),
        json.dumps(body),
        content_type="application/json",
    )


def missing(client, workspace, hashes):
    return ask(client, workspace, {"sha256": hashes})


def second_submit(client, workspace, plan: str = ""):
    """train.py sent, data/table.csv named by its hash only."""
    data = submit_data(
        source_paths="p/train.py\np/data/table.csv",
        source_hashes=f"{sha(TRAIN)}\n{sha(DATA)}",
        source_plan=plan,
    )
    # The page numbers the files it sends by their place in source_paths.
    data["source_folder"] = folder(("0", TRAIN))
    return client.post(reverse("run_submit", args=[workspace.slug]), data, follow=True)


def test_the_page_learns_which_files_the_workspace_lacks(workspace, as_carol):
    hold(workspace, DATA)
    new = f"{uuid.uuid4()}".encode()
    response = missing(as_carol, workspace, [sha(new), sha(DATA)])
    assert response.status_code == 200
    assert response.json()["missing"] == [sha(new)]
    assert missing(as_carol, workspace, ["not-a-hash"]).status_code == 400


def test_files_another_workspace_holds_are_neither_told_nor_taken(workspace, as_carol):
    charlies = Workspace.objects.get(name="Charlie's own")
    hold(charlies, DATA)
    assert missing(as_carol, workspace, [sha(DATA)]).json()["missing"] == [sha(DATA)]
    # Naming the digest without the file gets nothing of the other workspace.
    page = second_submit(as_carol, workspace).content.decode()
    assert "data/table.csv was not uploaded and is not stored" in page
    assert not Run.objects.exists()


def test_the_page_learns_which_paths_the_ignore_rules_leave_out(workspace, as_carol):
    paths = ["train.py", "data/big.csv", "notes.csv", ".amlignore", ".git/HEAD"]
    response = ask(as_carol, workspace, {"paths": paths, "ignore": {".amlignore": "data/\n"}})
    assert response.json() == {"ignored": ["data/big.csv", ".git/HEAD"]}
    # .amlignore wins over .gitignore, as when the folder is captured.
    both = {".amlignore": "data/\n", ".gitignore": "*.csv\n"}
    assert ask(as_carol, workspace, {"paths": paths, "ignore": both}).json()["ignored"] == [
        "data/big.csv",
        ".git/HEAD",
    ]
    gitignore = {".gitignore": "*.csv\n"}
    assert ask(as_carol, workspace, {"paths": paths, "ignore": gitignore}).json()["ignored"] == [
        "data/big.csv",
        "notes.csv",
        ".git/HEAD",
    ]


def test_readers_may_not_ask_and_strangers_do_not_see_the_workspace(workspace, as_bob, as_charlie):
    assert missing(as_bob, workspace, [sha(TRAIN)]).status_code == 403
    assert missing(as_charlie, workspace, [sha(TRAIN)]).status_code == 404


def test_a_submit_with_only_the_changed_file_uploaded_snapshots_the_whole_folder(
    workspace, as_carol
):
    hold(workspace, DATA)
    plan = missing(as_carol, workspace, [sha(TRAIN), sha(DATA)]).json()["plan"]
    response = second_submit(as_carol, workspace, plan)
    run = Run.objects.get()
    assert run.snapshot is not None
    assert [(path, digest, size) for path, digest, size, _ in run.snapshot.manifest] == [
        ("data/table.csv", sha(DATA), len(DATA)),
        ("train.py", sha(TRAIN), len(TRAIN)),
    ]
    assert run.snapshot.total_bytes == len(DATA) + len(TRAIN)
    assert "1 of 2 files uploaded; the others were stored already." in response.content.decode()


def test_without_a_valid_plan_the_workspace_is_asked_again(workspace, as_carol):
    hold(workspace, DATA)
    charlies = Workspace.objects.get(name="Charlie's own")
    hold(charlies, TRAIN + DATA)
    # Another workspace's plan, one of another list, and a forged one: each is ignored,
    # and the digests are looked up in this workspace (which holds table.csv).
    others = [
        upload_plan.plan_sign(
            workspace=charlies, hashes=[sha(TRAIN), sha(DATA)], sizes={sha(DATA): 1}
        ),
        upload_plan.plan_sign(workspace=workspace, hashes=[sha(DATA)], sizes={sha(DATA): 1}),
        "forged:" + "0" * 40,
    ]
    for plan in others:
        second_submit(as_carol, workspace, plan)
        run = Run.objects.latest("pk")
        assert run.snapshot is not None
        assert ["data/table.csv", sha(DATA), len(DATA), False] in run.snapshot.manifest


def test_another_workspaces_plan_does_not_lend_its_files(workspace, as_carol):
    charlies = Workspace.objects.get(name="Charlie's own")
    hold(charlies, DATA)
    plan = upload_plan.plan_sign(
        workspace=charlies, hashes=[sha(TRAIN), sha(DATA)], sizes={sha(DATA): len(DATA)}
    )
    page = second_submit(as_carol, workspace, plan).content.decode()
    assert "data/table.csv was not uploaded and is not stored" in page
    assert not Run.objects.exists()


def test_a_file_neither_uploaded_nor_stored_asks_to_choose_the_folder_again(workspace, as_carol):
    gone = b"changed since it was hashed\n"
    data = submit_data(
        source_paths="p/train.py\np/notes.txt", source_hashes=f"{sha(TRAIN)}\n{sha(gone)}"
    )
    data["source_folder"] = folder(("0", TRAIN))
    page = as_carol.post(reverse("run_submit", args=[workspace.slug]), data).content.decode()
    assert "notes.txt was not uploaded and is not stored" in page
    assert "choose the folder again" in page
    assert not Run.objects.exists()
