"""The one small interface every compute backend offers to runs, and what it passes around."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

# The files a run writes on its target, in the order a poll returns them.
# `prepare` is the snapshot unpacking and environment build, `metrics` the
# JSON lines of the trainyard helper; the others are the script's output.
STREAMS = ("prepare", "stdout", "stderr", "metrics")
LOG_STREAMS = ("prepare", "stdout", "stderr")


class BackendError(Exception):
    """The target could not do what was asked; the message says what to check.

    `unreachable` marks failures to reach the target at all (the run may be
    fine there), as opposed to the target refusing or failing the request.
    """

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.message = message
        self.unreachable = unreachable


@dataclass
class LaunchSpec:
    """Everything a backend needs to know of the run it prepares and launches."""

    run_id: int
    manifest: list[list]
    # The manifest as the target's materialize.py reads it (runs.snapshots.manifest_text).
    manifest_file: bytes
    # Where this server keeps the snapshot blob of a sha256.
    local_blob: Callable[[str], Path]
    entry_script: str
    arguments: list[str] = field(default_factory=list)
    # "" (use `interpreter` as it is), "pip" or "conda" (build once per env_hash).
    env_kind: str = ""
    env_name: str = ""
    env_hash: str = ""
    interpreter: str = "python3"
    pip_requirements: str = ""
    conda_yaml: str = ""
    conda: str = "conda"
    docker_image: str = ""
    # The container gets every GPU of the target.
    docker_gpus: bool = False
    # The Python that unpacks the snapshot and builds venvs, outside any container.
    host_python: str = "python3"
    # This Trainyard installation: installations (or test sessions) sharing a
    # target or a Docker engine must not mistake each other's runs for their own.
    instance: str = ""
    # Environment variables of this process of the run (a multi-node run's rank, master).
    env: dict[str, str] = field(default_factory=dict)
    # A pipeline step's settings for its cloud service (task kind, cluster, pool, command...).
    step: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The run's name on the target: its run directory and container are called after it."""
        return f"{self.instance}-{self.run_id}" if self.instance else str(self.run_id)

    @property
    def container_name(self) -> str:
        return f"trainyard-run-{self.key}"


@dataclass
class Poll:
    """What one look at a run found: `running`, `exited` (with exit_code) or `lost`."""

    state: str
    exit_code: int | None
    started: bool
    chunks: dict[str, bytes]
    # Which process of a multi-node run the state is about (0: the driver).
    rank: int = 0


@dataclass(frozen=True)
class RunHandle:
    """How the monitor finds one process of a run again: what every kind's handle holds.

    Stored as JSON in `Run.handle` (`as_dict`, `handle_load`): rank 0's handle, with the
    other ranks' under `workers`, in rank order.
    """

    # Tells one attempt of a run from the next (after a requeue).
    attempt: str = ""
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    reused_files: int = 0
    # The cluster node carrying this rank (None off clusters).
    node_id: int | None = None
    # Where this attempt's output starts, per stream: (target offset, stored offset).
    log_offsets: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    workers: tuple[Handle, ...] = ()

    @property
    def launched(self) -> bool:
        raise NotImplementedError

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "uploaded_files": self.uploaded_files,
            "uploaded_bytes": self.uploaded_bytes,
            "reused_files": self.reused_files,
            "attempt": self.attempt,
            "node_id": self.node_id,
            "log_offsets": {s: list(pair) for s, pair in self.log_offsets.items()},
        }
        if self.workers:
            data["workers"] = [worker.as_dict() for worker in self.workers]
        return data

    @staticmethod
    def common(data: Mapping[str, Any]) -> dict[str, Any]:
        """The fields every kind's handle stores, from its JSON (absent keys: defaults)."""
        node_id = data.get("node_id")
        return {
            "attempt": data.get("attempt", ""),
            "uploaded_files": data.get("uploaded_files", 0),
            "uploaded_bytes": data.get("uploaded_bytes", 0),
            "reused_files": data.get("reused_files", 0),
            "node_id": None if node_id is None else int(node_id),
            "log_offsets": {
                stream: (int(pair[0]), int(pair[1]))
                for stream, pair in (data.get("log_offsets") or {}).items()
            },
        }


@dataclass(frozen=True)
class PosixHandle(RunHandle):
    """A run's process on a machine (local, VM, head node, cluster node)."""

    # runs/<key> under the target's root: ctl/ and wd/.
    run_dir: str = ""
    root: str = ""
    # The run's process group, once launched.
    pgid: int | None = None
    # The run's Docker container, when its environment is an image.
    container: str = ""

    @property
    def launched(self) -> bool:
        return self.pgid is not None

    def as_dict(self) -> dict[str, Any]:
        data = {**super().as_dict(), "run_dir": self.run_dir, "root": self.root}
        if self.pgid is not None:
            # Only a launched run has a pgid: the monitor follows the runs that have one.
            data.update(pgid=self.pgid, container=self.container)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PosixHandle:
        pgid = data.get("pgid")
        return cls(
            **cls.common(data),
            workers=tuple(cls.from_dict(w) for w in data.get("workers", ())),
            run_dir=data.get("run_dir", ""),
            root=data.get("root", ""),
            pgid=None if pgid is None else int(pgid),
            container=data.get("container", ""),
        )


@dataclass(frozen=True)
class CloudHandle(RunHandle):
    """A run that is a job of a cloud service (Databricks, Batch, Data Lake)."""

    # The service client's own handle of the job (compute/cloud/), once submitted.
    job: dict[str, Any] | None = None
    # The line saying where the job was submitted, first in the run's `prepare` log.
    submitted: str = ""

    @property
    def launched(self) -> bool:
        return self.job is not None

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        if self.job is not None:
            # Only a submitted run has a job: the monitor follows the runs that have one.
            data.update(job=self.job, submitted=self.submitted)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CloudHandle:
        return cls(
            **cls.common(data),
            workers=tuple(cls.from_dict(w) for w in data.get("workers", ())),
            job=data.get("job"),
            submitted=data.get("submitted", ""),
        )


Handle = PosixHandle | CloudHandle


class Backend(Protocol):
    """What the run services and the run monitor ask of a target, whatever its kind."""

    def ensure_root(self) -> None:
        """Reach the target (BackendError if it cannot be) and know where runs live there."""

    def prepare(self, spec: LaunchSpec) -> Handle:
        """Upload what the target lacks of the run; the handle to launch it with."""
        ...

    def launch(self, spec: LaunchSpec, handle: Handle) -> Handle:
        """Start the run detached; the handle the monitor follows it with."""
        ...

    def poll(self, handle: Handle, offsets: dict[str, int]) -> Poll:
        """The run's state and the bytes after `offsets` of each stream, in one round trip."""
        ...

    def cancel(self, handle: Handle, grace_seconds: int) -> int:
        """Stop the run (gracefully, then not); the processes left (0: all gone)."""
        ...

    def collect(self, handle: Handle, out: BinaryIO, refused: Callable[[str], str]) -> list[str]:
        """Write a tar of the run's ./outputs and ./logs into `out`; the files left out, each
        with why (`refused(name)` says why a name is not kept, "" when it is)."""
        ...

    def cleanup(self, handle: Handle) -> None:
        """Remove what the run left on the target."""

    def free_port(self) -> int:
        """A TCP port free on the target now, for a multi-node run's rank 0 to listen on."""
        ...
