"""Managed-cluster nodes: a run executes inside its node's container, through `docker exec`."""

from __future__ import annotations

import io
import time

import requests
from docker.errors import DockerException, NotFound

from compute.backends.base import BackendError, LaunchSpec
from compute.backends.posix import PosixBackend
from compute.cluster.node_exec import node_exec
from compute.cluster.scheduler import node_docker, node_restarted

NODE_ROOT = "/var/lib/trainyard"
# A run's code on a node executes as `nobody`, not as the container's root (which is the
# engine host's root): it owns its run's folder and nothing else of the node.
RUN_AS = (
    "env HOME=/tmp setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs "
    "--inh-caps=-all --bounding-set=-all --"
)


class NodeBackend(PosixBackend):
    def __init__(self, target, node) -> None:
        self.target = target
        self.node = node
        self.root = NODE_ROOT

    def describe(self) -> str:
        return f"node {self.node.name} of cluster {self.target.name}"

    def sandbox_lines(self, spec: LaunchSpec, run_dir: str, env_dir: str) -> list[str]:
        return [
            f'sandboxed() {{ {RUN_AS} "$@"; }}',
            f'sandboxed_build() {{ {RUN_AS} "$@"; }}',
            "RUN_OWNER=65534:65534",
        ]

    def container(self):
        try:
            return node_docker(self.node).containers.get(self.node.container_id)
        except NotFound:
            # Unreachable rather than failed: the autoscaler decides whether the node was
            # preempted (the run is requeued) or lost (the run fails), and says why.
            raise BackendError(
                f"The container of {self.describe()} is gone.", unreachable=True
            ) from None
        except (DockerException, OSError, requests.RequestException) as exc:
            raise BackendError(
                f"Cannot reach the Docker engine of {self.describe()}: {exc}", unreachable=True
            ) from None
        except Exception as exc:
            # compute.cluster.engines.EngineError: the engine is unknown or unreachable.
            raise BackendError(str(exc), unreachable=True) from None

    def ensure_root(self) -> None:
        # The root is created with the first upload; this only checks the node is there.
        self.container()

    def exec(self, script_text, args, *, stdin=None, timeout=60):
        if stdin is not None:
            raise ValueError("docker exec here takes no input: use put_tar")
        out = io.BytesIO()
        code, err = self.exec_into(out, script_text, args, timeout=timeout)
        return code, out.getvalue(), err

    def exec_into(self, out, script_text, args, *, timeout=60):
        container = self.container()
        try:
            result = node_exec(container, ["sh", "-c", script_text, "sh", *args], out)
        except (DockerException, OSError, requests.RequestException) as exc:
            raise BackendError(
                f"docker exec on {self.describe()} failed: {exc}", unreachable=True
            ) from None
        code, stderr, head = result.exit_code, result.stderr, result.head
        said = head + stderr
        refused = code == 126 and (b"OCI runtime" in said or b"cannot exec in a" in said)
        if code != 0 and (refused or not self.still_running()):
            # The container stopped under the exec (a preempted node going away: the exec
            # is killed, or the runtime refuses it): whether the run is requeued or failed
            # is the autoscaler's call, as for a vanished one.
            raise BackendError(f"The container of {self.describe()} stopped.", unreachable=True)
        return code, stderr

    def poll(self, handle, offsets):
        poll = super().poll(handle, offsets)
        if poll.state == "lost" and node_restarted(self.node, self.container()):
            # The engine restarted the container, and the run's processes died with it:
            # the autoscaler requeues the run and replaces the node, saying why.
            raise BackendError(f"The container of {self.describe()} restarted.", unreachable=True)
        return poll

    def still_running(self, seconds: float = 2.0) -> bool:
        """Whether the node's container still runs a moment after a command in it failed:
        a container being removed kills its commands before it stops itself."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                if self.container().status != "running":
                    return False
            except BackendError:
                return False
            if time.monotonic() >= deadline:
                return True
            time.sleep(0.2)

    def put_tar(self, dest, data):
        container = self.container()
        try:
            try:
                container.put_archive(dest, data)
            except NotFound:
                # The first run on this node: its root does not exist yet.
                self.exec('mkdir -p "$1"', [dest])
                container.put_archive(dest, data)
        except (DockerException, OSError, requests.RequestException) as exc:
            raise BackendError(
                f"Copying files to {self.describe()} failed: {exc}", unreachable=True
            ) from None
