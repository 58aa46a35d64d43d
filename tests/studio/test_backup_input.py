"""What `manage.py backup` and `manage.py restore` answer to a destination or a source they
cannot use: each refusal says what to do, and leaves nothing behind."""

import json
import os
import subprocess

import pytest
from django.core.management import CommandError, call_command

from studio.backup import MANIFEST, manifest_verify
from studio.errors import ServiceError


def test_a_backup_never_overwrites_an_existing_destination(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "keep.txt").write_text("mine")
    with pytest.raises(CommandError, match="backup exists already: a backup never overwrites"):
        call_command("backup", str(tmp_path / "backup"))
    assert [p.name for p in (tmp_path / "backup").iterdir()] == ["keep.txt"]


def test_a_backup_into_a_missing_folder_says_to_create_it(tmp_path):
    with pytest.raises(CommandError, match=r"nowhere does not exist: create it first"):
        call_command("backup", str(tmp_path / "nowhere" / "backup"))


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_backup_that_does_not_fit_is_refused_before_anything_is_written(
    small_disk, tmp_path, settings
):
    settings.DATA_DIR = tmp_path / "data"
    blob = settings.DATA_DIR / "blobs" / "ab" / ("ab" * 32)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(os.urandom(1 << 20))
    with pytest.raises(CommandError, match="Not enough space in .*: the backup needs about"):
        call_command("backup", str(small_disk / "backup"))
    assert list(small_disk.iterdir()) == []


def test_a_restore_never_overwrites_a_studio_that_holds_data(db, tmp_path, settings):
    settings.DATA_DIR = tmp_path / "data"
    blob = settings.DATA_DIR / "blobs" / "ab" / ("ab" * 32)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"a snapshot file")
    (tmp_path / "backup").mkdir()
    with pytest.raises(CommandError, match="This studio is not empty") as refused:
        call_command("restore", str(tmp_path / "backup"))
    assert "point DATA_DIR at a new empty folder" in str(refused.value)
    assert blob.read_bytes() == b"a snapshot file"


def test_an_interrupted_or_damaged_backup_is_refused(tmp_path):
    backup = tmp_path / "backup"
    (backup / "data").mkdir(parents=True)
    with pytest.raises(ServiceError, match="it has no manifest.json"):
        manifest_verify(source=backup)
    (backup / MANIFEST).write_text('{"format": 1, "files": {')
    with pytest.raises(ServiceError, match="damaged or incomplete: cannot read manifest.json"):
        manifest_verify(source=backup)
    entry = {"sha256": "0" * 64, "size": 3}
    (backup / MANIFEST).write_text(json.dumps({"format": 1, "files": {"data/fernet.key": entry}}))
    with pytest.raises(ServiceError, match="data/fernet.key is missing. Nothing was restored"):
        manifest_verify(source=backup)
    (backup / "data" / "fernet.key").write_text("key")
    with pytest.raises(ServiceError, match="data/fernet.key is not what was backed up"):
        manifest_verify(source=backup)
