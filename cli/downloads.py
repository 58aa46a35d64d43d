"""`run download`: a run's outputs, logs or snapshot into a folder, and nowhere else.

Every name comes from the server and is checked before it names a file here:
a plain relative path (no `/` at the start, no drive, no `..`, `.` or empty
parts, no backslash or control character), under a folder that is not a
link. Each file is checked against the size and SHA-256 the server listed.
Existing files are kept unless --overwrite is given.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote

from cli.connection import Api, CliError
from cli.context import Context
from studio.units import human_bytes

CHUNK = 1 << 20
# The largest page the API gives.
PAGE = 500
PATH_MAX_CHARS = 1024
NAME_MAX_BYTES = 255
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def confined(root: Path, name: object) -> Path:
    """Where the server's `name` goes under `root`; CliError for a name that is not a plain
    relative path, which could point anywhere else."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > PATH_MAX_CHARS
        or CONTROL.search(name)
        or "\\" in name
        or name.startswith("/")
        or re.match(r"[A-Za-z]:", name)
    ):
        raise unsafe(name)
    parts = name.split("/")
    if any(p in ("", ".", "..") or len(p.encode()) > NAME_MAX_BYTES for p in parts):
        raise unsafe(name)
    return root.joinpath(*parts)


def unsafe(name: object) -> CliError:
    shown = CONTROL.sub("?", str(name))[:80]
    return CliError(
        f"The server named a file {shown!r}, which is not a plain path inside the folder: "
        "nothing was written for it. Is --url the address of your Trainyard studio?"
    )


def run_download(ctx: Context) -> int:
    args = ctx.args
    root = Path(args.directory)
    if args.snapshot:
        files = snapshot_listing(ctx.api, args.run)
    else:
        folders = (
            ("outputs/",) if args.outputs else ("logs/",) if args.logs else ("outputs/", "logs/")
        )
        files = [
            f for f in ctx.api.get(f"/runs/{args.run}/files") if str(f["path"]).startswith(folders)
        ]
    targets = [(f, confined(root, f["path"])) for f in files]
    if len({t for _, t in targets}) != len(targets):
        raise CliError("The server listed a file twice: nothing was downloaded.")
    if not args.overwrite:
        existing = [str(t) for _, t in targets if os.path.lexists(t)]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise CliError(
                f"{existing[0]} exists{more}: give --overwrite to replace, or another -o DIR. "
                "Nothing was downloaded."
            )
    root.mkdir(parents=True, exist_ok=True)
    if args.snapshot:
        snapshot_write(ctx.api, args.run, targets, root, args.overwrite)
    else:
        for entry, target in targets:
            url = f"/runs/{args.run}/files/{quote(entry['path'])}"
            response = ctx.api.request("GET", url, stream=True)
            with response:
                file_write(root, target, entry, response.iter_content(CHUNK), args.overwrite)
    total = sum(int(entry["size"]) for entry, _ in targets)
    files_word = "file" if len(targets) == 1 else "files"
    print(f"Downloaded {len(targets)} {files_word} ({human_bytes(total)}) to {root}")
    return 0


def snapshot_listing(api: Api, run_id: int) -> list[dict]:
    files: list[dict] = []
    while True:
        page = api.get(f"/runs/{run_id}/snapshot", limit=PAGE, offset=len(files))
        files.extend(page)
        if len(page) < PAGE:
            return files


def snapshot_write(
    api: Api, run_id: int, targets: list[tuple[dict, Path]], root: Path, overwrite: bool
) -> None:
    """The .zip, kept aside while it arrives; the listed files are taken from it by name."""
    # What a .zip of these files can weigh at most: their bytes, a header for each, a margin.
    most = sum(int(e["size"]) for e, _ in targets) + 1024 * len(targets) + CHUNK
    with tempfile.TemporaryFile() as held:
        with api.request("GET", f"/runs/{run_id}/snapshot.zip", stream=True) as response:
            for chunk in response.iter_content(CHUNK):
                held.write(chunk)
                if held.tell() > most:
                    raise CliError(
                        f"The snapshot .zip of run {run_id} is larger than its files: nothing "
                        "more was read."
                    )
        held.seek(0)
        try:
            archive = zipfile.ZipFile(held)
        except zipfile.BadZipFile:
            raise CliError(f"The snapshot .zip of run {run_id} is damaged: try again.") from None
        with archive:
            for entry, target in targets:
                try:
                    member = archive.open(entry["path"])
                except KeyError:
                    raise CliError(
                        f"{entry['path']} is listed but not in the snapshot .zip: try again."
                    ) from None
                with member:
                    file_write(root, target, entry, chunks_of(member), overwrite)


def chunks_of(member: IO[bytes]) -> Iterator[bytes]:
    while chunk := member.read(CHUNK):
        yield chunk


def file_write(
    root: Path, target: Path, entry: dict, chunks: Iterable[bytes], overwrite: bool
) -> None:
    """Write `chunks` to `target` (no existing file or link replaced unless `overwrite`),
    checked against the listed size and SHA-256; nothing is left of a file that fails."""
    folder_make(root, target.parent)
    mode = 0o755 if entry.get("executable") else 0o644
    if overwrite:
        fd, written = tempfile.mkstemp(dir=target.parent, prefix=".download-")
        os.fchmod(fd, mode & ~umask())
    else:
        written = str(target)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        except FileExistsError:
            raise CliError(f"{target} exists: give --overwrite to replace it.") from None
    try:
        with os.fdopen(fd, "wb") as out:
            check_copy(entry, chunks, out)
        if overwrite:
            os.replace(written, target)
    except BaseException as exc:
        os.unlink(written)
        if isinstance(exc, OSError):
            raise CliError(f"Cannot write {target}: {exc.strerror}.") from None
        raise


def check_copy(entry: dict, chunks: Iterable[bytes], out: IO[bytes]) -> None:
    size, digest = int(entry["size"]), hashlib.sha256()
    done = 0
    for chunk in chunks:
        done += len(chunk)
        if done > size:
            break
        digest.update(chunk)
        out.write(chunk)
    if done != size or digest.hexdigest() != entry["sha256"]:
        raise CliError(
            f"{entry['path']} did not arrive as listed ({size} bytes, SHA-256 "
            f"{str(entry['sha256'])[:12]}…): try again."
        )


def folder_make(root: Path, folder: Path) -> None:
    """Make the folders between `root` and `folder`, refusing to go through a link."""
    current = root
    for part in folder.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise CliError(f"{current} is a link: remove it, or download into another -o DIR.")
        try:
            current.mkdir(exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise CliError(
                f"{current} is a file, not a folder: download into another -o DIR."
            ) from None


def umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current
