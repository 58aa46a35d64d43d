"""SSH connections to remote machines: host key pinning, logging in, running commands.

Pure Python (no Django) so it can be tested alone against a real sshd.

Secrets (password, private key, passphrase) never appear in an error message,
a repr or a pool key: messages are shown to users and end up in logs.
"""

from __future__ import annotations

import hashlib
import logging
import select
import shlex
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import paramiko

from compute.ssh.keys import SshError, parse_private_key
from studio.outbound import OutboundPolicy, OutboundRefused, unreachable_message

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_RUN_TIMEOUT = 60.0
# Channels open at once on one connection: below OpenSSH's default MaxSessions (10),
# so the runs and operations sharing a target's connection wait their turn instead of
# being refused.
MAX_SESSIONS = 8
# A link that went silent (VM powered off, network cut) is given up after this long
# without an acknowledgement, instead of the kernel's default of about 15 minutes: the
# transport then dies, its waiting operations end at once, and the next one reconnects.
DEAD_LINK_SECONDS = 20
# How often an idle connection sends something, so a silent link shows up even then.
KEEPALIVE_SECONDS = 10


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class SshTarget:
    """Where to connect and with which credentials.

    `pinned_fingerprint=None` means first contact: any host key is accepted
    and reported, so the caller can store it and pin it from then on.
    `pool_key` names what the pool keeps one connection for (e.g. the compute
    target's id); without one it is the address.
    `outbound`, when given, decides which addresses may be connected to; with
    `detailed_errors` off, a connection that fails says only that it failed, not
    whether the port was closed, filtered or the host absent (the reason is logged).
    """

    host: str
    username: str
    port: int = 22
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
    pinned_fingerprint: str | None = None
    pool_key: str = ""
    outbound: OutboundPolicy | None = field(default=None, compare=False)
    detailed_errors: bool = True

    @property
    def address(self) -> str:
        """user@host:port as users write it, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.username}@{host}:{self.port}"

    @property
    def login_hash(self) -> str:
        """Changes with anything that decides the login; a hash, so it is safe to log."""
        login = [self.host, str(self.port), self.username, self.pinned_fingerprint or ""]
        secrets = [self.password or "", self.private_key or "", self.passphrase or ""]
        return hashlib.sha256("\0".join(login + secrets).encode()).hexdigest()


# ---------------------------------------------------------------- connections


class SshConnection:
    """One logged-in SSH transport to a target; channels are opened on demand.

    The transport is re-established transparently when it has died, pinned to
    the host key seen on the first successful connection.
    """

    def __init__(self, target: SshTarget, *, timeout: float = DEFAULT_CONNECT_TIMEOUT):
        if not target.private_key and target.password is None:
            raise ValueError("SshTarget needs a password or a private key")
        self.target = target
        self.timeout = timeout
        self.host_key_fingerprint: str | None = None
        self.host_key_type: str | None = None
        # Parse now so a bad key or passphrase fails before any network traffic.
        self._pkey = (
            parse_private_key(target.private_key, target.passphrase) if target.private_key else None
        )
        self._transport: paramiko.Transport | None = None
        self._lock = threading.Lock()
        self._sessions = threading.BoundedSemaphore(MAX_SESSIONS)
        # Its own lock: the pool asks whether a connection is busy while holding the pool
        # lock, which must never wait for a login that holds `_lock`.
        self._in_use = 0
        self._in_use_lock = threading.Lock()

    def __enter__(self) -> SshConnection:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def username(self) -> str:
        return self.target.username

    @property
    def transport(self) -> paramiko.Transport:
        """The live transport, connecting (again) if needed."""
        with self._lock:
            if self._transport is None or not self._transport.is_active():
                self._transport = self._connect()
            return self._transport

    @property
    def busy(self) -> bool:
        """Whether a command, upload or SFTP session is still open on it."""
        with self._in_use_lock:
            return self._in_use > 0

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    def _connect(self) -> paramiko.Transport:
        target, timeout = self.target, self.timeout
        sock = _open_socket(target, timeout)
        transport = paramiko.Transport(sock)
        transport.banner_timeout = timeout
        transport.handshake_timeout = timeout
        transport.auth_timeout = timeout
        try:
            _handshake(transport, target, timeout)
            self._check_host_key(transport)
            self._authenticate(transport)
        except BaseException:
            transport.close()
            raise
        # Keepalives make a silently dead VM show up as an inactive transport.
        transport.set_keepalive(KEEPALIVE_SECONDS)
        return transport

    def _check_host_key(self, transport: paramiko.Transport) -> None:
        key = transport.get_remote_server_key()
        offered = key.fingerprint
        # After the first connection, reconnects pin the key seen then, even
        # when the target itself was first contact.
        expected = self.host_key_fingerprint or self.target.pinned_fingerprint
        if expected and offered != expected:
            raise SshError(
                "host_key_changed",
                f"The host key of {self.target.address} has changed: expected {expected}, "
                f"the server offered {offered} ({key.get_name()}). Trainyard did not log in, "
                "because this can mean someone is intercepting the connection. "
                "If the VM was rebuilt, use Re-trust host key on the compute page.",
            )
        self.host_key_fingerprint = offered
        self.host_key_type = key.get_name()

    def _authenticate(self, transport: paramiko.Transport) -> None:
        target = self.target
        method = "publickey" if self._pkey else "password"
        code = "auth_key" if self._pkey else "auth_password"
        try:
            if self._pkey:
                transport.auth_publickey(target.username, self._pkey)
            else:
                transport.auth_password(target.username, target.password)
        except paramiko.BadAuthenticationType as exc:
            allowed = ", ".join(exc.allowed_types) or "nothing"
            other = "a password" if self._pkey else "an SSH key"
            raise SshError(
                code,
                f"{target.address} does not accept {method} login (it allows: {allowed}) "
                f"— attach with {other} instead, or enable {method} login in the VM's sshd_config.",
            ) from None
        except paramiko.AuthenticationException:
            if self._pkey:
                advice = "is the public key in ~/.ssh/authorized_keys on the VM?"
            else:
                advice = "check the user name and password."
            raise SshError(
                code, f"Permission denied ({method}) for {target.address} — {advice}"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise SshError(
                "unreachable",
                f"The connection to {target.address} broke during login ({exc}) — try again; "
                "if it keeps happening, check the VM's sshd logs.",
            ) from None

    @contextmanager
    def session(self, timeout: float) -> Iterator[paramiko.Channel]:
        """A channel for one operation, closed after it; every channel is opened here."""
        with self._in_use_lock:
            self._in_use += 1
        try:
            if not self._sessions.acquire(timeout=timeout):
                raise SshError(
                    "session_refused",
                    f"{self.target.address} is busy: {MAX_SESSIONS} operations on it did not "
                    f"end within {timeout:g} s — try again shortly.",
                )
            try:
                channel = self._open_session_when_free(timeout)
                try:
                    yield channel
                finally:
                    channel.close()
            finally:
                self._sessions.release()
        finally:
            with self._in_use_lock:
                self._in_use -= 1

    def _open_session_when_free(self, timeout: float) -> paramiko.Channel:
        # sshd frees a closed channel's session a moment after the close arrives, so a
        # refusal while fewer than MAX_SESSIONS are open here is only that moment: retry.
        deadline = time.monotonic() + timeout
        pause = 0.02
        while True:
            try:
                return self._open_session(timeout)
            except SshError as exc:
                if exc.code != "session_refused" or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _open_session(self, timeout: float) -> paramiko.Channel:
        transport = self.transport
        try:
            return transport.open_session(timeout=timeout)
        except paramiko.ChannelException as exc:
            if transport.is_active():
                # The VM is there but refuses more channels (sshd MaxSessions).
                raise SshError(
                    "session_refused",
                    f"{self.target.address} refused a new session ({exc}) — "
                    "too many operations at once; try again shortly.",
                ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if transport.is_active():
                # No answer at all within the timeout: the link is silent, so this
                # transport is given up rather than waited on again.
                transport.close()
                raise SshError(
                    "unreachable",
                    f"No answer from {self.target.address} within {timeout:g} s ({exc}) — "
                    "is the VM running and its network up?",
                ) from None
        # The transport died after its liveness check (sshd restarted, VM
        # rebooted): the property reconnects, once.
        try:
            return self.transport.open_session(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise SshError(
                "unreachable",
                f"Lost the connection to {self.target.address} ({exc}) — is the VM still running?",
            ) from None

    def run(
        self, cmd: list[str] | str, timeout: float = DEFAULT_RUN_TIMEOUT
    ) -> tuple[int, str, str]:
        """Run a command; a list is shell-quoted word by word. Returns (exit code, stdout, stderr).

        The exit code is -1 when the command died from a signal.
        """
        command = shlex.join(cmd) if isinstance(cmd, list) else cmd
        deadline = time.monotonic() + timeout
        with self.session(timeout) as channel:
            channel.exec_command(command)  # on the target, as its user: lists are shlex-joined  # nosec B601
            channel.shutdown_write()
            stdout, stderr = bytearray(), bytearray()
            # Drain both streams as data arrives: reading one to the end first
            # can stall the command once the other fills the SSH window.
            while True:
                while channel.recv_ready():
                    stdout += channel.recv(65536)
                while channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(65536)
                if channel.eof_received and not (
                    channel.recv_ready() or channel.recv_stderr_ready()
                ):
                    break
                if channel.closed:
                    raise self.lost()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._run_timeout(command, timeout)
                select.select([channel], [], [], remaining)
            if not channel.status_event.wait(max(deadline - time.monotonic(), 0)):
                raise self._run_timeout(command, timeout)
            return (
                channel.exit_status,
                stdout.decode(errors="replace"),
                stderr.decode(errors="replace"),
            )

    def lost(self) -> SshError:
        """The error of an operation whose connection died under it."""
        return SshError(
            "unreachable",
            f"Lost the connection to {self.target.address} — is the VM still running?",
        )

    def _run_timeout(self, command: str, timeout: float) -> SshError:
        return SshError(
            "timeout",
            f"The command on {self.target.address} did not finish within {timeout:g} s: "
            f"{shorten(command)}",
        )

    @contextmanager
    def sftp(self) -> Iterator[paramiko.SFTPClient]:
        """An SFTP session over the shared transport, for a `with` block."""
        with self.session(self.timeout) as channel:
            channel.invoke_subsystem("sftp")
            with paramiko.SFTPClient(channel) as client:
                yield client

    def put_bytes(self, path: str, data: bytes, mode: int | None = None) -> None:
        """Write a remote file atomically: readers see the old file or the whole new one."""
        partial = f"{path}.{uuid.uuid4().hex}.part"
        with self.sftp() as sftp:
            with sftp.open(partial, "wb") as remote:
                remote.write(data)
            if mode is not None:
                sftp.chmod(partial, mode)
            sftp.posix_rename(partial, path)


def _open_socket(target: SshTarget, timeout: float) -> socket.socket:
    try:
        if target.outbound is not None:
            sock = target.outbound.connect(target.host, target.port, timeout)
        else:
            sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except OutboundRefused as exc:
        raise SshError("not_allowed", exc.message) from None
    except OSError as exc:
        raise _connect_failed(target, _socket_error(target, exc, timeout)) from None
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_LINK_SECONDS * 1000)
    return sock


def _connect_failed(target: SshTarget, exc: SshError) -> SshError:
    """`exc` as the user may see it: the same words for every way of not connecting."""
    if target.detailed_errors or exc.code == "dns":
        return exc
    log.info("connecting to %s failed: %s", target.address, exc.message)
    host = f"[{target.host}]" if ":" in target.host else target.host
    return SshError("unreachable", unreachable_message(f"{host}:{target.port}"))


def _socket_error(target: SshTarget, exc: OSError, timeout: float) -> SshError:
    where = target.address
    if isinstance(exc, socket.gaierror):
        return SshError(
            "dns",
            f"Cannot resolve the host name in {where} — check its spelling, "
            "or use the VM's IP address.",
        )
    if isinstance(exc, ConnectionRefusedError):
        return SshError(
            "refused",
            f"Connection refused by {where} — is sshd running on the VM and listening on "
            f"port {target.port}? Check the port number.",
        )
    if isinstance(exc, TimeoutError):
        return SshError(
            "timeout",
            f"No answer from {where} within {timeout:g} s — is the VM running, is the address "
            "right, and does its firewall (network security group) allow SSH from this server?",
        )
    return SshError(
        "unreachable",
        f"Cannot reach {where}: {exc.strerror or exc} — check the address and that this "
        "server has a network route to the VM.",
    )


def _handshake(transport: paramiko.Transport, target: SshTarget, timeout: float) -> None:
    # An event instead of start_client(timeout=...): that call returns
    # silently, without a session, when its timeout expires.
    done = threading.Event()
    transport.start_client(event=done)
    if done.wait(timeout) and transport.is_active():
        return
    error = transport.get_exception()
    # paramiko words a banner timeout "Error reading SSH protocol banner" with an
    # empty reason; only the exception it was raised from says it was a timeout.
    banner_timed_out = "banner" in str(error) and (
        "timed out" in str(error) or isinstance(error.__context__, TimeoutError)
    )
    if error is None or banner_timed_out:
        raise _connect_failed(
            target,
            SshError(
                "timeout",
                f"{target.address} accepted the connection but did not answer as an SSH server "
                f"within {timeout:g} s — is port {target.port} the SSH port, and is sshd healthy?",
            ),
        )
    raise _connect_failed(
        target,
        SshError(
            "handshake",
            f"The SSH handshake with {target.address} failed ({error}) — is port {target.port} "
            "the SSH port? An outdated sshd may also lack the algorithms Trainyard requires.",
        ),
    )


def shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def connect(target: SshTarget, *, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> SshConnection:
    """Open a connection that is not pooled (e.g. the one-off check when attaching a VM)."""
    connection = SshConnection(target, timeout=timeout)
    connection.transport  # noqa: B018 - connects now so errors surface here
    return connection
