"""Interactive shells for the terminal page: on a VM or head node, or a cluster node.

On an SSH target the shell is a pty over the pooled connection: it holds one
session slot for as long as it is open, so the pool keeps the connection while
a terminal uses it. On a managed-cluster node it is a `docker exec` with a tty,
as `nobody` like the runs there (the container's root is the engine host's).
A run's terminal (runs.terminal) opens one in the run's working directory. What goes
through a shell is never logged.
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
from compute.backends import BackendError
from compute.backends.cluster import RUN_AS, NodeBackend
from compute.models import ComputeTarget, Node
from compute.selectors import terminal_problem
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


def terminal_membership(user, slug: str) -> Membership | None:
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
    membership = terminal_membership(user, slug)
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
