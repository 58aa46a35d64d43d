"""Remote VMs: runs execute over SSH (pooled connection per target, pinned host key)."""

from __future__ import annotations

import io
import select
import shlex
import time
from typing import BinaryIO

import paramiko

from compute import ssh
from compute.backends.base import BackendError
from compute.backends.posix import PosixBackend
from compute.vm.services import ssh_target


class VmBackend(PosixBackend):
    def __init__(self, target, root: str = "") -> None:
        self.target = target
        self.root = root

    def describe(self) -> str:
        return f"{self.target.name} ({self.target.username}@{self.target.address})"

    def connection(self) -> ssh.SshConnection:
        try:
            return ssh.pool.get(ssh_target(self.target))
        except ssh.SshError as exc:
            raise BackendError(exc.message, unreachable=True) from None

    def exec(self, script_text, args, *, stdin=None, timeout=60):
        stdout = io.BytesIO()
        code, stderr = self._exec(stdout, script_text, args, stdin, timeout)
        return code, stdout.getvalue(), stderr

    def exec_into(self, out, script_text, args, *, timeout=60):
        return self._exec(out, script_text, args, None, timeout)

    def _exec(self, out, script_text, args, stdin, timeout) -> tuple[int, bytes]:
        command = shlex.join(["sh", "-c", script_text, "sh", *args])
        connection = self.connection()
        try:
            return _exec_bytes(connection, command, stdin, timeout, out)
        except ssh.SshError as exc:
            raise BackendError(exc.message, unreachable=True) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise BackendError(
                f"Lost the connection to {self.describe()} ({exc}) — is the VM still running?",
                unreachable=True,
            ) from None

    def ensure_root(self) -> None:
        if not self.root:
            code, out, err = self.exec('printf %s "$HOME"', [])
            home = out.decode().strip()
            if code != 0 or not home.startswith("/"):
                raise BackendError(f"Could not find the home directory on {self.describe()}.")
            self.root = f"{home}/.trainyard"


def _exec_bytes(
    connection: ssh.SshConnection,
    command: str,
    stdin: bytes | None,
    timeout: float,
    out: BinaryIO,
) -> tuple[int, bytes]:
    """Like SshConnection.run, but with raw bytes both ways (logs are not always UTF-8), and
    stdout written into `out` as it arrives: (exit code, stderr)."""
    deadline = time.monotonic() + timeout
    with connection.session(timeout) as channel:
        channel.exec_command(command)  # on the target, as its user: callers quote each word  # nosec B601
        if stdin:
            channel.sendall(stdin)
        channel.shutdown_write()
        stderr = bytearray()
        while True:
            while channel.recv_ready():
                out.write(channel.recv(1 << 20))
            while channel.recv_stderr_ready():
                stderr += channel.recv_stderr(1 << 20)
            if channel.eof_received and not (channel.recv_ready() or channel.recv_stderr_ready()):
                break
            if channel.closed:
                # The transport died under the command (sshd killed, link cut).
                raise connection.lost()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendError(
                    f"A command on {connection.target.address} did not finish within {timeout:g} s."
                )
            select.select([channel], [], [], remaining)
        if not channel.status_event.wait(max(deadline - time.monotonic(), 0)):
            raise BackendError(
                f"A command on {connection.target.address} did not finish within {timeout:g} s."
            )
        return channel.exit_status, bytes(stderr)
