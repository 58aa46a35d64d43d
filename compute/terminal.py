"""Interactive shells for the terminal page: on a VM or head node, a cluster node, or a run.

On an SSH target the shell is a pty over the pooled connection: it holds one
session slot for as long as it is open, so the pool keeps the connection while
a terminal uses it. On a managed-cluster node it is a `docker exec` with a tty,
as `nobody` like the runs there (the container's root is the engine host's).
A run's terminal opens in the run's working directory on its VM or node (rank
0's for a multi-node run). What goes through a shell is never logged.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
from dataclasses import dataclass

import paramiko
import requests
from docker.errors import DockerException

from compute import ssh
from compute.backends import BackendError, PosixHandle, handle_load
from compute.backends.cluster import RUN_AS, NodeBackend
from compute.models import ComputeKind, ComputeState, ComputeTarget, Node, NodeState
from compute.vm import services
from studio.models import Membership, Role

# Bounds on what a client may ask of the pty.
MAX_COLUMNS = 500
MAX_ROWS = 200
OPEN_TIMEOUT = 20.0
READ_BYTES = 32 * 1024


class TerminalError(Exception):
    """A terminal that cannot be opened; the message says what to do instead."""


@dataclass
class Place:
    """Where a terminal opens: a target, maybe one of its nodes, maybe a run's directory."""

    target: ComputeTarget
    node: Node | None = None
    run_id: int | None = None
    directory: str = ""
    problem: str = ""

    @property
    def shell_user(self) -> str:
        return "nobody" if self.node else self.target.username

    @property
    def label(self) -> str:
        where = f"node {self.node.name} of {self.target.name}" if self.node else self.target.name
        return f"run {self.run_id} on {where}" if self.run_id else where


def terminal_problem(target: ComputeTarget, node: Node | None = None) -> str:
    """Why a terminal cannot be opened on `target` (or its `node`); "" when it can."""
    if target.kind == ComputeKind.LOCAL:
        return (
            "The local target has no terminal: a shell there would run as the studio's own "
            "account, with its data and keys. Attach a virtual machine to get one."
        )
    if target.kind == ComputeKind.CLUSTER:
        if node is None:
            return f"Choose a node in the node table of {target.name} to open a terminal on it."
        if node.state not in (NodeState.IDLE, NodeState.RUNNING) or not node.container_id:
            return (
                f"Node {node.name} is {node.get_state_display()}: a terminal opens on an idle "
                "or running node."
            )
        return ""
    if not target.is_ssh:
        return f"A {target.get_kind_display()} target has no terminal."
    if target.state != ComputeState.SUCCEEDED:
        return (
            f"{target.name} is {target.state}: a terminal opens once its check has succeeded "
            "(use Re-check on its page)."
        )
    return ""


def _membership(user, slug: str) -> Membership | None:
    """The user's membership if they are a Contributor or Owner of the workspace."""
    if not user.is_authenticated:
        return None
    membership = (
        Membership.objects.select_related("workspace")
        .filter(workspace__slug=slug, user=user)
        .first()
    )
    return membership if membership and membership.has_role(Role.CONTRIBUTOR) else None


def target_place(user, slug: str, name: str, node_name: str = "") -> Place | None:
    """A terminal on a target (or one of its nodes), or None when `user` may not open one."""
    membership = _membership(user, slug)
    target = (
        membership
        and ComputeTarget.objects.filter(workspace=membership.workspace, name=name).first()
    )
    if not target:
        return None
    node = None
    if node_name:
        node = target.nodes.select_related("engine").filter(name=node_name).first()
        if node is None:
            return Place(target, problem=f"{target.name} has no node {node_name} any more.")
    return Place(target, node=node, problem=terminal_problem(target, node))


def run_has_terminal(run) -> bool:
    """Whether the run page offers a terminal: the run runs on a VM, head node or node."""
    return (
        run.status == "Running"
        and run.target is not None
        and bool(_run_dir(run.target, run.handle))
        and (run.target.is_ssh or run.target.kind == ComputeKind.CLUSTER)
    )


def _run_dir(target: ComputeTarget, data: dict | None) -> str:
    """The run's directory on a machine ("" before it has one, or on a cloud service)."""
    handle = handle_load(target.kind, data)
    return handle.run_dir if isinstance(handle, PosixHandle) else ""


def run_place(user, slug: str, run_id: int) -> Place | None:
    """A terminal in a running run's working directory, or None when `user` may not open one."""
    from runs.models import FINAL_STATUSES, Run

    membership = _membership(user, slug)
    run = membership and (
        Run.objects.select_related("target")
        .filter(workspace=membership.workspace, pk=run_id)
        .first()
    )
    if not run:
        return None
    target = run.target
    handle = handle_load(target.kind, run.handle) if target is not None else None
    if (
        target is None
        or run.status in FINAL_STATUSES
        or not isinstance(handle, PosixHandle)
        or not handle.run_dir
    ):
        problem = (
            f"Run {run.number} of {run.experiment.name} is {run.status}: a terminal opens in "
            "the working directory of a running run."
        )
        return Place(target or ComputeTarget(name=run.target_name), run_id=run.pk, problem=problem)
    node = None
    if target.kind == ComputeKind.CLUSTER:
        node_id = handle.node_id
        node = (
            Node.objects.select_related("engine").filter(pk=node_id).first()
            if node_id is not None
            else None
        )
        if node is None:
            problem = f"The node that runs this run on {target.name} no longer exists."
            return Place(target, run_id=run.pk, problem=problem)
    return Place(
        target,
        node=node,
        run_id=run.pk,
        directory=f"{handle.run_dir}/wd",
        problem=terminal_problem(target, node),
    )


def clamp_size(cols, rows) -> tuple[int, int] | None:
    """The pty size asked for, within bounds; None when it is not two whole numbers."""
    if not (isinstance(cols, int) and isinstance(rows, int)) or isinstance(cols, bool):
        return None
    return max(1, min(cols, MAX_COLUMNS)), max(1, min(rows, MAX_ROWS))


def open_shell(place: Place, *, cols: int, rows: int) -> SshShell | DockerShell:
    """Open the shell `place` names (blocking: call it from a worker thread)."""
    if place.node is not None:
        return DockerShell(
            place.target, place.node, cols=cols, rows=rows, directory=place.directory
        )
    return SshShell(place.target, cols=cols, rows=rows, directory=place.directory)


class SshShell:
    """A login shell in a pty on an SSH target; blocking calls, for a worker thread."""

    def __init__(self, target: ComputeTarget, *, cols: int, rows: int, directory: str = ""):
        self._stack = contextlib.ExitStack()
        try:
            connection = ssh.pool.get(services.ssh_target(target))
            self.channel: paramiko.Channel = self._stack.enter_context(
                connection.session(OPEN_TIMEOUT)
            )
            self.channel.get_pty(term="xterm-256color", width=cols, height=rows)
            if directory:
                # The login shell itself opens in the directory; a missing one says so.
                shell = '"${SHELL:-/bin/sh}"'
                self.channel.exec_command(f"cd {shlex.quote(directory)} && exec {shell} -l")  # nosec B601
            else:
                self.channel.invoke_shell()
        except ssh.SshError as exc:
            self.close()
            raise TerminalError(str(exc)) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self.close()
            raise TerminalError(
                f"{target.name} refused a terminal ({exc}) — is a pty allowed by its sshd "
                "(PermitTTY)?"
            ) from None

    def read(self) -> bytes:
        """The next output of the shell; b"" once it has ended."""
        try:
            return self.channel.recv(READ_BYTES)
        except (OSError, EOFError, paramiko.SSHException):
            return b""

    def write(self, data: bytes) -> None:
        self.channel.sendall(data)

    def resize(self, cols: int, rows: int) -> None:
        with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
            self.channel.resize_pty(width=cols, height=rows)

    def close(self) -> None:
        self._stack.close()


class DockerShell:
    """A shell in a cluster node's container with a tty, as `nobody`; blocking calls."""

    def __init__(
        self, target: ComputeTarget, node: Node, *, cols: int, rows: int, directory: str = ""
    ):
        backend = NodeBackend(target, node)
        # bash when the node has it; HOME=/tmp as for runs, the working directory if given.
        script = (
            'shell=$(command -v bash || echo /bin/sh); cd "$1" || exit 1; '
            f'exec {RUN_AS} "$shell" -i'
        )
        try:
            container = backend.container()
            self.api = container.client.api
            self.exec_id = self.api.exec_create(
                container.id,
                # A shell as nobody starts in the node's /tmp, the one folder it may write.
                ["sh", "-c", script, "sh", directory or "/tmp"],  # nosec B108
                tty=True,
                stdin=True,
                environment={"TERM": "xterm-256color"},
            )["Id"]
            attached = self.api.exec_start(self.exec_id, tty=True, socket=True)
            # The SDK wraps the socket; reads and writes go to the socket itself.
            self.socket: socket.socket = getattr(attached, "_sock", attached)
            self.resize(cols, rows)
        except BackendError as exc:
            raise TerminalError(str(exc)) from None
        except (DockerException, OSError, requests.RequestException) as exc:
            raise TerminalError(f"docker exec on {backend.describe()} failed: {exc}") from None

    def read(self) -> bytes:
        try:
            return self.socket.recv(READ_BYTES)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        self.socket.sendall(data)

    def resize(self, cols: int, rows: int) -> None:
        with contextlib.suppress(DockerException, OSError, requests.RequestException):
            self.api.exec_resize(self.exec_id, height=rows, width=cols)

    def close(self) -> None:
        # Closing the attached socket hangs up the shell, as closing a terminal window does.
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.socket.close()
