"""Archives in and out: uploaded .zip / .tar.gz extracted safely, a snapshot as a .zip, and
the names of a run's outputs confined to its outputs/ and logs/."""

from __future__ import annotations

import gzip
import io
import lzma
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from django.conf import settings

from runs.snapshots.capture import SnapshotError, safe_relative
from studio.blobs import blob_path
from studio.units import human_bytes

# --- uploads and archives --------------------------------------------------------------


# The folders of a run's working directory that are kept when it ends.
OUTPUT_FOLDERS = ("outputs", "logs")
# What a file system takes: bytes per name, and characters per path (RunFile.path).
NAME_MAX_BYTES = 255
PATH_MAX_CHARS = 1024
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def output_path(name: str) -> PurePosixPath:
    """The path to keep a file a target or cloud service reports under, confined to the
    run's outputs/ and logs/; SnapshotError, saying why, for a name that is not kept."""
    try:
        name.encode()
    except UnicodeEncodeError:
        raise SnapshotError("not valid text") from None
    if CONTROL.search(name):
        raise SnapshotError("a control character in the name")
    if len(name) > PATH_MAX_CHARS:
        raise SnapshotError(f"a path longer than {PATH_MAX_CHARS} characters")
    try:
        path = safe_relative(name)
    except SnapshotError:
        raise SnapshotError("an absolute path, or one that climbs out with ..") from None
    if str(path) != name:
        raise SnapshotError("not a plain path (it has empty, . or \\ parts)")
    if any(len(part.encode()) > NAME_MAX_BYTES for part in path.parts):
        raise SnapshotError(f"a name longer than {NAME_MAX_BYTES} bytes")
    if len(path.parts) < 2 or path.parts[0] not in OUTPUT_FOLDERS:
        raise SnapshotError("not in outputs/ or logs/")
    return path


def shown_name(name: str, limit: int = 80) -> str:
    """A name from a target as a message may quote it: control characters escaped, cut short."""
    text = CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", name)
    text = text.encode(errors="backslashreplace").decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_total(total: int, limit: int, sizes: list[tuple[str, int]]) -> None:
    if total > limit:
        biggest = sorted(sizes, key=lambda s: s[1], reverse=True)[:5]
        names = ", ".join(f"{n} ({human_bytes(s)})" for n, s in biggest)
        raise SnapshotError(
            f"The archive unpacks to {human_bytes(total)}, over the snapshot limit of "
            f"{human_bytes(limit)}. The biggest files: {names}. Leave data files out of the "
            "source (or list them in .amlignore), or ask an operator to raise SNAPSHOT_MAX_BYTES."
        )


def _check_count(count: int) -> None:
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
    if count > limit:
        raise SnapshotError(
            f"The archive holds more than {limit:,} files, folders and links, over the limit "
            "of a source folder: leave data files out of the source (or list them in "
            ".amlignore), or ask an operator to raise DATA_UPLOAD_MAX_NUMBER_FILES."
        )


class _Budget:
    """The bytes an archive may still unpack to. Declared sizes are checked before
    anything is unpacked; this counts what decompressing really yields, which a
    crafted archive may make larger than it declares."""

    def __init__(self, limit: int):
        self.limit = limit
        self.left = limit

    def copy(self, src, out) -> None:
        while chunk := src.read(1 << 20):
            self.left -= len(chunk)
            if self.left < 0:
                raise SnapshotError(
                    f"The archive unpacks to more than its files declare, over the snapshot "
                    f"limit of {human_bytes(self.limit)}: such archives are refused. Create it "
                    "again with tar or zip."
                )
            out.write(chunk)


def extract_archive(fileobj, filename: str, dest: Path, *, max_bytes: int | None = None) -> None:
    """Unpack a .zip, .tar, .tar.gz or .tgz into `dest`, refusing anything that escapes it,
    holds more members than a source folder may have files, or unpacks to more than
    `max_bytes` (default: settings.SNAPSHOT_MAX_BYTES), links counted as the copies they
    become."""
    limit = settings.SNAPSHOT_MAX_BYTES if max_bytes is None else max_bytes
    lower = filename.lower()
    if lower.endswith(".zip"):
        unpack = _extract_zip
        damaged = "The .zip file is damaged or not a zip archive"
    elif lower.endswith((".tar.gz", ".tgz", ".tar")):
        unpack = _extract_tar
        damaged = "The archive is damaged or not a tar / tar.gz archive"
    else:
        raise SnapshotError(
            f"{filename} is not a .zip, .tar.gz or .tgz archive: upload one of those, "
            "or choose the folder itself."
        )
    try:
        unpack(fileobj, dest, limit)
    except (
        zipfile.BadZipFile,
        tarfile.TarError,
        gzip.BadGzipFile,
        EOFError,
        zlib.error,
        lzma.LZMAError,
    ) as exc:
        raise SnapshotError(f"{damaged} ({exc}): create it again and upload it.") from exc
    except OSError as exc:
        raise SnapshotError(
            f"The archive could not be unpacked: {exc.strerror or exc}"
            + (f" ({Path(exc.filename).name[:100]})" if exc.filename else "")
            + ". Rename the file in the source folder and create the archive again."
        ) from exc


def _extract_zip(fileobj, dest: Path, limit: int) -> None:
    archive = zipfile.ZipFile(fileobj)
    with archive:
        members = archive.infolist()
        _check_count(len(members))
        for info in members:
            safe_relative(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise SnapshotError(
                    f"The archive contains the link {info.filename}: links are refused in "
                    "zip archives; put the file itself in the archive."
                )
        files = [i for i in members if not i.is_dir()]
        sizes = [(i.filename, i.file_size) for i in files]
        _check_total(sum(s for _, s in sizes), limit, sizes)
        budget = _Budget(limit)
        for info in files:
            target = dest / safe_relative(info.filename)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                budget.copy(src, out)
            if (info.external_attr >> 16) & stat.S_IXUSR:
                target.chmod(0o755)


def _extract_tar(fileobj, dest: Path, limit: int) -> None:
    archive = tarfile.open(fileobj=fileobj, mode="r:*")  # noqa: SIM115 - closed below
    with archive:
        # Read member by member: the count is refused before a flood of headers is held.
        members: list[tarfile.TarInfo] = []
        for member in archive:
            members.append(member)
            _check_count(len(members))
        files: dict[PurePosixPath, tarfile.TarInfo] = {}
        links: dict[PurePosixPath, PurePosixPath] = {}
        for member in members:
            rel = safe_relative(member.name)
            if member.issym() or member.islnk():
                link = member.linkname
                base = rel.parent if member.issym() else PurePosixPath(".")
                if link.startswith("/") or _escapes(base / link):
                    raise SnapshotError(
                        f"The archive contains the link {member.name} -> {link}, which points "
                        "outside the source folder: such archives are refused."
                    )
                links[rel] = _normalise(base / link)
            elif member.isfile():
                files[rel] = member
            elif not member.isdir():
                raise SnapshotError(
                    f"The archive contains {member.name}, which is neither a file, a folder nor "
                    "a link: such archives are refused."
                )
        # Links inside the tree become copies of the file they lead to, and count as such.
        ends = {rel: _link_end(rel, links, files) for rel in links}
        copies = {rel: end for rel, end in ends.items() if end is not None}
        sizes = [(m.name, m.size) for m in files.values()]
        sizes += [(str(rel), files[end].size) for rel, end in copies.items()]
        _check_total(sum(s for _, s in sizes), limit, sizes)
        budget = _Budget(limit)
        for rel, member in files.items():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            src = archive.extractfile(member)
            assert src is not None
            with src, open(target, "wb") as out:
                budget.copy(src, out)
            if member.mode & stat.S_IXUSR:
                target.chmod(0o755)
        for rel, end in copies.items():
            target = dest / rel
            if target.is_dir():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(dest / end, "rb") as src, open(target, "wb") as out:
                budget.copy(src, out)


def _link_end(
    rel: PurePosixPath,
    links: dict[PurePosixPath, PurePosixPath],
    files: dict[PurePosixPath, tarfile.TarInfo],
) -> PurePosixPath | None:
    """The file a chain of links starting at `rel` ends on; None for a folder, a dangling
    link or a loop (as `ls` would find no file there either)."""
    seen = {rel}
    at = links[rel]
    while at in links:
        if at in seen:
            return None
        seen.add(at)
        at = links[at]
    return at if at in files else None


def _normalise(path: PurePosixPath) -> PurePosixPath:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if not parts:
                raise SnapshotError(f"{path} points outside the source folder.")
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return PurePosixPath(*parts)


def _escapes(path: PurePosixPath) -> bool:
    try:
        _normalise(path)
    except SnapshotError:
        return True
    return False


def strip_common_folder(paths: list[str]) -> list[str]:
    """A chosen folder arrives as `folder/a.py, folder/b/c.py`: drop the shared first part."""
    split = [p.replace("\\", "/").lstrip("/").split("/") for p in paths]
    if split and all(len(s) > 1 for s in split) and len({s[0] for s in split}) == 1:
        return ["/".join(s[1:]) for s in split]
    return ["/".join(s) for s in split]


class _Taken(io.RawIOBase):
    """A write-only stream whose bytes are taken away as they are written."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.pending.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.pending)
        self.pending.clear()
        return data


def zip_chunks(manifest: list[list], date_time: tuple) -> Iterator[bytes]:
    """A .zip of a snapshot, read from its blobs and yielded while it is written."""
    out = _Taken()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path, sha, _size, executable in manifest:
            info = zipfile.ZipInfo(path, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            with blob_path(sha).open("rb") as src, archive.open(info, "w") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    yield out.take()
            yield out.take()
    yield out.take()
