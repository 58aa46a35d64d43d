"""Uploaded source archives cannot blow up storage: a few KB that would unpack past
SNAPSHOT_MAX_BYTES, or hold more members than a source folder may have files, are refused
at once through the submit page and the API, and nothing of them is stored."""

import io
import os
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from runs.models import Run, Snapshot
from runs.snapshots.archives import extract_archive
from runs.snapshots.capture import SnapshotError
from tests.runs.test_run_pages import submit_data

TRAIN = b"print('hi')\n"


def hard_link_bomb() -> bytes:
    """A tar, compressed to a few KB, of one big member and hard links to it: every link
    becomes a copy, so it unpacks to 60 times the member (past the default limit too)."""
    size = settings.SNAPSHOT_MAX_BYTES // 50
    buffer = io.BytesIO()
    # bzip2 squeezes the zeros far better than gzip; tarfile reads either, whatever the name.
    with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = len(TRAIN)
        tar.addfile(info, io.BytesIO(TRAIN))
        big = tarfile.TarInfo("weights.bin")
        big.size = size
        tar.addfile(big, io.BytesIO(bytes(size)))
        for n in range(60):
            link = tarfile.TarInfo(f"copy-{n}.bin")
            link.type = tarfile.LNKTYPE
            link.linkname = "weights.bin"
            tar.addfile(link)
    return buffer.getvalue()


def symlink_chain_bomb() -> bytes:
    """Symbolic links, each to the one before it, ending on one big member."""
    size = settings.SNAPSHOT_MAX_BYTES // 50
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
        big = tarfile.TarInfo("data/0.bin")
        big.size = size
        tar.addfile(big, io.BytesIO(bytes(size)))
        for n in range(1, 61):
            link = tarfile.TarInfo(f"data/{n}.bin")
            link.type = tarfile.SYMTYPE
            link.linkname = f"{n - 1}.bin"
            tar.addfile(link)
    return buffer.getvalue()


def zip_bomb(size: int) -> bytes:
    """One highly compressible member: deflate makes `size` zeros about a thousandth of it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("train.py", TRAIN)
        z.writestr("weights.bin", bytes(size))
    return buffer.getvalue()


def lying_zip(size: int) -> bytes:
    """A zip whose member declares 10 bytes and inflates to `size`."""
    data = zip_bomb(size)
    real = size.to_bytes(4, "little")
    assert data.count(real) == 2  # the member's local header and its central directory entry
    return data.replace(real, (10).to_bytes(4, "little"))


def many_members(count: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for n in range(count):
            info = tarfile.TarInfo(f"f{n}.py")
            tar.addfile(info, io.BytesIO(b""))
        info = tarfile.TarInfo("train.py")
        info.size = len(TRAIN)
        tar.addfile(info, io.BytesIO(TRAIN))
    return buffer.getvalue()


def stored_files() -> set[str]:
    """Everything under BLOB_DIR (blobs and partial writes) and temporary snapshot folders."""
    blobs = {str(p) for p in Path(settings.BLOB_DIR).rglob("*")}
    return blobs | {p.name for p in Path(settings.DATA_DIR).glob("snapshot-*")}


def submit_page(client, workspace, name: str, data: bytes) -> str:
    form = submit_data()
    form["source_archive"] = SimpleUploadedFile(name, data)
    return client.post(reverse("run_submit", args=[workspace.slug]), form).content.decode()


def submit_api(client, name: str, data: bytes):
    return client.post(
        "/api/v1/runs?workspace=vision",
        {
            "experiment": "bombs",
            "target": "local",
            "entry_script": "train.py",
            "snapshot": SimpleUploadedFile(name, data),
        },
    )


LIMIT_MESSAGE = "over the snapshot limit of {limit}"


def warm_up(as_carol, api_alice, workspace) -> None:
    """The first request of a test process imports and builds what every later one reuses:
    the timings below are those of a server already serving."""
    assert as_carol.get(reverse("run_submit", args=[workspace.slug])).status_code == 200
    assert api_alice.get("/api/v1/runs?workspace=vision").status_code == 200


@pytest.mark.parametrize(
    ("name", "make"),
    [("src.tar.gz", hard_link_bomb), ("src.tgz", symlink_chain_bomb)],
)
def test_a_few_kb_of_links_past_the_limit_are_refused_at_once_and_nothing_is_stored(
    workspace, as_carol, api_alice, name, make
):
    data = make()
    assert len(data) < 4096
    before = stored_files()
    limit = "300.0 MB"
    warm_up(as_carol, api_alice, workspace)

    started = time.monotonic()
    page = submit_page(as_carol, workspace, name, data)
    assert time.monotonic() - started < 1
    assert LIMIT_MESSAGE.format(limit=limit) in page
    assert "SNAPSHOT_MAX_BYTES" in page

    started = time.monotonic()
    response = submit_api(api_alice, name, data)
    assert time.monotonic() - started < 1
    assert response.status_code == 400
    assert LIMIT_MESSAGE.format(limit=limit) in response.json()["detail"]

    assert not Run.objects.exists() and not Snapshot.objects.exists()
    assert stored_files() == before


def test_a_zip_bomb_is_refused_at_once_and_nothing_is_stored(
    workspace, as_carol, api_alice, settings
):
    settings.SNAPSHOT_MAX_BYTES = 1024 * 1024
    data = zip_bomb(3 * 1024 * 1024)
    assert len(data) < 4096
    before = stored_files()
    warm_up(as_carol, api_alice, workspace)

    started = time.monotonic()
    page = submit_page(as_carol, workspace, "src.zip", data)
    response = submit_api(api_alice, "src.zip", data)
    assert time.monotonic() - started < 1

    assert "unpacks to 3.0 MB, over the snapshot limit of 1.0 MB" in page
    assert "weights.bin (3.0 MB)" in page
    assert response.status_code == 400
    assert "over the snapshot limit of 1.0 MB" in response.json()["detail"]
    assert not Run.objects.exists() and not Snapshot.objects.exists()
    assert stored_files() == before


def test_a_zip_that_inflates_past_its_declared_sizes_is_refused(
    workspace, as_carol, api_alice, settings
):
    settings.SNAPSHOT_MAX_BYTES = 1024 * 1024
    data = lying_zip(3 * 1024 * 1024)
    before = stored_files()

    page = submit_page(as_carol, workspace, "src.zip", data)
    response = submit_api(api_alice, "src.zip", data)

    assert "The .zip file is damaged or not a zip archive" in page
    assert response.status_code == 400
    assert "damaged" in response.json()["detail"]
    assert not Run.objects.exists() and not Snapshot.objects.exists()
    assert stored_files() == before


def test_an_archive_with_more_members_than_a_folder_may_have_files_is_refused(
    workspace, as_carol, api_alice, settings
):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 50
    data = many_members(60)
    before = stored_files()

    page = submit_page(as_carol, workspace, "src.tar.gz", data)
    response = submit_api(api_alice, "src.tar.gz", data)

    message = "The archive holds more than 50 files, folders and links"
    assert message in page and "DATA_UPLOAD_MAX_NUMBER_FILES" in page
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Run.objects.exists() and not Snapshot.objects.exists()
    assert stored_files() == before


def test_links_within_the_limit_still_become_copies(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("lib/real.py", b"VALUE = 1"), ("train.py", TRAIN)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, kind, target in (
            ("hard.py", tarfile.LNKTYPE, "lib/real.py"),
            ("lib/alias.py", tarfile.SYMTYPE, "real.py"),
            ("chain.py", tarfile.SYMTYPE, "lib/alias.py"),
            ("loop-a", tarfile.SYMTYPE, "loop-b"),
            ("loop-b", tarfile.SYMTYPE, "loop-a"),
        ):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = kind, target
            tar.addfile(link)
    buffer.seek(0)
    extract_archive(buffer, "src.tar.gz", tmp_path, max_bytes=9 * 4 + len(TRAIN))
    for name in ("hard.py", "lib/alias.py", "chain.py"):
        assert (tmp_path / name).read_bytes() == b"VALUE = 1"
        assert not (tmp_path / name).is_symlink()
    assert not os.path.lexists(tmp_path / "loop-a")
    buffer.seek(0)
    with pytest.raises(SnapshotError, match=r"unpacks to 48 B, over the snapshot limit of 47 B"):
        extract_archive(buffer, "src.tar.gz", tmp_path / "again", max_bytes=47)
