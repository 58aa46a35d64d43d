"""The local target: runs execute as processes on the Trainyard server itself.

Snapshot blobs are already here, so nothing is uploaded, and status and
output are read straight from the run's files instead of through a shell.
The control scripts get none of the studio's environment, and the run's own
code executes in a sandbox as an unprivileged account (compute/sandbox.py).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

from django.conf import settings

from compute import sandbox
from compute.backends.base import STREAMS, BackendError, Handle, LaunchSpec, Poll
from compute.backends.posix import POLL_LIMIT, PosixBackend, posix_handle

# What the control scripts keep of the studio's environment: nothing that could hold a
# secret (DATABASE_URL, SECRET_KEY, FERNET_KEYS, tokens).
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "DOCKER_HOST")


class LocalBackend(PosixBackend):
    def __init__(self) -> None:
        self.root = str(Path(settings.DATA_DIR) / "local-target")

    def describe(self) -> str:
        return "the local target"

    def blob_dir(self) -> str:
        return str(settings.BLOB_DIR)

    def exec(self, script_text, args, *, stdin=None, timeout=60):
        result = self._sh(script_text, args, timeout, input=stdin, capture_output=True)
        return result.returncode, result.stdout, result.stderr

    def exec_into(self, out, script_text, args, *, timeout=60):
        result = self._sh(
            script_text, args, timeout, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE
        )
        return result.returncode, result.stderr

    def _sh(self, script_text, args, timeout, **streams) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                ["sh", "-c", script_text, "sh", *args],
                timeout=timeout,
                cwd=self.root if os.path.isdir(self.root) else None,
                env={name: os.environ[name] for name in KEPT_ENVIRONMENT if name in os.environ},
                **streams,
            )
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"A command on the local target took over {timeout} s.") from exc

    def sandbox_lines(self, spec: LaunchSpec, run_dir: str, env_dir: str) -> list[str]:
        account = sandbox.run_account()
        if account is None or sandbox.isolation_problem():
            return super().sandbox_lines(spec, run_dir, env_dir)
        ctl, wd = f"{run_dir}/ctl", f"{run_dir}/wd"
        inputs = [f"{ctl}/lib", f"{ctl}/requirements.txt", f"{ctl}/environment.yml"]
        run = sandbox.sandbox_command(
            workdir=wd,
            writable=[wd, f"{ctl}/metrics"],
            readable=[*inputs, *([env_dir] if env_dir else [])],
        )
        build = sandbox.sandbox_command(
            workdir=env_dir or wd, writable=[env_dir] if env_dir else [], readable=inputs
        )
        return [
            _function("sandboxed", run),
            _function("sandboxed_build", build),
            f"RUN_OWNER={account.uid}:{account.gid}",
        ]

    def put_tar(self, dest, data):
        Path(dest).mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=BytesIO(data)) as tar:
            tar.extractall(dest, filter="data")

    def ensure_root(self) -> None:
        Path(self.root).mkdir(parents=True, exist_ok=True)

    def missing_blobs(self, manifest, local_blob):
        # The run reads the snapshot straight from the control plane's blob store.
        return {}, {"uploaded_files": 0, "uploaded_bytes": 0, "reused_files": len(manifest)}

    def poll(self, handle: Handle, offsets: dict[str, int]) -> Poll:
        ctl = Path(posix_handle(handle).run_dir) / "ctl"
        pgid = _read_int(ctl / "pid") or 0
        alive = pgid > 0 and _group_alive(pgid)
        exit_code = _read_int(ctl / "exit_code")
        chunks = {}
        for name in STREAMS:
            try:
                with open(ctl / name, "rb") as f:
                    # An offset past the end (another rank's metrics) reads no bytes.
                    f.seek(min(offsets.get(name, 0), os.fstat(f.fileno()).st_size))
                    chunks[name] = f.read(POLL_LIMIT)
            except FileNotFoundError:
                chunks[name] = b""
        if exit_code is not None:
            state = "exited"
        elif alive or pgid == 0:
            state = "running"
        else:
            state = "lost"
        return Poll(
            state=state, exit_code=exit_code, started=(ctl / "started").exists(), chunks=chunks
        )

    def cleanup(self, handle: Handle) -> None:
        shutil.rmtree(posix_handle(handle).run_dir, ignore_errors=True)


def _function(name: str, prefix: list[str]) -> str:
    """A shell function that runs its arguments behind `prefix` (bwrap ... setpriv --), in a
    session of its own: cancel.sh signals the run's processes by their mark, which only the
    sandboxed ones carry, so bwrap lives on to report how the script exited."""
    sandboxed = shlex.join(["setsid", "-w", *prefix])
    return (
        f"{name}() {{ env -u TRAINYARD_RUN_MARK {sandboxed} "
        'env TRAINYARD_RUN_MARK="$TRAINYARD_RUN_MARK" "$@"; }'
    )


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
