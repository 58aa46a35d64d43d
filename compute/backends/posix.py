"""How a run executes on any POSIX target, written once.

A backend only has to run a shell script on its target (`exec`) and unpack a
tar there (`put_tar`); this module does the rest with the scripts in
`files/`: upload only the snapshot blobs the target lacks, write the run's
control files, start `run.sh` detached in its own session and process group,
read its status and new output in one round trip, stop it, and collect its
outputs.

Layout on a target, under its root:
    blobs/<aa>/<sha256>       snapshot blobs, shared by every run
    envs/<hash>/              built environments, shared by runs with that definition
    runs/<run id>/ctl/        config.sh, manifest.json, pid, started, exit_code,
                              prepare, stdout, stderr, metrics, lib/trainyard
    runs/<run id>/wd/         the snapshot, the script's working directory
"""

from __future__ import annotations

import io
import secrets
import shlex
import tarfile
import time
from pathlib import Path
from typing import BinaryIO

from compute.backends.base import STREAMS, BackendError, LaunchSpec, Poll
from runs.snapshots.capture import manifest_text

FILES = Path(__file__).resolve().parent / "files"
# Bytes read per stream per poll: bounds memory while a run prints very fast.
POLL_LIMIT = 8 * 1024 * 1024
# Copying a run's ./outputs and ./logs off the target, however big they are.
COLLECT_TIMEOUT = 3600


def script(name: str) -> str:
    return (FILES / name).read_text()


def tar_bytes(files: dict[str, bytes | Path], modes: dict[str, int] | None = None) -> bytes:
    """A tar of `files` (relative path → content or local file)."""
    buffer = io.BytesIO()
    modes = modes or {}
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = int(time.time())
            info.mode = modes.get(name, 0o644)
            if isinstance(content, Path):
                info.size = content.stat().st_size
                with open(content, "rb") as f:
                    tar.addfile(info, f)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def helper_files() -> dict[str, bytes | Path]:
    """The control scripts and the `trainyard` helper package, as paths under ctl/."""
    files: dict[str, bytes | Path] = {name: FILES / name for name in ("run.sh", "materialize.py")}
    for path in sorted((FILES / "lib").rglob("*.py")):
        files[str(path.relative_to(FILES))] = path
    return files


def parse_poll(out: bytes) -> Poll:
    header, _, body = out.partition(b"\n")
    fields = header.decode().split()
    if len(fields) != 4 + len(STREAMS):
        raise BackendError(f"Unexpected answer from the target while polling: {header[:200]!r}")
    pgid, alive, code, started = fields[:4]
    chunks: dict[str, bytes] = {}
    position = 0
    for name, count in zip(STREAMS, fields[4:], strict=True):
        n = int(count)
        chunks[name] = body[position : position + n]
        position += n
    exit_code = None if code == "-" else int(code)
    if exit_code is not None:
        state = "exited"
    elif alive == "1" or pgid == "0":
        # pgid 0: launch.sh has not seen the pid file yet; the run is starting.
        state = "running"
    else:
        state = "lost"
    return Poll(state=state, exit_code=exit_code, started=started == "1", chunks=chunks)


class PosixBackend:
    """The shared logic; subclasses provide the transport."""

    kind = "posix"
    # Where blobs and runs live on the target; subclasses set or compute it.
    root: str = ""

    # --- transport (subclasses) ------------------------------------------------------

    def exec(
        self, script_text: str, args: list[str], *, stdin: bytes | None = None, timeout: float = 60
    ) -> tuple[int, bytes, bytes]:
        """Run `sh -c script_text sh args...` on the target: (exit code, stdout, stderr)."""
        raise NotImplementedError

    def exec_into(
        self, out: BinaryIO, script_text: str, args: list[str], *, timeout: float = 60
    ) -> tuple[int, bytes]:
        """Like exec, with stdout written into the file `out` as it arrives (a run's outputs
        can be gigabytes): (exit code, stderr)."""
        raise NotImplementedError

    def put_tar(self, dest: str, data: bytes) -> None:
        """Unpack the tar `data` into the directory `dest` on the target (created if needed)."""
        code, _, err = self.exec(
            'mkdir -p "$1" && tar -xf - -C "$1"', [dest], stdin=data, timeout=600
        )
        if code != 0:
            raise BackendError(f"Could not unpack files into {dest} on the target: {_tail(err)}")

    def blob_dir(self) -> str:
        return f"{self.root}/blobs"

    def describe(self) -> str:
        return self.kind

    # --- checks ----------------------------------------------------------------------

    def run_script(self, name: str, args: list[str], timeout: float = 60) -> bytes:
        code, out, err = self.exec(script(name), args, timeout=timeout)
        if code != 0:
            raise BackendError(
                f"{name} failed on {self.describe()} (exit code {code}): {_tail(err or out)}"
            )
        return out

    # --- the interface ---------------------------------------------------------------

    def run_dir(self, key: str) -> str:
        return f"{self.root}/runs/{key}"

    def blobs_present(self) -> set[str]:
        code, out, _ = self.exec(
            'mkdir -p "$1" && cd "$1" && find . -type f ! -name ".*"', [self.blob_dir()]
        )
        if code != 0:
            return set()
        return {line.rsplit("/", 1)[-1] for line in out.decode().split()}

    def missing_blobs(self, manifest: list[list], local_blob) -> tuple[dict, dict]:
        """The blobs of `manifest` the target lacks (tar path → file), and the counts."""
        wanted = {sha: size for _, sha, size, _ in manifest}
        present = self.blobs_present()
        missing = sorted(sha for sha in wanted if sha not in present)
        files = {f"blobs/{sha[:2]}/{sha}": local_blob(sha) for sha in missing}
        return files, {
            "uploaded_files": len(missing),
            "uploaded_bytes": sum(wanted[sha] for sha in missing),
            "reused_files": len(wanted) - len(missing),
        }

    def config_sh(self, spec: LaunchSpec, run_dir: str) -> str:
        env_root = f"{self.root}/envs"
        env_dir = f"{env_root}/{spec.env_hash}" if spec.env_kind in ("pip", "conda") else ""
        python = f"{env_dir}/bin/python" if env_dir and not spec.docker_image else spec.interpreter
        values = {
            "RUN_ID": str(spec.run_id),
            "BLOBS": self.blob_dir(),
            "HOST_PYTHON": spec.host_python,
            "PYTHON": python,
            "ENTRY": spec.entry_script,
            "ENV_KIND": "" if spec.docker_image else spec.env_kind,
            "ENV_NAME": spec.env_name,
            "ENV_HASH": spec.env_hash,
            "ENV_ROOT": env_root,
            "ENV_DIR": env_dir,
            "CONDA": spec.conda,
            "DOCKER_IMAGE": spec.docker_image,
            "DOCKER_GPUS": "all" if spec.docker_gpus else "",
            "CONTAINER": spec.container_name if spec.docker_image else "",
        }
        lines = [f"{key}={shlex.quote(value)}" for key, value in values.items()]
        lines += [f"export {key}={shlex.quote(value)}" for key, value in spec.env.items()]
        lines.append(f"set -- {shlex.join(spec.arguments)}" if spec.arguments else "set --")
        lines += self.sandbox_lines(spec, run_dir, env_dir)
        return "\n".join(lines) + "\n"

    def sandbox_lines(self, spec: LaunchSpec, run_dir: str, env_dir: str) -> list[str]:
        """Shell definitions of how run.sh starts the run's own code: `sandboxed CMD...` for
        the script, `sandboxed_build CMD...` for an environment build, and RUN_OWNER, the
        uid:gid its files must belong to ("" for the target's own user)."""
        return ['sandboxed() { "$@"; }', 'sandboxed_build() { "$@"; }', "RUN_OWNER="]

    def prepare(self, spec: LaunchSpec, local_blob) -> dict:
        """Upload the missing snapshot blobs and the run's control files, in one transfer."""
        self.ensure_root()
        files, transfer = self.missing_blobs(spec.manifest, local_blob)
        run_dir = self.run_dir(spec.key)
        ctl = f"runs/{spec.key}/ctl"
        for name, content in {**helper_files(), **self.control_files(spec)}.items():
            files[f"{ctl}/{name}"] = content
        files[f"{ctl}/config.sh"] = self.config_sh(spec, run_dir).encode()
        files[f"{ctl}/manifest"] = manifest_text(spec.manifest)
        files[f"{ctl}/requirements.txt"] = spec.pip_requirements.encode()
        files[f"{ctl}/environment.yml"] = spec.conda_yaml.encode()
        self.put_tar(self.root, tar_bytes(files))
        # Tells the monitor apart one attempt of a run from the next (after a requeue).
        attempt = secrets.token_hex(4)
        return {**transfer, "run_dir": run_dir, "root": self.root, "attempt": attempt}

    def control_files(self, spec: LaunchSpec) -> dict[str, bytes | Path]:
        """Files a kind of target adds to the run's ctl/ directory (name → content)."""
        return {}

    def ensure_root(self) -> None:
        """Reach the target (raising BackendError if it cannot be) and know its root."""

    def launch(self, spec: LaunchSpec, handle: dict) -> dict:
        """Start the run detached; returns the handle the monitor follows it with."""
        out = self.run_script("launch.sh", [handle["run_dir"]], timeout=30)
        try:
            pgid = int(out.decode().split()[-1])
        except (ValueError, IndexError):
            raise BackendError(
                f"The run did not report its process on {self.describe()}."
            ) from None
        return {
            **handle,
            "pgid": pgid,
            "container": spec.container_name if spec.docker_image else "",
        }

    def poll(self, handle: dict, offsets: dict[str, int]) -> Poll:
        """Status and the bytes after `offsets` of each stream, in one round trip."""
        args = [handle["run_dir"], str(POLL_LIMIT), *(str(offsets.get(s, 0)) for s in STREAMS)]
        return parse_poll(self.run_script("poll.sh", args))

    def stream(self, handle: dict, offsets: dict[str, int]) -> dict[str, bytes]:
        return self.poll(handle, offsets).chunks

    def status(self, handle: dict) -> Poll:
        return self.poll(handle, {s: 1 << 62 for s in STREAMS})

    def cancel(self, handle: dict, grace_seconds: int) -> int:
        """SIGTERM the run's process group, wait, SIGKILL; returns processes left (0 = gone)."""
        args = [handle["run_dir"], str(grace_seconds), handle.get("container", "")]
        out = self.run_script("cancel.sh", args, timeout=grace_seconds + 60)
        return int(out.decode().split()[-1])

    def collect(self, handle: dict, out: BinaryIO) -> list[str]:
        """Write a tar of the run's ./outputs and ./logs into `out`, as it arrives; the tar
        says what each entry is (links stay links), so nothing is left out here."""
        code, err = self.exec_into(
            out,
            'cd "$1/wd" 2>/dev/null || exit 0; '
            'set --; for d in outputs logs; do [ -d $d ] && set -- "$@" $d; done; '
            '[ $# -gt 0 ] && tar -cf - "$@"; exit 0',
            [handle["run_dir"]],
            timeout=COLLECT_TIMEOUT,
        )
        if code != 0:
            raise BackendError(f"Collecting outputs failed on {self.describe()}: {_tail(err)}")
        return []

    def cleanup(self, handle: dict) -> None:
        self.exec('rm -rf "$1"', [handle["run_dir"]], timeout=120)


def _tail(data: bytes, lines: int = 5) -> str:
    text = data.decode(errors="replace").strip()
    return "\n".join(text.splitlines()[-lines:]) or "no output"
