"""A throwaway PostgreSQL cluster on a free loopback port, for running the suite on PostgreSQL.

    python -m tests.services.postgres start DIR   # prints DATABASE_URL
    python -m tests.services.postgres stop DIR

As root, the server runs as the `postgres` user (PostgreSQL refuses root), so
DIR's parents must be traversable by that user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tests.services.sshd import free_port

USER = "trainyard"
PASSWORD = "trainyard"
DATABASE = "trainyard"


def _bin(name: str) -> str:
    # Debian installs the server binaries per major version, off PATH.
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4])
    )
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed: run scripts/test-system-deps.sh as root")
    return candidates[-1]


def _run(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    command = list(args)
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    result = subprocess.run(command, cwd=data_dir, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def start_postgres(data_dir: str | os.PathLike) -> str:
    """Initialise (first time) and start a cluster under data_dir; return its DATABASE_URL."""
    data_dir = Path(data_dir).resolve()
    pgdata = data_dir / "pgdata"
    url_file = data_dir / "url"
    if url_file.exists() and _is_running(data_dir):
        return url_file.read_text().strip()

    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
    if not (pgdata / "PG_VERSION").exists():
        password_file = data_dir / "password"
        password_file.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, "postgres", "postgres")
        _run(
            data_dir,
            _bin("initdb"),
            "--pgdata",
            str(pgdata),
            "--username",
            USER,
            "--pwfile",
            str(password_file),
            "--auth-local",
            "trust",
            "--auth-host",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-sync",  # a throwaway cluster need not survive a power cut
        )
        password_file.unlink()

    port = free_port()
    _start_server(data_dir, port)
    databases = _run(
        data_dir,
        _bin("psql"),
        "-h",
        str(data_dir),
        "-p",
        str(port),
        "-U",
        USER,
        "-d",
        "postgres",
        "-tAc",
        "SELECT datname FROM pg_database",
    )
    if DATABASE not in databases.stdout.split():
        _run(data_dir, _bin("createdb"), "-h", str(data_dir), "-p", str(port), "-U", USER, DATABASE)

    url = f"postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"
    url_file.write_text(url + "\n")
    return url


def _start_server(data_dir: Path, port: int) -> None:
    # Sockets in data_dir, not /var/run/postgresql: no clash with a system server.
    options = f"-p {port} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
    _run(
        data_dir,
        _bin("pg_ctl"),
        "--pgdata",
        str(data_dir / "pgdata"),
        "--log",
        str(data_dir / "postgres.log"),
        "--options",
        options,
        "--wait",
        "start",
    )


def start_postgres_again(data_dir: str | os.PathLike) -> None:
    """Start a cluster stopped by `stop_postgres` on the port it had."""
    data_dir = Path(data_dir).resolve()
    _start_server(data_dir, int(urlsplit((data_dir / "url").read_text().strip()).port or 0))


def stop_postgres(data_dir: str | os.PathLike) -> None:
    data_dir = Path(data_dir).resolve()
    if _is_running(data_dir):
        _run(
            data_dir,
            _bin("pg_ctl"),
            "--pgdata",
            str(data_dir / "pgdata"),
            "--mode",
            "fast",
            "--wait",
            "stop",
        )


def _is_running(data_dir: Path) -> bool:
    pgdata = data_dir / "pgdata"
    if not (pgdata / "PG_VERSION").exists():
        return False
    try:
        _run(data_dir, _bin("pg_ctl"), "--pgdata", str(pgdata), "status")
    except RuntimeError:
        return False
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.services.postgres start|stop DIR", file=sys.stderr)
        return 2
    command, data_dir = argv
    if command == "start":
        print(start_postgres(data_dir))
    else:
        stop_postgres(data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
