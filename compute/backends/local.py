"""The local target: runs execute as processes on the Trainyard server itself.

Snapshot blobs are already here, so nothing is uploaded, and status and
output are read straight from the run's files instead of through a shell.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

from django.conf import settings

from compute.backends.base import STREAMS, BackendError, Poll
from compute.backends.posix import POLL_LIMIT, PosixBackend
from compute.ssh import gpu_fact


class LocalBackend(PosixBackend):
    kind = "local"

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
                **streams,
            )
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"A command on the local target took over {timeout} s.") from exc

    def put_tar(self, dest, data):
        Path(dest).mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=BytesIO(data)) as tar:
            tar.extractall(dest, filter="data")

    def ensure_root(self) -> None:
        Path(self.root).mkdir(parents=True, exist_ok=True)

    def missing_blobs(self, manifest, local_blob):
        # The run reads the snapshot straight from the control plane's blob store.
        return {}, {"uploaded_files": 0, "uploaded_bytes": 0, "reused_files": len(manifest)}

    def check(self) -> dict:
        usage = shutil.disk_usage(settings.DATA_DIR)
        return {
            "system": platform.system(),
            "os_name": platform.platform(),
            "cpus": os.cpu_count(),
            "python3": shutil.which("python3"),
            "docker": shutil.which("docker"),
            "disk_free_mib": usage.free // (1024 * 1024),
            "gpus": _gpus(),
        }

    def poll(self, handle, offsets):
        ctl = Path(handle["run_dir"]) / "ctl"
        pgid = _read_int(ctl / "pid") or 0
        alive = pgid > 0 and _group_alive(pgid)
        exit_code = _read_int(ctl / "exit_code")
        chunks = {}
        for name in STREAMS:
            try:
                with open(ctl / name, "rb") as f:
                    # status() asks from far past the end: no bytes, only the state.
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

    def cleanup(self, handle):
        shutil.rmtree(handle["run_dir"], ignore_errors=True)


def _gpus() -> list[dict]:
    """The NVIDIA GPUs of this machine, as nvidia-smi lists them (none without it)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [gpu_fact(line) for line in result.stdout.splitlines() if result.returncode == 0]


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
