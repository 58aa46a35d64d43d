"""Snapshots: ignore rules, content addressing, size limit, unsafe archives, git facts."""

import io
import re
import subprocess
import tarfile
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from runs.snapshots.archives import extract_archive, output_path
from runs.snapshots.capture import SnapshotError, StoredFile, capture_dir, capture_upload
from runs.snapshots.git import git_info_from
from studio.blobs import blob_path, blob_store_bytes
from tests.support.runs import write_tree


def paths(capture) -> list[str]:
    return [entry[0] for entry in capture.manifest]


def test_amlignore_wins_over_gitignore(tmp_path):
    root = write_tree(
        tmp_path,
        {
            ".gitignore": "*.csv\n",
            ".amlignore": "data/\n",
            "train.py": "print(1)",
            "data/big.bin": "x",
            "results.csv": "a,b",
        },
    )
    assert paths(capture_dir(root)) == [".amlignore", ".gitignore", "results.csv", "train.py"]


def test_gitignore_applies_without_amlignore(tmp_path):
    root = write_tree(
        tmp_path, {".gitignore": "*.csv\n!keep.csv\n", "a.csv": "1", "keep.csv": "2", "t.py": ""}
    )
    assert paths(capture_dir(root)) == [".gitignore", "keep.csv", "t.py"]


def test_a_second_capture_stores_only_the_changed_file(tmp_path):
    root = write_tree(tmp_path / "src", {f"f{i}.py": f"# file {i} {tmp_path}" for i in range(5)})
    first = capture_dir(root)
    assert first.new_blobs == 5
    (root / "f3.py").write_text("# changed")
    second = capture_dir(root)
    assert second.new_blobs == 1
    assert second.manifest_bytes != first.manifest_bytes
    assert capture_dir(root).manifest_bytes == second.manifest_bytes


def test_folder_rules_leave_out_folders_and_file_rules_files(tmp_path):
    root = write_tree(
        tmp_path,
        {".amlignore": "logs/\n", "logs/x.txt": "1", "a/logs/y.txt": "2", "logs.txt": "3"},
    )
    assert paths(capture_dir(root)) == [".amlignore", "logs.txt"]


def test_the_size_limit_names_the_biggest_files(tmp_path):
    root = write_tree(
        tmp_path, {"train.py": "x", "data/huge.bin": b"\0" * 3000, "small.bin": b"\0" * 1500}
    )
    with pytest.raises(SnapshotError) as error:
        capture_dir(root, max_bytes=4000)
    message = str(error.value)
    assert "over the limit of 3.9 KB" in message
    assert message.index("data/huge.bin (2.9 KB)") < message.index("small.bin (1.5 KB)")
    assert ".amlignore" in message


def tar_with(members) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def file_member(name: str, data: bytes = b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name: str, target: str):
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (file_member("../evil.py"), "points outside the source folder"),
        (file_member("src/../../evil.py"), "points outside the source folder"),
        (file_member("/etc/cron.d/evil"), "absolute path"),
        (link_member("passwd", "/etc/passwd"), "outside the source folder"),
        (link_member("sub/up", "../../secret"), "outside the source folder"),
    ],
)
def test_unsafe_tar_archives_are_refused(tmp_path, member, message):
    archive = tar_with([file_member("train.py"), member])
    with pytest.raises(SnapshotError, match=message):
        extract_archive(archive, "src.tar.gz", tmp_path)
    assert not (tmp_path.parent / "evil.py").exists()


def test_zip_with_dot_dot_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.py", "print(1)")
        archive.writestr("../../evil.py", "boom")
    with pytest.raises(SnapshotError, match="points outside the source folder"):
        extract_archive(buffer, "src.zip", tmp_path)


def test_an_archive_over_the_limit_is_refused_before_unpacking(tmp_path):
    archive = tar_with([file_member("weights.bin", b"\0" * 5000), file_member("train.py")])
    with pytest.raises(SnapshotError, match=r"weights.bin \(4.9 KB\)"):
        extract_archive(archive, "src.tgz", tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "out" / "weights.bin").exists()


def test_links_inside_the_archive_become_copies(tmp_path):
    archive = tar_with(
        [file_member("lib/real.py", b"VALUE = 1"), link_member("alias.py", "lib/real.py")]
    )
    extract_archive(archive, "src.tar.gz", tmp_path)
    assert (tmp_path / "alias.py").read_bytes() == b"VALUE = 1"
    assert not (tmp_path / "alias.py").is_symlink()


def test_a_link_out_of_a_folder_is_refused(tmp_path):
    root = write_tree(tmp_path / "src", {"train.py": ""})
    (root / "leak").symlink_to("/etc/hostname")
    with pytest.raises(SnapshotError, match="outside the source folder"):
        capture_dir(root)


def test_git_facts_are_recorded_and_dot_git_is_left_out(tmp_path):
    root = write_tree(tmp_path / "repo", {"train.py": "print(1)\n"})

    def git(*args):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)

    git("init", "-b", "main")
    git("remote", "add", "origin", "https://example.com/team/repo.git")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-m", "first")
    clean = capture_dir(root)
    assert paths(clean) == ["train.py"]
    assert clean.git["branch"] == "main"
    assert clean.git["repository"] == "https://example.com/team/repo.git"
    assert len(clean.git["commit"]) == 40 and clean.git["dirty"] is False
    (root / "train.py").write_text("print(2)\n")
    assert capture_dir(root).git["dirty"] is True


def test_blobs_are_content_addressed(tmp_path):
    sha, new = blob_store_bytes(b"same bytes " + str(tmp_path).encode())
    assert new
    assert blob_store_bytes(b"same bytes " + str(tmp_path).encode()) == (sha, False)
    assert blob_path(sha).name == sha


def test_a_folder_from_the_browser_keeps_its_ignore_rules_and_reuses_stored_files(settings):
    stored = f"stored {settings.BLOB_DIR}\n".encode() * 50
    digest, _ = blob_store_bytes(stored)
    capture = capture_upload(
        [
            (".amlignore", SimpleUploadedFile(".amlignore", b"data/\n*.log\n")),
            ("train.py", SimpleUploadedFile("train.py", b"print(1)\n")),
            ("lib/table.csv", StoredFile(digest, len(stored))),
            # Named by a digest nobody holds, but left out by .amlignore: no error.
            ("data/gone.bin", "0" * 64),
            ("data/big.bin", SimpleUploadedFile("big.bin", b"\0" * 100)),
            ("run.log", SimpleUploadedFile("run.log", b"old output")),
            (".git/HEAD", SimpleUploadedFile("HEAD", b"ref: refs/heads/main\n")),
        ]
    )
    assert [(path, size) for path, _, size, _ in capture.manifest] == [
        (".amlignore", 12),
        ("lib/table.csv", len(stored)),
        ("train.py", 9),
    ]
    assert dict((path, sha) for path, sha, _, _ in capture.manifest)["lib/table.csv"] == digest
    assert capture.total_bytes == 12 + len(stored) + 9


def test_a_file_of_the_browser_neither_sent_nor_held_is_named():
    with pytest.raises(SnapshotError, match=r"lib/table.csv was not uploaded and is not stored"):
        capture_upload(
            [
                ("train.py", SimpleUploadedFile("train.py", b"print(1)\n")),
                ("lib/table.csv", "0" * 64),
            ]
        )


def test_a_folder_from_the_browser_over_the_limit_names_its_biggest_files():
    with pytest.raises(SnapshotError, match=r"over the limit of 100 B.*big\.bin \(200 B\)"):
        capture_upload(
            [
                ("train.py", SimpleUploadedFile("train.py", b"print(1)\n")),
                ("big.bin", SimpleUploadedFile("big.bin", b"\0" * 200)),
            ],
            max_bytes=100,
        )


COMMIT = "3f2a" + "0" * 36
CONFIG = """\
[core]
\trepositoryformatversion = 0
[remote "upstream"]
\turl = https://example.com/other/repo.git
[remote "origin"]
\turl = https://alice:ghp_secret@example.com/team/repo.git
\tfetch = +refs/heads/*:refs/remotes/origin/*
"""


def test_git_facts_of_a_browser_folder_come_from_its_head_config_and_refs():
    loose = {"HEAD": "ref: refs/heads/main\n", "config": CONFIG, "refs/heads/main": COMMIT + "\n"}
    assert git_info_from(loose) == {
        "repository": "https://example.com/team/repo.git",
        "branch": "main",
        "commit": COMMIT,
    }
    packed = {
        "HEAD": "ref: refs/heads/feature/x\n",
        "packed-refs": f"# pack-refs with: peeled\n{'1' * 40} refs/heads/main\n"
        f"{COMMIT} refs/heads/feature/x\n",
    }
    assert git_info_from(packed) == {
        "repository": "",
        "branch": "feature/x",
        "commit": COMMIT,
    }
    assert git_info_from({"HEAD": COMMIT + "\n"})["branch"] == "HEAD"
    assert git_info_from({"HEAD": "ref: refs/heads/gone\n"}) == {}
    assert git_info_from({}) == {}


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/etc/cron.d/x", "an absolute path"),
        ("outputs/../../x", "climbs out"),
        ("..\\..\\x", "climbs out"),
        ("outputs/a\0b", "a control character"),
        ("outputs/a\x1b[2Jb", "a control character"),
        ("outputs/\ud800", "not valid text"),
        ("outputs/" + "x" * 256, "a name longer than 255 bytes"),
        ("outputs/" + "x/" * 600, "a path longer than 1024 characters"),
        ("outputs//etc/x", "not a plain path"),
        ("outputs/./x", "not a plain path"),
        ("secrets/x", "not in outputs/ or logs/"),
        ("outputs", "not in outputs/ or logs/"),
    ],
)
def test_output_names_a_target_reports_are_refused_unless_plain(name, why):
    with pytest.raises(SnapshotError, match=re.escape(why)):
        output_path(name)


def test_plain_output_names_are_kept():
    assert str(output_path("outputs/ça va?/model (1).bin")) == "outputs/ça va?/model (1).bin"
    assert str(output_path("logs/x.log")) == "logs/x.log"


def test_damaged_archives_and_unusable_names_are_refused_with_a_message(tmp_path):
    whole = tar_with([file_member("train.py", b"print(1)\n" * 1000)]).getvalue()
    with pytest.raises(SnapshotError, match="damaged or not a tar / tar.gz archive"):
        extract_archive(io.BytesIO(whole[: len(whole) // 2]), "src.tar.gz", tmp_path / "a")
    long_name = tar_with([file_member("x" * 300 + ".py")])
    with pytest.raises(SnapshotError, match="File name too long"):
        extract_archive(long_name, "src.tar.gz", tmp_path / "b")
