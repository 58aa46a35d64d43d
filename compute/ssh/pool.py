"""The pool of SSH connections a process shares: one live connection per target."""

from __future__ import annotations

import threading
import time

from compute.ssh.connection import DEFAULT_CONNECT_TIMEOUT, SshConnection, SshTarget

DEFAULT_IDLE_SECONDS = 300.0


def _pool_key(target: SshTarget) -> str:
    return target.pool_key or target.address


class SshPool:
    """One live connection per pool key, shared by threads; reconnects transparently.

    Each process (web server, Celery worker, run monitor) has its own pool, which
    the others cannot close. So the pool itself notices what changed: a key seen
    with other credentials or another pinned host key gets a new connection, and a
    connection nobody checked out for `idle_seconds` is closed, such as the one to
    a target detached elsewhere. A connection with a command still running is
    closed only once that command has finished.
    """

    def __init__(self, idle_seconds: float = DEFAULT_IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self._connections: dict[str, SshConnection] = {}
        self._checked_out: dict[str, float] = {}
        self._retired: list[SshConnection] = []
        self._lock = threading.Lock()

    def get(self, target: SshTarget, *, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> SshConnection:
        key = _pool_key(target)
        with self._lock:
            now = time.monotonic()
            self._retire_idle(now)
            connection = self._connections.get(key)
            if connection is not None and connection.target.login_hash != target.login_hash:
                self._retired.append(self._connections.pop(key))
                connection = None
            if connection is None:
                connection = SshConnection(target, timeout=timeout)
                self._connections[key] = connection
            self._checked_out[key] = now
            finished = self._take_finished()
        for old in finished:
            old.close()
        # Outside the pool lock: a slow or dead VM must not block other targets.
        connection.transport  # noqa: B018 - (re)connects now so errors surface here
        return connection

    def _retire_idle(self, now: float) -> None:
        for key, checked_out in list(self._checked_out.items()):
            if now - checked_out > self.idle_seconds:
                del self._checked_out[key]
                self._retired.append(self._connections.pop(key))

    def _take_finished(self) -> list[SshConnection]:
        finished: list[SshConnection] = []
        still_busy: list[SshConnection] = []
        for connection in self._retired:
            (still_busy if connection.busy else finished).append(connection)
        self._retired = still_busy
        return finished

    def close(self, target: SshTarget) -> None:
        """Close this process's connection for `target`'s pool key, whatever its credentials."""
        key = _pool_key(target)
        with self._lock:
            connection = self._connections.pop(key, None)
            self._checked_out.pop(key, None)
        if connection is not None:
            connection.close()

    def close_all(self) -> None:
        with self._lock:
            connections = [*self._connections.values(), *self._retired]
            self._connections.clear()
            self._checked_out.clear()
            self._retired.clear()
        for connection in connections:
            connection.close()


pool = SshPool()
