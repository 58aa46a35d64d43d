"""SSH to remote VMs: key parsing, host key pinning, pooled connections, preflight.

Pure Python (no Django) so it can be tested alone against a real sshd.

Secrets (password, private key, passphrase) never appear in an error message,
a repr or a pool key: messages are shown to users and end up in logs.
"""

from __future__ import annotations

import hashlib
import io
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
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from studio.outbound import OutboundPolicy, OutboundRefused, unreachable_message

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_RUN_TIMEOUT = 60.0
DEFAULT_IDLE_SECONDS = 300.0
# Channels open at once on one connection: below OpenSSH's default MaxSessions (10),
# so the runs and operations sharing a target's connection wait their turn instead of
# being refused.
MAX_SESSIONS = 8


class SshError(Exception):
    """A failure the user can act on; `code` is stable, `message` says what to do."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------- keys


def parse_private_key(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """Load an ed25519, RSA or ECDSA private key in OpenSSH or PEM (traditional or PKCS8) format."""
    # Pasted keys often carry Windows line ends or indentation from an editor.
    data = "\n".join(line.strip() for line in text.strip().splitlines()).encode()
    if data.startswith(b"PuTTY-User-Key-File"):
        raise SshError(
            "bad_key",
            "This is a PuTTY key (.ppk): export it in OpenSSH format with PuTTYgen "
            "(Conversions > Export OpenSSH key) and paste that file.",
        )
    if data.startswith((b"ssh-", b"ecdsa-")):
        raise SshError(
            "bad_key",
            "This is a public key: paste the private key instead "
            "(the file without .pub, e.g. ~/.ssh/id_ed25519).",
        )
    if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise SshError(
            "bad_key",
            "This does not look like a private key: paste the whole file "
            "including the BEGIN/END lines.",
        )
    load = (
        serialization.load_ssh_private_key
        if b"BEGIN OPENSSH PRIVATE KEY" in data
        else serialization.load_pem_private_key
    )
    # `from None` everywhere below: the chained cryptography errors add
    # nothing for the user and must not drag key material into tracebacks.
    try:
        loaded = load(data, None)
    except TypeError:
        # cryptography's documented signal for "encrypted, but no password".
        if not passphrase:
            raise SshError(
                "bad_passphrase",
                "This key is protected by a passphrase: enter it in the passphrase field.",
            ) from None
        try:
            loaded = load(data, passphrase.encode())
        except ValueError:
            raise SshError(
                "bad_passphrase",
                "The passphrase does not unlock this key: check it and try again.",
            ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise SshError(
            "bad_key",
            "This does not look like a private key: paste the whole file "
            "including the BEGIN/END lines.",
        ) from None

    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    else:
        raise SshError(
            "bad_key",
            f"Unsupported key type {type(loaded).__name__}: use an ed25519, RSA or ECDSA key.",
        )
    # paramiko reads every key type from unencrypted OpenSSH text, so
    # re-serialising once avoids running the (slow, bcrypt) key derivation twice.
    openssh_text = loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    return key_class.from_private_key(io.StringIO(openssh_text))


def generate_key_pair(comment: str = "trainyard") -> tuple[str, str]:
    """Return (private key in OpenSSH format, public key line for authorized_keys)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private_text = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private_text, f"{public.decode()} {comment}"


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
        transport.set_keepalive(30)
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
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if transport.is_active():
                # The VM is there but refuses more channels (sshd MaxSessions).
                raise SshError(
                    "session_refused",
                    f"{self.target.address} refused a new session ({exc}) — "
                    "too many operations at once; try again shortly.",
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

    def _run_timeout(self, command: str, timeout: float) -> SshError:
        return SshError(
            "timeout",
            f"The command on {self.target.address} did not finish within {timeout:g} s: "
            f"{_shorten(command)}",
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
            return target.outbound.connect(target.host, target.port, timeout)
        return socket.create_connection((target.host, target.port), timeout=timeout)
    except OutboundRefused as exc:
        raise SshError("not_allowed", exc.message) from None
    except OSError as exc:
        raise _connect_failed(target, _socket_error(target, exc, timeout)) from None


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


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def connect(target: SshTarget, *, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> SshConnection:
    """Open a connection that is not pooled (e.g. the one-off check when attaching a VM)."""
    connection = SshConnection(target, timeout=timeout)
    connection.transport  # noqa: B018 - connects now so errors surface here
    return connection


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


# ---------------------------------------------------------------- preflight

# One round trip, POSIX sh (run via `sh -c`, whatever the login shell is),
# one key=value per line so a missing tool only leaves its key empty.
_PREFLIGHT_SCRIPT = r"""
echo "system=$(uname -s)"
[ "$(uname -s)" = Linux ] || exit 0
if [ -r /etc/os-release ]; then
    (. /etc/os-release
     echo "os_name=$PRETTY_NAME"; echo "os_id=$ID"; echo "os_version=$VERSION_ID")
fi
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
echo "cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
echo "memory_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
echo "disk_free_kib=$(df -Pk ~ 2>/dev/null | awk 'NR==2 {print $4}')"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits 2>/dev/null |
        sed 's/^/gpu=/'
fi
if command -v python3 >/dev/null 2>&1; then
    echo "python3=$(python3 -c 'import platform; print(platform.python_version())' 2>/dev/null)"
fi
# conda is usually only on PATH for interactive shells, so look in the usual places too.
for c in "$(command -v conda)" ~/miniconda3/bin/conda ~/anaconda3/bin/conda \
         ~/miniforge3/bin/conda /opt/conda/bin/conda /anaconda/bin/conda; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "conda=$c"; break; fi
done
if command -v docker >/dev/null 2>&1; then
    echo "docker=$(command -v docker)"
    if out=$(timeout 20 docker info 2>&1); then
        echo "docker_usable=1"
    else
        echo "docker_usable=0"
        case "$out" in *"permission denied"*) echo "docker_denied=1" ;; esac
    fi
fi
if command -v spark-submit >/dev/null 2>&1; then
    echo "spark_submit=$(command -v spark-submit)"
    version=$(spark-submit --version 2>&1 | grep -m 1 -o 'version [0-9][0-9.]*')
    echo "spark_version=${version#version }"
fi
"""


def gpu_fact(line: str) -> dict:
    """One line of `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`."""
    name, _, memory = line.rpartition(",")
    return {"name": name.strip(), "memory_mib": _int(memory)}


def preflight(conn: SshConnection) -> dict:
    """Facts about the host that decide whether and how runs can use it."""
    code, out, err = conn.run(["sh", "-c", _PREFLIGHT_SCRIPT], timeout=120)
    values: dict[str, str] = {}
    gpus = []
    for line in out.splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            continue
        if name == "gpu":
            gpus.append(gpu_fact(value))
        else:
            values[name] = value.strip()

    system = values.get("system", "")
    if system != "Linux":
        if system:
            found = f"a {system} system"
        else:
            found = f"no POSIX shell ({_shorten(err.strip()) or f'exit code {code}'})"
        raise SshError(
            "not_linux",
            f"{conn.target.address} runs {found}; Trainyard runs jobs on Linux VMs only: "
            "attach a Linux VM instead.",
        )

    user = conn.username
    warnings = []
    docker_usable = values.get("docker_usable") == "1"
    if values.get("docker") and not docker_usable:
        if values.get("docker_denied") == "1":
            warnings.append(
                f"User {user} cannot run docker: add them to the docker group "
                f"(sudo usermod -aG docker {user}) and reconnect"
            )
        else:
            warnings.append(
                "Docker is installed but not running on the VM: start it "
                "(sudo systemctl start docker) and reconnect"
            )

    return {
        "system": system,
        "os_name": values.get("os_name") or None,
        "os_id": values.get("os_id") or None,
        "os_version": values.get("os_version") or None,
        "kernel": values.get("kernel"),
        "arch": values.get("arch"),
        "cpus": _int(values.get("cpus")),
        "memory_mib": _mib(values.get("memory_kib")),
        "disk_free_mib": _mib(values.get("disk_free_kib")),
        "gpus": gpus,
        "python3": values.get("python3") or None,
        "conda": values.get("conda") or None,
        "docker": values.get("docker") or None,
        "docker_usable": docker_usable,
        "spark_submit": values.get("spark_submit") or None,
        "spark_version": values.get("spark_version") or None,
        "warnings": warnings,
    }


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _mib(kib_text: str | None) -> int | None:
    kib = _int(kib_text)
    return None if kib is None else kib // 1024
