"""Capturing a folder or an upload as a snapshot: ignore rules, blobs and a manifest.

Which files belong to a snapshot follows `.amlignore` if the folder has one, else
`.gitignore` (gitignore syntax, via pathspec), as Azure ML does.
"""

from __future__ import annotations

import gc
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import pathspec
from django.conf import settings

from runs import linear_regex
from runs.snapshots.git import git_info, git_info_from
from studio.blobs import blob_path, blob_store_bytes, blob_store_file
from studio.units import human_bytes

IGNORE_FILES = (".amlignore", ".gitignore")
# Never part of a snapshot: git's own database (its facts are recorded apart).
ALWAYS_IGNORED = (".git/",)
# Each path of a folder is matched against each ignore rule.
MAX_IGNORE_RULES = 1000
MAX_IGNORE_RULE_LENGTH = 1024


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
