"""The one small interface every compute backend offers to runs, and what it passes around."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    run_id: int
    manifest: list[list]
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
