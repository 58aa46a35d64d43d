"""Real OpenSSH servers for tests: one sshd per test host, on a free loopback port.

Each server has its own directory with host key, authorized_keys, config and
log, and logs in the system user `tytest` (created here, as root) with a
known password.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
TEST_USER = "tytest"
TEST_PASSWORD = "tytest-Pa55word"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ensure_test_user() -> None:
    """Create `tytest` with TEST_PASSWORD; idempotent, needs root."""
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        if os.geteuid() != 0:
            pytest.fail(
                f"The sshd tests need the user {TEST_USER}: run them as root once to create it"
            )
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", TEST_USER],
            check=True,
            capture_output=True,
        )
    if os.geteuid() == 0:
        # Reset every time: the password is what the tests assert against.
        subprocess.run(["chpasswd"], input=f"{TEST_USER}:{TEST_PASSWORD}", text=True, check=True)


# A user of its own who may run docker: the other VM tests rely on TEST_USER not being
# allowed to.
DOCKER_USER = "tydocker"


def ensure_docker_user() -> None:
    try:
        pwd.getpwnam(DOCKER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", DOCKER_USER], check=True
        )
    # "*": no password, but not locked (sshd refuses key logins to locked "!" accounts).
    subprocess.run(
        ["usermod", "--password", "*", "--append", "--groups", "docker", DOCKER_USER], check=True
    )


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children.extend(int(c) for c in (task / "children").read_text().split())
    return children


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _die_with_parent() -> None:
    # If pytest is killed outright, its fixture teardown never runs; the kernel
    # then still stops our sshd instead of leaving it on the port.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class SshServer:
    """A running sshd. `command_prefix` runs it elsewhere, e.g. in a network namespace."""

    def __init__(self, directory: Path, host: str, port: int, command_prefix: tuple[str, ...] = ()):
        self.dir = directory
        self.host = host
        self.port = port
        self.username = TEST_USER
        self.password = TEST_PASSWORD
        self.command_prefix = list(command_prefix)
        self.host_key = directory / "ssh_host_ed25519_key"
        self.authorized_keys = directory / "authorized_keys"
        self.config = directory / "sshd_config"
        self.log = directory / "sshd.log"
        self.process: subprocess.Popen | None = None

        # sshd reads authorized_keys as the logging-in user, not as root.
        directory.chmod(0o755)
        self.authorized_keys.write_text("")
        self.authorized_keys.chmod(0o644)
        self._generate_host_key()
        self.config.write_text(
            f"""\
ListenAddress {host}
Port {port}
HostKey {self.host_key}
AuthorizedKeysFile {self.authorized_keys}
PidFile {directory / "sshd.pid"}
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
PermitRootLogin no
AllowUsers {TEST_USER}
LogLevel VERBOSE
Subsystem sftp internal-sftp
"""
        )

    def __repr__(self) -> str:
        return f"<SshServer {self.username}@{self.host}:{self.port}>"

    @property
    def host_key_fingerprint(self) -> str:
        """SHA256:... exactly as `ssh-keygen -l` prints it."""
        out = subprocess.run(
            ["ssh-keygen", "-l", "-f", f"{self.host_key}.pub"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.split()[1]

    def authorize(self, public_key_line: str) -> None:
        with self.authorized_keys.open("a") as keys:
            keys.write(public_key_line.strip() + "\n")

    def start(self) -> None:
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.command_prefix, SSHD, "-D", "-e", "-f", str(self.config)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        self._wait_until_listening()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL sshd with every session it serves, as when it dies on the VM.

        Only sshd processes go: a run launched detached from a session keeps running.
        """
        if self.process is None:
            return
        doomed = [self.process.pid]
        for pid in doomed:
            doomed.extend(child for child in _children(pid) if _comm(child).startswith("sshd"))
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def regenerate_host_key(self) -> None:
        """Give the host a new identity, as a rebuilt VM would have, and restart sshd."""
        self.stop()
        self._generate_host_key()
        self.start()

    def _generate_host_key(self) -> None:
        for path in (self.host_key, Path(f"{self.host_key}.pub")):
            path.unlink(missing_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "trainyard-test-host",
                "-f",
                str(self.host_key),
            ],
            check=True,
        )

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + 10
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"sshd exited with {self.process.returncode}:\n{self.log.read_text()}"
                )
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"sshd did not listen on {self.host}:{self.port} within 10 s:\n{self.log.read_text()}"
        )


@pytest.fixture(scope="session")
def sshd_factory():
    """Call it to start another sshd on a free 127.0.0.1 port; all are stopped at session end."""
    if shutil.which("ssh-keygen") is None or not os.path.exists(SSHD):
        pytest.fail("openssh-server is not installed: run scripts/test-system-deps.sh as root")
    ensure_test_user()
    servers: list[SshServer] = []
    base = Path(tempfile.mkdtemp(prefix="trainyard-sshd-"))
    base.chmod(0o755)  # sshd opens authorized_keys below it as the test user

    def start() -> SshServer:
        server = SshServer(Path(tempfile.mkdtemp(dir=base)), "127.0.0.1", free_port())
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd(sshd_factory) -> SshServer:
    """One shared sshd; tests that restart or re-key a server should start their own."""
    return sshd_factory()


@pytest.fixture
def docker_user_sshd():
    """An sshd that lets only DOCKER_USER in, a user who may run docker (not yet started:
    authorize a key first)."""
    ensure_docker_user()
    # sshd reads authorized_keys as the logging-in user: outside root's private pytest tmp.
    server_dir = Path(tempfile.mkdtemp(prefix="trainyard-sshd-docker-"))
    server_dir.chmod(0o755)
    server = SshServer(server_dir, "127.0.0.1", free_port())
    server.config.write_text(
        server.config.read_text().replace(f"AllowUsers {TEST_USER}", f"AllowUsers {DOCKER_USER}")
    )
    yield server
    server.stop()
    shutil.rmtree(server_dir, ignore_errors=True)


@pytest.fixture
def darwin_sshd():
    """A running sshd whose sessions find a `uname` that says Darwin, as on a Mac."""
    ensure_test_user()
    server_dir = Path(tempfile.mkdtemp(prefix="trainyard-sshd-darwin-"))
    server_dir.chmod(0o755)
    bin_dir = server_dir / "bin"
    bin_dir.mkdir(mode=0o755)
    uname = bin_dir / "uname"
    uname.write_text("#!/bin/sh\necho Darwin\n")
    uname.chmod(0o755)
    server = SshServer(server_dir, "127.0.0.1", free_port())
    with server.config.open("a") as config:
        config.write(f"SetEnv PATH={bin_dir}:/usr/bin:/bin\n")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server_dir, ignore_errors=True)
