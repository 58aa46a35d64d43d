"""Snapshots of source directories: content-addressed blobs and a manifest of paths.

A blob is stored once under its sha256, so submitting the same folder again
stores (and later uploads to a target) only the files that changed. Which
files belong to a snapshot follows `.amlignore` if the folder has one, else
`.gitignore` (gitignore syntax, via pathspec), as Azure ML does.

Blobs are shared by all workspaces on disk; which of them a workspace may name
by digest alone is what its snapshots hold (runs.models.SnapshotBlob).
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import pathspec
from django.conf import settings

from runs import linear_regex
from studio.units import human_bytes

IGNORE_FILES = (".amlignore", ".gitignore")
# A blob's name: the SHA-256 of its content.
SHA256 = re.compile(r"[0-9a-f]{64}")
# Never part of a snapshot: git's own database (its facts are recorded apart).
ALWAYS_IGNORED = (".git/",)
# Each path of a folder is matched against each ignore rule.
MAX_IGNORE_RULES = 1000
MAX_IGNORE_RULE_LENGTH = 1024
# Files up to this size are hashed and stored from memory in one read.
SMALL_FILE = 8 * 1024 * 1024


class SnapshotError(Exception):
    """The source cannot become a snapshot; the message says what to change."""


class StoredFile(NamedTuple):
    """A file of an upload the workspace holds already: the blob of its digest, and its size."""

    sha256: str
    size: int


@dataclass
class Capture:
    """What capturing a folder found and did."""

    manifest: list[list] = field(default_factory=list)
    total_bytes: int = 0
    new_blobs: int = 0
    new_bytes: int = 0
    git: dict = field(default_factory=dict)

    @property
    def manifest_bytes(self) -> bytes:
        return manifest_text(self.manifest)


def manifest_text(manifest: list[list]) -> bytes:
    """The manifest as stored (a blob, so its sha256 is the snapshot's id) and shipped to targets.

    One file per line, fields separated by NUL (which no path contains):
    path, sha256, size, 1 if executable else 0.
    """
    return "".join(f"{path}\0{sha}\0{size}\0{int(x)}\n" for path, sha, size, x in manifest).encode()


def parse_manifest(data: bytes) -> list[list]:
    entries = []
    for line in data.decode().splitlines():
        path, sha, size, executable = line.split("\0")
        entries.append([path, sha, int(size), executable == "1"])
    return entries


# --- blobs -----------------------------------------------------------------------------


def blob_path(sha: str) -> Path:
    return Path(_blob_file(sha))


def blob_exists(sha: str) -> bool:
    return os.path.exists(_blob_file(sha))


def _blob_file(sha: str) -> str:
    # A string, not a Path: checking 10,000 blobs of a submit is mostly path building.
    if not SHA256.fullmatch(sha):
        raise ValueError(f"not a sha256: {sha!r}")
    return f"{settings.BLOB_DIR}/{sha[:2]}/{sha}"


def _blob_write(sha: str, write) -> bool:
    """Store a blob through `write(file)` unless it exists; True when it was new."""
    path = blob_path(sha)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def blob_store_bytes(data: bytes) -> tuple[str, bool]:
    sha = hashlib.sha256(data).hexdigest()
    return sha, _blob_write(sha, lambda f: f.write(data))


def blob_store_stream(src) -> tuple[str, bool]:
    """Hash and store what the file object `src` reads, a chunk at a time (any size);
    returns (sha256, newly stored)."""
    Path(settings.BLOB_DIR).mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=settings.BLOB_DIR, prefix=".part-")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        sha = digest.hexdigest()
        path = blob_path(sha)
        if path.exists():
            Path(tmp).unlink()
            return sha, False
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha, True


def blob_store_file(path: Path, size: int) -> tuple[str, bool]:
    """Hash a file and store it as a blob; returns (sha256, newly stored)."""
    if size <= SMALL_FILE:
        data = path.read_bytes()
        return blob_store_bytes(data)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    sha = digest.hexdigest()
    return sha, _blob_write(sha, lambda out: _copy_into(path, out))


def _copy_into(path: Path, out) -> None:
    with open(path, "rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)


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


# --- ignore rules ----------------------------------------------------------------------


def ignore_spec(root: Path) -> tuple[pathspec.PathSpec, str | None]:
    """The rules for `root`: `.amlignore` wins over `.gitignore`; returns (spec, file used)."""
    texts = {
        name: (root / name).read_text(errors="replace")
        for name in IGNORE_FILES
        if (root / name).is_file()
    }
    return ignore_spec_from(texts)


def ignore_spec_from(texts: dict[str, str]) -> tuple[pathspec.PathSpec, str | None]:
    """The rules given the text of a folder's ignore files (name → text).

    Every path of a folder is matched against every rule, so both the rules' number and
    length are bounded, and they are matched by RE2 (runs.linear_regex): a rule such as
    `*a*a*a*a*a*a*a*a*a*a*a*a*b` backtracks for minutes in Python's `re`.
    """
    for name in IGNORE_FILES:
        if name in texts:
            lines = texts[name].splitlines()
            rules = [line for line in lines if line.strip() and not line.startswith("#")]
            if len(rules) > MAX_IGNORE_RULES:
                raise SnapshotError(
                    f"{name} has {len(rules):,} rules, more than the {MAX_IGNORE_RULES:,} "
                    "read: leave out whole folders (data/) rather than each file."
                )
            for rule in rules:
                if len(rule) > MAX_IGNORE_RULE_LENGTH:
                    raise SnapshotError(
                        f"{name} has a rule longer than {MAX_IGNORE_RULE_LENGTH} characters "
                        f"({rule[:40]!r}…): shorten it."
                    )
            return _spec([*ALWAYS_IGNORED, *lines], name), name
    return _spec(list(ALWAYS_IGNORED), None), None


def _spec(lines: list[str], name: str | None) -> pathspec.PathSpec:
    try:
        return pathspec.GitIgnoreSpec.from_lines(lines, backend="re2")
    except Exception as exc:  # pathspec raises several kinds for a rule it cannot read
        raise SnapshotError(f"{name} has a rule that cannot be read: {exc}") from None


# --- capturing a folder ----------------------------------------------------------------


class _Matcher:
    """gitignore matching of one path: the last pattern that matches decides.

    The same rules as `spec.match_file`, without its per-call path
    normalisation, which dominated capturing a large unchanged folder.
    Folders are matched (and pruned) before their files are looked at.
    """

    def __init__(self, spec: pathspec.PathSpec):
        rules = [
            (p.regex.pattern, p.include)
            for p in spec.patterns
            if p.include is not None and getattr(p, "regex", None) is not None
        ]
        self.patterns = [(linear_regex.compile(rule), include) for rule, include in rules]
        # Folder-only rules (`data/`, the default `.git/`) never leave out a file that is
        # not in a folder they left out already: its files need no matching at all.
        self.folders_only = all(rule.endswith("(?P<ps_d>/)") for rule, _ in rules)
        self.folders: dict[str, bool] = {}

    def file(self, path: str) -> bool:
        return not self.folders_only and self(path)

    def path(self, path: str) -> bool:
        """A file left out by a rule for it or for one of its folders (a list of paths)."""
        folder = path.rpartition("/")[0]
        return (bool(folder) and self.folder(folder)) or self.file(path)

    def folder(self, folder: str) -> bool:
        left_out = self.folders.get(folder)
        if left_out is None:
            parent = folder.rpartition("/")[0]
            left_out = (bool(parent) and self.folder(parent)) or self(f"{folder}/")
            self.folders[folder] = left_out
        return left_out

    def __call__(self, path: str) -> bool:
        result = False
        for regex, include in self.patterns:
            if regex.match(path):
                result = include
        return bool(result)


def source_files(root: Path, spec: pathspec.PathSpec) -> list[tuple[str, os.stat_result, bool]]:
    """Every file to capture: (posix path relative to root, stat, executable)."""
    found: list[tuple[str, os.stat_result, bool]] = []
    real_root = root.resolve()
    ignored = _Matcher(spec)

    def visit(folder: str, prefix: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = f"{prefix}{entry.name}"
                if "\n" in entry.name or "\r" in entry.name:
                    raise SnapshotError(
                        f"{rel!r} has a line break in its name: rename it, or add it to .amlignore."
                    )
                if entry.is_dir(follow_symlinks=False):
                    if not ignored(f"{rel}/"):
                        visit(entry.path, f"{rel}/")
                    continue
                if ignored.file(rel):
                    continue
                if entry.is_symlink():
                    resolved = Path(entry.path).resolve()
                    if not resolved.is_relative_to(real_root):
                        raise SnapshotError(
                            f"{rel} is a link to {os.readlink(entry.path)}, outside the source "
                            "folder: copy the file into the folder, or add it to .amlignore."
                        )
                    if not resolved.is_file():
                        continue
                    st = resolved.stat()
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                else:
                    continue
                found.append((rel, st, bool(st.st_mode & stat.S_IXUSR)))

    visit(str(root), "")
    return found


def capture_dir(root: Path, *, max_bytes: int | None = None) -> Capture:
    """Store the files of `root` as blobs and return their manifest.

    Raises SnapshotError, naming the biggest files, when the files to capture
    add up to more than `max_bytes` (default: settings.SNAPSHOT_MAX_BYTES).
    """
    root = Path(root)
    if not root.is_dir():
        raise SnapshotError(f"{root} is not a folder.")
    limit = settings.SNAPSHOT_MAX_BYTES if max_bytes is None else max_bytes
    with _no_cyclic_gc():
        return _capture(root, limit)


@contextmanager
def _no_cyclic_gc():
    """Tens of thousands of small, acyclic objects: the cyclic garbage collector would
    only rescan them again and again (and a full pass over a web process's heap in the
    middle of a capture costs more than the capture)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _capture(root: Path, limit: int) -> Capture:
    spec, _ = ignore_spec(root)
    files = source_files(root, spec)
    total = sum(st.st_size for _, st, _ in files)
    _check_folder_total(total, limit, [(rel, st.st_size) for rel, st, _ in files])
    capture = Capture(total_bytes=total)
    root_text = f"{root}/"
    for rel, st, executable in sorted(files, key=lambda f: f[0]):
        sha, new = blob_store_file(Path(root_text + rel), st.st_size)
        if new:
            capture.new_blobs += 1
            capture.new_bytes += st.st_size
        capture.manifest.append([rel, sha, st.st_size, executable])
    capture.git = git_info(root)
    return capture


def capture_upload(
    files: list[tuple[str, object]],
    *,
    git_files: dict[str, str] | None = None,
    executables: set[str] | None = None,
    max_bytes: int | None = None,
) -> Capture:
    """Store a folder chosen in the browser as blobs and return its manifest.

    `files` pairs each relative path with its UploadedFile, or with a StoredFile
    when the page did not send a file the workspace holds: that blob is its
    content, so it is neither written out nor hashed again. A bare SHA-256
    stands for a file neither sent nor held: an error, unless the ignore rules
    leave it out. `git_files` are the small files of its .git/ the git facts are
    read from; `executables` the paths to mark executable (browsers do not tell).
    """
    limit = settings.SNAPSHOT_MAX_BYTES if max_bytes is None else max_bytes
    # Tens of thousands of small objects: see capture_dir.
    with _no_cyclic_gc():
        return _capture_upload(files, git_files or {}, executables or set(), limit)


def _capture_upload(files, git_files: dict[str, str], executables: set[str], limit: int):
    chosen: dict[str, object] = {}
    for name, source in files:
        rel = relative_name(name)
        if rel == ".":
            continue
        if "\n" in rel or "\r" in rel:
            raise SnapshotError(
                f"{rel!r} has a line break in its name: rename it, or add it to .amlignore."
            )
        chosen[rel] = source
    texts = {name: _upload_bytes(name, chosen[name]) for name in IGNORE_FILES if name in chosen}
    spec, _ = ignore_spec_from(
        {name: text.decode(errors="replace") for name, text in texts.items()}
    )
    ignored = _Matcher(spec)
    kept = [rel for rel in sorted(chosen) if not ignored.path(rel)]
    sizes = [(rel, _upload_size(rel, chosen[rel])) for rel in kept]
    total = sum(size for _, size in sizes)
    _check_folder_total(total, limit, sizes)
    capture = Capture(total_bytes=total)
    for rel, size in sizes:
        source = chosen[rel]
        if isinstance(source, StoredFile):
            sha = source.sha256
        else:
            sha, new = _blob_store_upload(source, size)
            if new:
                capture.new_blobs += 1
                capture.new_bytes += size
        capture.manifest.append([rel, sha, size, rel in executables])
    capture.git = git_info_from(git_files)
    return capture


def _upload_size(rel: str, source) -> int:
    if isinstance(source, str):
        raise SnapshotError(
            f"{rel} was not uploaded and is not stored (did the folder change while it was "
            "uploading?): choose the folder again, or send the file with the submit."
        )
    return source.size


def _upload_bytes(rel: str, source) -> bytes:
    _upload_size(rel, source)
    if isinstance(source, StoredFile):
        return blob_path(source.sha256).read_bytes()
    return b"".join(source.chunks())


def _blob_store_upload(upload, size: int) -> tuple[str, bool]:
    # Django keeps a large upload in a temporary file: hashed and stored from there.
    if hasattr(upload, "temporary_file_path"):
        return blob_store_file(Path(upload.temporary_file_path()), size)
    return blob_store_bytes(b"".join(upload.chunks()))


def _check_folder_total(total: int, limit: int, sizes: list[tuple[str, int]]) -> None:
    if total > limit:
        biggest = sorted(sizes, key=lambda s: s[1], reverse=True)[:5]
        names = ", ".join(f"{rel} ({human_bytes(size)})" for rel, size in biggest)
        raise SnapshotError(
            f"The source folder holds {human_bytes(total)} to snapshot, over the limit of "
            f"{human_bytes(limit)}. The biggest files: {names}. Add data files to .amlignore "
            "(or .gitignore) and read them from a datastore instead, or ask an operator to "
            "raise SNAPSHOT_MAX_BYTES."
        )


# The files of .git/ the submit page sends for the run's git facts (never its objects).
GIT_FILES = re.compile(r"HEAD|config|packed-refs|refs/heads/[^\s]{1,255}")
COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def git_info_from(files: dict[str, str]) -> dict:
    """Repository, branch and commit from a checkout's .git/HEAD, config and refs.

    A folder chosen in the browser arrives without git's object database, so
    whether the tree has uncommitted changes is not known.
    """
    head = files.get("HEAD", "").strip()
    branch, commit = "HEAD", head
    if head.startswith("ref: "):
        ref = head.removeprefix("ref: ").strip()
        branch = ref.removeprefix("refs/heads/")
        commit = files.get(ref, "").strip() or _packed_ref(files.get("packed-refs", ""), ref)
    if not COMMIT.fullmatch(commit):
        return {}
    return {
        "repository": _origin_url(files.get("config", "")),
        "branch": branch,
        "commit": commit,
    }


def _packed_ref(packed: str, ref: str) -> str:
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name.strip() == ref:
            return sha
    return ""


def _origin_url(config: str) -> str:
    section = ""
    for line in config.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == '[remote "origin"]':
            key, _, value = line.partition("=")
            if key.strip() == "url":
                return repository_url(value.strip())
    return ""


def repository_url(url: str) -> str:
    """A remote's URL without the user or token an https URL may carry."""
    return re.sub(r"^(https?://)[^/@]*@", r"\1", url)


def git_info(root: Path) -> dict:
    """Repository, branch, commit and dirty flag of the folder, if it is a git checkout."""
    if not (root / ".git").exists():
        return {}

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-c", f"safe.directory={root}", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    return {
        "repository": repository_url(git("config", "--get", "remote.origin.url")),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "commit": commit,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


# --- uploads and archives --------------------------------------------------------------


def safe_relative(name: str) -> PurePosixPath:
    """A path from an upload or archive, refused if it is absolute or climbs out with `..`."""
    return PurePosixPath(relative_name(name))


def relative_name(name: str) -> str:
    """safe_relative's path as text ("." for the folder itself)."""
    cleaned = name.replace("\\", "/")
    parts = cleaned.split("/")
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise SnapshotError(
            f"The archive contains the absolute path {name!r}: create the archive from "
            "inside the source folder (e.g. `tar -czf src.tar.gz -C myfolder .`)."
        )
    if ".." in parts:
        raise SnapshotError(
            f"The archive contains {name!r}, which points outside the source folder "
            "(`..`): such archives are refused. Create it from inside the source folder."
        )
    if "" not in parts and "." not in parts:
        return cleaned
    return "/".join(p for p in parts if p not in ("", ".")) or "."


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
