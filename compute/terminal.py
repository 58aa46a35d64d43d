"""Interactive shells on a target, for the terminal page: a pty over the pooled SSH connection.

A shell holds one session slot of the target's pooled connection for as long as
it is open, so the pool keeps the connection while a terminal uses it. What
goes through a shell is never logged.
"""

from __future__ import annotations

import contextlib
import shlex

import paramiko

from compute import services, ssh
from compute.models import ComputeState, ComputeTarget

# Bounds on what a client may ask of the pty.
MAX_COLUMNS = 500
MAX_ROWS = 200
OPEN_TIMEOUT = 20.0
READ_BYTES = 32 * 1024


class TerminalError(Exception):
    """A terminal that cannot be opened; the message says what to do instead."""


def terminal_problem(target: ComputeTarget) -> str:
    """Why a terminal cannot be opened on `target` ("" when it can)."""
    if not target.is_ssh:
        if target.kind == "local":
            return (
                "The local target has no terminal: a shell there would run as the studio's own "
                "account, with its data and keys. Attach a virtual machine to get one."
            )
        return f"A {target.get_kind_display()} target has no terminal."
    if target.state != ComputeState.SUCCEEDED:
        return (
            f"{target.name} is {target.state}: a terminal opens once its check has succeeded "
            "(use Re-check on its page)."
        )
    return ""


def clamp_size(cols, rows) -> tuple[int, int] | None:
    """The pty size asked for, within bounds; None when it is not two whole numbers."""
    if not (isinstance(cols, int) and isinstance(rows, int)) or isinstance(cols, bool):
        return None
    return max(1, min(cols, MAX_COLUMNS)), max(1, min(rows, MAX_ROWS))


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
