"""Commands in a node's container through `docker exec`, with none of their output lost."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

from docker.utils.socket import STDERR, STDOUT, frames_iter

# The command waits for a line on its stdin before it starts. docker-py reads an exec's
# output from the socket under the HTTP response, so bytes the engine sent along with the
# response headers stay in the response's buffer, unread: a quick command's output was
# sometimes lost whole. Started only once the output is being read, it cannot write early.
_AFTER_GO = 'read -r _ && exec "$@" </dev/null'


@dataclass
class NodeExecResult:
    exit_code: int | None
    stderr: bytes
    # The first bytes of stdout: where the runtime says why it refused the command.
    head: bytes


def node_exec(container: Any, argv: list[str], out: BinaryIO) -> NodeExecResult:
    """Run `argv` in `container`, its stdout written to `out` as it arrives."""
    api = container.client.api
    exec_id = api.exec_create(container.id, ["sh", "-c", _AFTER_GO, "sh", *argv], stdin=True)["Id"]
    sock = api.exec_start(exec_id, socket=True)
    head, stderr = b"", bytearray()
    try:
        # A SocketIO (the engine's unix socket) is opened for reading: write to its socket.
        # A command that did not start refuses the line: the engine says why, read below.
        with contextlib.suppress(ConnectionError):
            getattr(sock, "_sock", sock).sendall(b"\n")
        for stream, data in frames_iter(sock, tty=False):
            if stream == STDOUT:
                head = head or data[:4096]
                out.write(data)
            elif stream == STDERR:
                stderr += data
    finally:
        # The connection was handed over to the command (an HTTP upgrade): it is closed,
        # never reused.
        getattr(sock, "_sock", sock).close()
    return NodeExecResult(_exit_code(api, exec_id), bytes(stderr), head)


def _exit_code(api: Any, exec_id: str) -> int | None:
    # The engine may still report the command running a moment after its output ended.
    deadline = time.monotonic() + 5
    while True:
        state = api.exec_inspect(exec_id)
        if not state["Running"] or time.monotonic() > deadline:
            return state["ExitCode"]
        time.sleep(0.01)
