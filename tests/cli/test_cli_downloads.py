"""`run download` writes only under its folder, whatever names and bytes the server sends."""

import hashlib
import os

import pytest

from cli.connection import CliError
from cli.downloads import confined, file_write


@pytest.mark.parametrize(
    "name",
    [
        "/etc/passwd",
        "../x",
        "outputs/../../x",
        "outputs/./x",
        "outputs//x",
        "outputs/x/",
        "C:/x",
        "outputs\\..\\x",
        "outputs/x\n",
        "outputs/\x1b[2Jx",
        "",
        "a" * 256,
        None,
    ],
)
def test_a_name_that_is_not_a_plain_relative_path_is_refused(tmp_path, name):
    with pytest.raises(CliError, match="is not a plain path inside the folder"):
        confined(tmp_path, name)


def test_a_plain_name_stays_under_the_folder(tmp_path):
    assert confined(tmp_path, "outputs/model/w.bin") == tmp_path / "outputs/model/w.bin"


def entry(data: bytes, path: str = "outputs/w.bin") -> dict:
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_a_link_in_the_folder_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "out"
    root.mkdir()
    (root / "outputs").symlink_to(elsewhere)
    target = confined(root, "outputs/w.bin")
    with pytest.raises(CliError, match="is a link"):
        file_write(root, target, entry(b"w"), [b"w"], overwrite=True)
    assert os.listdir(elsewhere) == []


def test_bytes_other_than_listed_leave_nothing_behind(tmp_path):
    target = confined(tmp_path, "outputs/w.bin")
    with pytest.raises(CliError, match="did not arrive as listed"):
        file_write(tmp_path, target, entry(b"weights"), [b"weights", b" and more"], overwrite=False)
    with pytest.raises(CliError, match="did not arrive as listed"):
        file_write(tmp_path, target, entry(b"weights"), [b"WEIGHTS"], overwrite=True)
    assert os.listdir(tmp_path / "outputs") == []
