"""Test hosts with their own IP address: an sshd inside a network namespace.

Each host is a namespace joined to this machine by a veth pair on its own
10.213.X.0/30: the host side is .1, the namespace side (the "VM") is .2.
These addresses exist only on our own veth pairs, and the namespace has no
default route, so no traffic can leave this machine. Needs root.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.services.sshd import SshServer, ensure_test_user

NAMESPACE_PREFIX = "trainyard-test-"
CLONE_NEWNET = 0x40000000


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _require_namespaces() -> None:
    """Skip without root; as root (as in CI, where these hosts are required) fail loudly."""
    if os.geteuid() != 0:
        pytest.skip("network namespace hosts need root")
    if shutil.which("ip") is None:
        pytest.fail("iproute2 is not installed: run scripts/test-system-deps.sh as root")
    probe = f"{NAMESPACE_PREFIX}probe-{os.getpid()}"
    added = _ip("netns", "add", probe, check=False)
    if added.returncode != 0:
        pytest.fail(
            f"`ip netns add` fails even as root ({added.stderr.strip()}): run the tests where "
            "root may create network namespaces (a VM, or a container with CAP_SYS_ADMIN)"
        )
    _ip("netns", "del", probe, check=False)


def _remove_stale_namespaces() -> None:
    """Delete namespaces left by test sessions that were killed before teardown."""
    for line in _ip("netns", "list").stdout.splitlines():
        match = re.match(rf"{NAMESPACE_PREFIX}(\d+)-\w+", line)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            _ip("netns", "del", match.group(0), check=False)


def _free_subnet() -> int:
    """Third octet of a 10.213.X.0/30 that no interface here uses yet."""
    used = set(re.findall(r"inet 10\.213\.(\d+)\.", _ip("-o", "-4", "addr", "show").stdout))
    for octet in range(256):
        if str(octet) not in used:
            return octet
    raise RuntimeError("All 256 test subnets 10.213.X.0/30 are in use")


class NamespacedSshServer(SshServer):
    """An SshServer whose sshd runs in `namespace`, reachable at its own address."""

    def __init__(self, directory: Path, namespace: str, address: str, interface: str = ""):
        super().__init__(directory, address, 22, command_prefix=("ip", "netns", "exec", namespace))
        self.namespace = namespace
        self.interface = interface

    def set_link(self, state: str) -> None:
        """`up` or `down`: the host's network link, as when its cable is pulled."""
        _ip("-n", self.namespace, "link", "set", self.interface, state)


@pytest.fixture(scope="session")
def netns_host_factory():
    """Call it to start another sshd host at its own 10.213.X.2 address, port 22."""
    _require_namespaces()
    ensure_test_user()
    _remove_stale_namespaces()
    base = Path(tempfile.mkdtemp(prefix="trainyard-netns-"))
    base.chmod(0o755)  # sshd opens authorized_keys below it as the test user
    namespaces: list[str] = []
    servers: list[NamespacedSshServer] = []

    def start() -> NamespacedSshServer:
        index = len(namespaces)
        namespace = f"{NAMESPACE_PREFIX}{os.getpid()}-{index}"
        # Interface names are limited to 15 characters.
        host_side, ns_side = f"ty{os.getpid()}h{index}", f"ty{os.getpid()}n{index}"
        octet = _free_subnet()
        _ip("netns", "add", namespace)
        namespaces.append(namespace)
        _ip("link", "add", host_side, "type", "veth", "peer", "name", ns_side)
        _ip("link", "set", ns_side, "netns", namespace)
        _ip("addr", "add", f"10.213.{octet}.1/30", "dev", host_side)
        _ip("link", "set", host_side, "up")
        _ip("-n", namespace, "addr", "add", f"10.213.{octet}.2/30", "dev", ns_side)
        _ip("-n", namespace, "link", "set", ns_side, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        server = NamespacedSshServer(
            Path(tempfile.mkdtemp(dir=base)), namespace, f"10.213.{octet}.2", ns_side
        )
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
    for namespace in namespaces:
        # Deleting the namespace destroys its veth end, and with it the peer.
        _ip("netns", "del", namespace, check=False)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def offline_thread() -> Iterator:
    """Call it for a `with` block in which this thread has no network at all.

    The thread joins an empty network namespace: no interface but a loopback
    that is down. A name lookup there fails at once, as on a server whose DNS
    cannot be reached, and no packet can leave this machine. Sockets opened
    before (the database connection) keep working.
    """
    _require_namespaces()
    namespace = f"{NAMESPACE_PREFIX}{os.getpid()}-offline"
    _ip("netns", "add", namespace)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)

    def join(fd: int) -> None:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")

    @contextmanager
    def offline() -> Iterator[None]:
        back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        empty = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
        try:
            join(empty)
            try:
                yield
            finally:
                join(back)
        finally:
            os.close(empty)
            os.close(back)

    try:
        yield offline
    finally:
        _ip("netns", "del", namespace, check=False)
