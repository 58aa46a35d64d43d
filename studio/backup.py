"""Backups of a whole studio: its database and the files of DATA_DIR that hold state.

A backup is a directory only its owner can read (mode 0700, files 0600), because it
holds the key that decrypts every stored secret:

    manifest.json                  format, time, counts, SHA-256 and size of every file
    database.sqlite3 | database.pgdump
    data/secret_key, data/fernet.key, data/instance_id
    data/blobs/…                   snapshot files and collected outputs
    data/logs/<run id>/…           run logs

It is taken while the studio runs. The database is copied first, in one snapshot
(SQLite's online backup API; on PostgreSQL `pg_dump` in a snapshot exported from a
REPEATABLE READ transaction, which also lists the runs). Files come after: blobs are
content-addressed and never deleted, so every blob the copied database names is there;
logs only grow, so a copied log reaches at least as far as the copied database says
it was read (`metrics_stdout_offset`), and runs.logs.store cuts each log where its
own records say it is whole. Only the logs of runs in the copied database are kept: a
log of a later run would sit under the id the restored studio gives its next run.

Left out as scratch or rebuilt on start: the embedded Redis and its socket, Celery
beat's schedule, static files, the node image cache, process logs, and the local
target's run folders (a run's outputs are collected into blobs when it ends).
"""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from studio.errors import ServiceError
from studio.units import human_bytes

FORMAT = 1
MANIFEST = "manifest.json"
KEYS = ("secret_key", "fernet.key", "instance_id")
# Counted into the manifest, so an operator sees what a backup holds before restoring it.
COUNTED = {
    "users": ("auth", "User"),
    "workspaces": ("studio", "Workspace"),
    "tokens": ("studio", "ApiToken"),
    "targets": ("compute", "ComputeTarget"),
    "runs": ("runs", "Run"),
}


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _table(app_label: str, model: str) -> str:
    if (app_label, model) == ("auth", "User"):
        return get_user_model()._meta.db_table
    return apps.get_model(app_label, model)._meta.db_table


def _sqlite_path() -> Path:
    return Path(connection.settings_dict["NAME"])


def _pg_env() -> dict[str, str]:
    """libpq's environment for pg_dump / pg_restore: the password never on a command line."""
    db = connection.settings_dict
    env = dict(os.environ)
    for var, key in (
        ("PGHOST", "HOST"),
        ("PGPORT", "PORT"),
        ("PGUSER", "USER"),
        ("PGPASSWORD", "PASSWORD"),
        ("PGDATABASE", "NAME"),
    ):
        if db.get(key):
            env[var] = str(db[key])
    return env


def _pg_tool(args: list[str]) -> None:
    try:
        result = subprocess.run(args, env=_pg_env(), capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise ServiceError(
            f"{args[0]} is not installed: install the PostgreSQL client (apt install "
            "postgresql-client) of the server's version or newer, then try again."
        ) from exc
    if result.returncode != 0:
        raise ServiceError(f"{args[0]} failed: {result.stderr.strip()}")


def _count(cursor: Any) -> dict[str, int]:
    counts = {}
    for name, (app_label, model) in COUNTED.items():
        cursor.execute(f'SELECT COUNT(*) FROM "{_table(app_label, model)}"')  # noqa: S608  # nosec B608: a table name of our own models
        counts[name] = cursor.fetchone()[0]
    return counts


def _database_copy(into: Path) -> tuple[str, list[int], dict[str, int]]:
    """Copy the database into `into`; return its file name, its run ids and counts."""
    runs = _table("runs", "Run")
    if _postgres():
        name = "database.pgdump"
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SELECT pg_export_snapshot()")
            snapshot = cursor.fetchone()[0]
            cursor.execute(f'SELECT id FROM "{runs}"')  # noqa: S608  # nosec B608: a table name of our own models
            run_ids = [row[0] for row in cursor.fetchall()]
            counts = _count(cursor)
            # Same snapshot as the run ids above: the dump and the list agree.
            _pg_tool(
                [
                    "pg_dump",
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    f"--snapshot={snapshot}",
                    f"--file={into / name}",
                ]
            )
        return name, run_ids, counts
    name = "database.sqlite3"
    source = sqlite3.connect(_sqlite_path(), timeout=30)
    target = sqlite3.connect(into / name)
    try:
        # One step (pages=-1): one read transaction, so one consistent state even
        # while the studio's processes write (WAL lets them go on meanwhile).
        source.backup(target)
        rows = target.cursor()
        rows.execute(f'SELECT id FROM "{runs}"')  # noqa: S608  # nosec B608: a table name of our own models
        run_ids = [row[0] for row in rows.fetchall()]
        counts = _count(rows)
    finally:
        target.close()
        source.close()
    return name, run_ids, counts


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _state_size() -> int:
    data = Path(settings.DATA_DIR)
    total = 0 if _postgres() else _sqlite_path().stat().st_size
    for folder in (data / "blobs", data / "logs"):
        if folder.is_dir():
            total += sum(p.stat().st_size for p in _files(folder))
    return total


def _check_destination(dest: Path) -> None:
    if dest.exists() or dest.is_symlink():
        raise ServiceError(
            f"{dest} exists already: a backup never overwrites anything. Choose a new name "
            f"(for example {dest.parent / (dest.name + '-2')}) or move the old one away."
        )
    if not dest.parent.is_dir():
        raise ServiceError(f"The folder {dest.parent} does not exist: create it first.")
    if not os.access(dest.parent, os.W_OK | os.X_OK):
        raise ServiceError(
            f"Cannot write to {dest.parent}: choose a folder this user ({os.getuid()}) may "
            "write to, or change its permissions."
        )
    needed, free = _state_size(), shutil.disk_usage(dest.parent).free
    if needed > free:
        raise ServiceError(
            f"Not enough space in {dest.parent}: the backup needs about "
            f"{human_bytes(needed)}, {human_bytes(free)} is free. Free some space or "
            "choose a destination on another disk."
        )


def backup_create(*, dest: Path) -> dict:
    """Write a backup of the running studio to the new directory `dest`; return its manifest.

    It is written under a hidden temporary name beside `dest` and renamed at the end, so
    a backup that failed or was interrupted never looks complete (and is removed).
    """
    dest = Path(os.path.abspath(dest))
    if not _postgres() and not _sqlite_path().is_file():
        raise ServiceError(
            f"There is no database at {_sqlite_path()}: set DATA_DIR (or DATABASE_URL) to "
            "the studio's own, as it runs with."
        )
    _check_destination(dest)
    partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        manifest = _write(partial)
        if dest.exists():
            raise ServiceError(f"{dest} appeared while the backup was written: choose a new name.")
        os.rename(partial, dest)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise ServiceError(
            f"The backup failed and nothing was kept: {exc.strerror or exc} "
            f"({exc.filename or dest.parent}). "
            + (
                "Free some space or choose another disk, then try again."
                if exc.errno == 28
                else "Fix that, then try again."
            )
        ) from exc
    except sqlite3.Error as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise ServiceError(
            f"The backup failed and nothing was kept: the database answered {exc}. "
            "Try again; if it persists, check the database file with sqlite3."
        ) from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _write(partial: Path) -> dict:
    data = Path(settings.DATA_DIR)
    created_at = datetime.now(UTC).isoformat()
    database, run_ids, counts = _database_copy(partial)
    copy = partial / "data"
    copy.mkdir()
    for key in KEYS:
        if (data / key).is_file():
            shutil.copyfile(data / key, copy / key)
    blobs = data / "blobs"
    if blobs.is_dir():
        for blob in _files(blobs):
            if not blob.name.startswith(".part-"):
                target = copy / blob.relative_to(data)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(blob, target)
    runs_app = apps.get_app_config("runs")
    for run_id in run_ids:
        if (data / "logs" / str(run_id)).is_dir():
            runs_app.backup_log_folder(run_id, copy / "logs" / str(run_id))  # type: ignore[attr-defined]
    files = {}
    for path in _files(partial):
        path.chmod(0o600)
        files[path.relative_to(partial).as_posix()] = {
            "sha256": _sha256(path),
            "size": path.stat().st_size,
        }
    for folder in (p for p in partial.rglob("*") if p.is_dir()):
        folder.chmod(0o700)
    counts["blobs"] = sum(1 for name in files if name.startswith("data/blobs/"))
    manifest = {
        "format": FORMAT,
        "created_at": created_at,
        "database": {"engine": "postgresql" if _postgres() else "sqlite", "file": database},
        # Keys the studio read from its environment rather than DATA_DIR: the restored
        # studio needs the same values set.
        "keys_from_environment": [n for n in ("SECRET_KEY", "FERNET_KEYS") if os.getenv(n)],
        "counts": counts,
        "files": files,
    }
    path = partial / MANIFEST
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    return manifest


def manifest_verify(*, source: Path) -> dict:
    """The backup's manifest once every file it lists is there with its SHA-256."""
    damaged = f"The backup {source} is damaged or incomplete"
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise ServiceError(
            f"{source} is not a complete Trainyard backup: it has no {MANIFEST} (a backup "
            "that was interrupted has none). Nothing was restored; use another backup."
        ) from exc
    except (OSError, ValueError) as exc:
        raise ServiceError(f"{damaged}: cannot read {MANIFEST} ({exc}).") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ServiceError(
            f"{source} is a backup of another format than this Trainyard reads ({FORMAT}): "
            "restore it with the Trainyard version that wrote it."
        )
    for name, entry in manifest["files"].items():
        path = source / name
        if ".." in Path(name).parts or not path.is_file():
            raise ServiceError(f"{damaged}: {name} is missing. Nothing was restored.")
        if path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
            raise ServiceError(
                f"{damaged}: {name} is not what was backed up (its SHA-256 differs). "
                "Nothing was restored; use another backup."
            )
    return manifest


def _holds_state() -> list[str]:
    """What in DATA_DIR and the database would a restore overwrite; [] for a fresh studio
    (whose generated keys, never used, the backup's replace)."""
    data = Path(settings.DATA_DIR)
    found = []
    if (data / "blobs").is_dir() and any(_files(data / "blobs")):
        found.append(str(data / "blobs"))
    if (data / "logs").is_dir() and any(p.name.isdigit() for p in (data / "logs").iterdir()):
        found.append(str(data / "logs"))
    if _postgres():
        if connection.introspection.table_names():
            found.append(f"the database {connection.settings_dict['NAME']}")
    elif _sqlite_path().exists() and _sqlite_path().stat().st_size > 0:
        found.append(str(_sqlite_path()))
    return found


def backup_restore(*, source: Path) -> dict:
    """Restore the backup at `source` into this fresh DATA_DIR and database."""
    source = Path(os.path.abspath(source))
    if not source.is_dir():
        raise ServiceError(f"{source} is not a folder: give the path of a backup's folder.")
    found = _holds_state()
    if found:
        raise ServiceError(
            f"This studio is not empty ({', '.join(found)}): a restore never overwrites "
            "one. Stop Trainyard, point DATA_DIR at a new empty folder (and DATABASE_URL at "
            "a new empty database if you use PostgreSQL), and run restore again."
        )
    manifest = manifest_verify(source=source)
    engine = "postgresql" if _postgres() else "sqlite"
    if manifest["database"]["engine"] != engine:
        raise ServiceError(
            f"The backup holds a {manifest['database']['engine']} database and this studio "
            f"uses {engine}: set DATABASE_URL to match it, then run restore again."
        )
    try:
        _restore(source, manifest, engine)
    except OSError as exc:
        raise ServiceError(
            f"The restore stopped half-way: {exc.strerror or exc} ({exc.filename}). Fix "
            "that, empty DATA_DIR (and the database), and run restore again."
        ) from exc
    return manifest


def _restore(source: Path, manifest: dict, engine: str) -> None:
    data = Path(settings.DATA_DIR)
    for name in manifest["files"]:
        if not name.startswith("data/"):
            continue
        target = data / name.removeprefix("data/")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = target.with_name(f".{target.name}.restoring")
        shutil.copyfile(source / name, partial)
        partial.chmod(0o600)
        os.replace(partial, target)
    database = source / manifest["database"]["file"]
    if engine == "postgresql":
        _pg_tool(
            [
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                f"--dbname={connection.settings_dict['NAME']}",
                str(database),
            ]
        )
    else:
        target = _sqlite_path()
        partial = target.with_name(f".{target.name}.restoring")
        shutil.copyfile(database, partial)
        partial.chmod(0o600)
        for leftover in (target.with_name(target.name + s) for s in ("-wal", "-shm")):
            leftover.unlink(missing_ok=True)
        os.replace(partial, target)
