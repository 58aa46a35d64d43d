"""A project folder as `az ml` leaves it: `.azureml/config.json` (the defaults `folder attach`
writes), `.azureml/<name>.runconfig` files, and the source snapshot a run uploads."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import quote

from cli.connection import PROG, Api, CliError
from runs.snapshots.capture import SnapshotError, ignore_spec, source_files
from studio.units import human_bytes

PROJECT_DIR = ".azureml"
# az ml keeps runconfig files in .azureml/; projects made by older versions in aml_config/.
RUNCONFIG_DIRS = (PROJECT_DIR, "aml_config")
# Spooled to disk above this, so a large source folder is not held in memory.
SPOOL_BYTES = 16 * 1024 * 1024


def project_config(start: Path) -> dict:
    """The defaults of the nearest attached folder at or above `start` (empty if none)."""
    for folder in (start, *start.parents):
        path = folder / PROJECT_DIR / "config.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except ValueError:
                raise CliError(
                    f"{path} is not JSON: fix it, or run `{PROG} folder attach -e EXPERIMENT`."
                ) from None
            return data if isinstance(data, dict) else {}
    return {}


def project_attach(folder: Path, *, workspace: str, experiment: str) -> Path:
    path = folder / PROJECT_DIR / "config.json"
    path.parent.mkdir(exist_ok=True)
    config = project_config(folder) if path.is_file() else {}
    config.update(workspace_name=workspace, experiment_name=experiment)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def runconfig_find(name: str, folders: list[Path]) -> Path:
    """`-c NAME`: `.azureml/NAME.runconfig` of the first of `folders` that has it, or a path."""
    candidates = [folder / d / f"{name}.runconfig" for folder in folders for d in RUNCONFIG_DIRS]
    for path in [*candidates, Path(name)]:
        if path.is_file():
            return path
    raise CliError(
        f"No runconfig {name}: looked for {', '.join(str(p) for p in candidates)}. "
        "Give the name of one of those files, or the path of a runconfig file."
    )


def hdconfig_find(name: str, folders: list[Path]) -> Path:
    """`--hyperdrive-configuration-name NAME`: a path, else NAME beside the runconfig files of
    the first of `folders` that has it, where az ml keeps it."""
    candidates = [Path(name), *(folder / d / name for folder in folders for d in RUNCONFIG_DIRS)]
    for path in candidates:
        if path.is_file():
            return path
    raise CliError(
        f"No hdconfig file {name}: looked for {', '.join(str(p) for p in candidates)}. Give "
        "the sweep's hdconfig.yml with --hyperdrive-configuration-name."
    )


def project_folders(source: Path) -> list[Path]:
    # az ml reads runconfigs from the project folder, which is usually the source folder too.
    return list(dict.fromkeys([Path.cwd(), source.resolve()]))


def runconfig_upload(name: str, source: Path) -> tuple[str, bytes, str]:
    """The `runconfig` file of a multipart upload: `-c NAME` found as `az ml` finds it."""
    path = runconfig_find(name, project_folders(source))
    return path.name, path.read_bytes(), "text/yaml"


def snapshot_upload(folder: Path) -> tuple[str, IO[bytes], str]:
    """The `snapshot` file of a multipart upload, as the runs and pipelines API take it."""
    return "snapshot.tar.gz", snapshot_pack(folder), "application/gzip"


@dataclass
class SourceUpload:
    """A source folder as a submit sends it: its manifest, and only the files the workspace
    lacks."""

    fields: dict[str, str]
    files: list[tuple[str, tuple[str, bytes, str]]] = field(default_factory=list)
    summary: str = ""


def source_upload(api: Api, folder: Path, params: dict) -> SourceUpload:
    """Hash the folder's files, ask the server which it lacks, and read only those."""
    manifest = snapshot_manifest(folder)
    missing = set(
        api.post("/snapshots/missing", params=params, json=[e["sha256"] for e in manifest])
    )
    sent = [entry for entry in manifest if entry["sha256"] in missing]
    upload = SourceUpload(fields={"manifest": json.dumps(manifest)})
    for entry in sent:
        # Multipart keeps no folders in a file name: the path travels percent-encoded.
        name = quote(entry["path"], safe="")
        content = (folder / entry["path"]).read_bytes()
        upload.files.append(("files", (name, content, "application/octet-stream")))
    size = human_bytes(sum(entry["size"] for entry in sent))
    rest = "; the server had the rest." if len(sent) < len(manifest) else "."
    upload.summary = f"Uploaded {len(sent)} of {len(manifest)} files ({size}){rest}"
    return upload


def snapshot_manifest(folder: Path) -> list[dict]:
    """The manifest the API takes: path, sha256, size and mode of each file kept."""
    entries = []
    for rel, st, executable in kept_files(folder):
        with (folder / rel).open("rb") as content:
            sha = hashlib.file_digest(content, "sha256").hexdigest()
        mode = 0o755 if executable else 0o644
        entries.append({"path": rel, "sha256": sha, "size": st.st_size, "mode": mode})
    return entries


def kept_files(folder: Path) -> list[tuple[str, os.stat_result, bool]]:
    """The folder's files that `.amlignore` (else `.gitignore`) does not leave out."""
    if not folder.is_dir():
        raise CliError(f"{folder} is not a folder: give the source folder with --source-directory.")
    try:
        spec, _ = ignore_spec(folder)
        return source_files(folder, spec)
    except SnapshotError as exc:
        raise CliError(str(exc)) from None


def snapshot_pack(folder: Path) -> IO[bytes]:
    """The folder as a .tar.gz, leaving out what `.amlignore` (else `.gitignore`) says."""
    files = kept_files(folder)
    archive = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - returned open
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for rel, st, executable in files:
            info = tarfile.TarInfo(rel)
            info.size = st.st_size
            info.mtime = int(st.st_mtime)
            info.mode = 0o755 if executable else 0o644
            with (folder / rel).open("rb") as content:
                tar.addfile(info, content)
    archive.seek(0)
    return archive
