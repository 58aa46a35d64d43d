"""compute.ssh against real OpenSSH servers (tests/services/sshd.py, netns.py)."""

from __future__ import annotations

import io
import os
import platform
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from compute.backends.vm import _exec_bytes
from compute.ssh import (
    SshError,
    SshPool,
    SshTarget,
    connect,
    generate_key_pair,
    parse_private_key,
    preflight,
)
from tests.services.sshd import free_port
from tests.support.cloud import wait_until

TIMEOUT = 5


def password_target(server, **overrides) -> SshTarget:
    fields = dict(
        host=server.host, port=server.port, username=server.username, password=server.password
    )
    return SshTarget(**(fields | overrides))


def key_target(server, private_key: str, **overrides) -> SshTarget:
    fields = dict(
        host=server.host, port=server.port, username=server.username, private_key=private_key
    )
    return SshTarget(**(fields | overrides))


def ssh_keygen(
    directory: Path, key_type: str, key_format: str, passphrase: str = ""
) -> tuple[str, str]:
    """A key pair made the way users make theirs; returns (private text, public line)."""
    path = directory / f"id_{key_type}_{key_format}"
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            key_type,
            "-m",
            key_format,
            "-N",
            passphrase,
            "-C",
            "alice@laptop",
            "-f",
            str(path),
        ],
        check=True,
    )
    return path.read_text(), Path(f"{path}.pub").read_text()


def assert_user_error(error: SshError, code: str, server, advice: str, secrets=()) -> None:
    assert error.code == code, error.message
    assert f"{server.username}@{server.host}:{server.port}" in error.message
    assert advice in error.message
    for secret in secrets:
        assert secret not in error.message


# ---------------------------------------------------------------- logging in


def test_password_login_reports_the_host_key_as_ssh_keygen_shows_it(sshd):
    with connect(password_target(sshd), timeout=TIMEOUT) as conn:
        assert conn.run(["whoami"]) == (0, f"{sshd.username}\n", "")
        assert conn.host_key_fingerprint == sshd.host_key_fingerprint
        assert conn.host_key_type == "ssh-ed25519"


@pytest.mark.parametrize(
    ("key_type", "key_format", "begin_line"),
    [
        ("ed25519", "RFC4716", "-----BEGIN OPENSSH PRIVATE KEY-----"),
        ("rsa", "RFC4716", "-----BEGIN OPENSSH PRIVATE KEY-----"),
        ("ecdsa", "RFC4716", "-----BEGIN OPENSSH PRIVATE KEY-----"),
        ("rsa", "PEM", "-----BEGIN RSA PRIVATE KEY-----"),
        ("rsa", "PKCS8", "-----BEGIN PRIVATE KEY-----"),
        ("ecdsa", "PEM", "-----BEGIN EC PRIVATE KEY-----"),
        ("ecdsa", "PKCS8", "-----BEGIN PRIVATE KEY-----"),
    ],
)
def test_key_login(sshd, tmp_path, key_type, key_format, begin_line):
    private, public = ssh_keygen(tmp_path, key_type, key_format)
    assert private.startswith(begin_line)
    sshd.authorize(public)
    with connect(key_target(sshd, private), timeout=TIMEOUT) as conn:
        assert conn.run("whoami") == (0, f"{sshd.username}\n", "")


@pytest.mark.parametrize("key_format", ["RFC4716", "PEM", "PKCS8"])
def test_key_with_passphrase(sshd, tmp_path, key_format):
    private, public = ssh_keygen(
        tmp_path, "rsa" if key_format != "RFC4716" else "ed25519", key_format, "open sesame"
    )
    sshd.authorize(public)
    with connect(key_target(sshd, private, passphrase="open sesame"), timeout=TIMEOUT) as conn:
        assert conn.run("whoami")[1] == f"{sshd.username}\n"


def test_generated_key_pair_logs_in(sshd):
    private, public = generate_key_pair(comment="trainyard-workspace-1")
    assert public.startswith("ssh-ed25519 ") and public.endswith(" trainyard-workspace-1")
    sshd.authorize(public)
    with connect(key_target(sshd, private), timeout=TIMEOUT) as conn:
        assert conn.run("whoami")[0] == 0


def test_passphrase_given_for_an_unprotected_key_is_ignored(tmp_path):
    private, _ = ssh_keygen(tmp_path, "ed25519", "RFC4716")
    assert parse_private_key(private, "not needed").get_name() == "ssh-ed25519"


# ---------------------------------------------------------------- what users get wrong


def test_wrong_password(sshd):
    with pytest.raises(SshError) as caught:
        connect(password_target(sshd, password="hunter2-wrong"), timeout=TIMEOUT)
    assert_user_error(
        caught.value,
        "auth_password",
        sshd,
        "check the user name and password",
        secrets=["hunter2-wrong"],
    )
    assert caught.value.message.startswith("Permission denied (password)")


def test_key_not_authorised(sshd):
    private, _ = generate_key_pair()
    with pytest.raises(SshError) as caught:
        connect(key_target(sshd, private), timeout=TIMEOUT)
    assert_user_error(
        caught.value,
        "auth_key",
        sshd,
        "is the public key in ~/.ssh/authorized_keys on the VM?",
        secrets=[private],
    )
    assert caught.value.message.startswith("Permission denied (publickey)")


@pytest.mark.parametrize("key_format", ["RFC4716", "PEM", "PKCS8"])
def test_wrong_or_missing_passphrase(tmp_path, key_format):
    private, _ = ssh_keygen(tmp_path, "ecdsa", key_format, "right horse battery")
    with pytest.raises(SshError) as wrong:
        parse_private_key(private, "wrong horse battery")
    assert wrong.value.code == "bad_passphrase"
    assert "does not unlock this key" in wrong.value.message
    assert "wrong horse battery" not in wrong.value.message
    with pytest.raises(SshError) as missing:
        parse_private_key(private, None)
    assert missing.value.code == "bad_passphrase"
    assert "enter it in the passphrase field" in missing.value.message


def test_wrong_passphrase_fails_before_connecting(tmp_path):
    # Nothing listens on this port: if the key check did not come first, this would be "refused".
    private, _ = ssh_keygen(tmp_path, "ed25519", "RFC4716", "secret one")
    with pytest.raises(SshError) as caught:
        connect(
            SshTarget(
                host="127.0.0.1",
                port=free_port(),
                username="alice",
                private_key=private,
                passphrase="secret two",
            )
        )
    assert caught.value.code == "bad_passphrase"


@pytest.mark.parametrize(
    "text",
    [
        "my key is in the other file",
        # A key that lost its middle when pasted:
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAA\n"
        "-----END OPENSSH PRIVATE KEY-----\n",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAvRz\n-----END RSA PRIVATE KEY-----\n",
    ],
)
def test_malformed_key(text):
    with pytest.raises(SshError) as caught:
        parse_private_key(text, None)
    assert caught.value.code == "bad_key"
    assert caught.value.message == (
        "This does not look like a private key: paste the whole file including the BEGIN/END lines."
    )


def test_public_key_pasted_instead_of_private():
    _, public = generate_key_pair()
    with pytest.raises(SshError) as caught:
        parse_private_key(public, None)
    assert caught.value.code == "bad_key"
    assert "This is a public key" in caught.value.message


# ---------------------------------------------------------------- network failures


def test_connection_refused():
    port = free_port()
    target = SshTarget(host="127.0.0.1", port=port, username="alice", password="pw")
    with pytest.raises(SshError) as caught:
        connect(target, timeout=TIMEOUT)
    assert caught.value.code == "refused"
    assert f"alice@127.0.0.1:{port}" in caught.value.message
    assert "is sshd running on the VM" in caught.value.message


def test_server_that_never_speaks_ssh_times_out():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        target = SshTarget(host="127.0.0.1", port=port, username="alice", password="pw")
        started = time.monotonic()
        with pytest.raises(SshError) as caught:
            connect(target, timeout=0.5)
        # The user waits for the timeout they chose, not paramiko's 15 s default.
        assert time.monotonic() - started < 3
    assert caught.value.code == "timeout"
    assert f"alice@127.0.0.1:{port}" in caught.value.message
    assert "is port" in caught.value.message and "the SSH port" in caught.value.message


# ---------------------------------------------------------------- host key pinning


def test_changed_host_key_is_refused_before_logging_in(sshd_factory):
    server = sshd_factory()
    with connect(password_target(server), timeout=TIMEOUT) as first_contact:
        trusted = first_contact.host_key_fingerprint
    assert trusted is not None and trusted == server.host_key_fingerprint

    server.regenerate_host_key()
    offered = server.host_key_fingerprint
    log_before = server.log.stat().st_size
    with pytest.raises(SshError) as caught:
        connect(password_target(server, pinned_fingerprint=trusted), timeout=TIMEOUT)
    assert_user_error(
        caught.value,
        "host_key_changed",
        server,
        "If the VM was rebuilt, use Re-trust host key on the compute page.",
        secrets=[server.password],
    )
    assert trusted in caught.value.message and offered in caught.value.message
    # The password never reached the impostor: sshd saw no login attempt.
    with server.log.open() as log:
        log.seek(log_before)
        assert "password for" not in log.read()

    # Re-trusting deliberately means pinning the new key.
    with connect(password_target(server, pinned_fingerprint=offered), timeout=TIMEOUT) as conn:
        assert conn.run("true")[0] == 0


# ---------------------------------------------------------------- running commands


def test_run_quotes_list_arguments_and_reports_exit_codes(sshd):
    with connect(password_target(sshd), timeout=TIMEOUT) as conn:
        tricky = ["a b", "$HOME", "it's", "; rm -rf /", "*"]
        assert conn.run(["printf", "%s\\n", *tricky]) == (0, "\n".join(tricky) + "\n", "")
        assert conn.run("echo oops >&2; exit 3") == (3, "", "oops\n")


def test_run_drains_large_stdout_and_stderr_together(sshd):
    with connect(password_target(sshd), timeout=TIMEOUT) as conn:
        code, out, err = conn.run(
            "head -c 4000000 /dev/zero | tr '\\0' e >&2; head -c 4000000 /dev/zero | tr '\\0' o"
        )
    assert (code, len(out), len(err)) == (0, 4_000_000, 4_000_000)


def test_run_timeout(sshd):
    with connect(password_target(sshd), timeout=TIMEOUT) as conn:
        with pytest.raises(SshError) as caught:
            conn.run(["sleep", "30"], timeout=0.5)
        assert_user_error(caught.value, "timeout", sshd, "did not finish within 0.5 s: sleep 30")
        assert conn.run("echo still usable") == (0, "still usable\n", "")


def test_put_bytes_and_sftp(sshd):
    with connect(password_target(sshd), timeout=TIMEOUT) as conn:
        conn.put_bytes("trainyard-put-test.bin", b"\x00blob\xff", mode=0o600)
        with conn.sftp() as sftp:
            with sftp.open("trainyard-put-test.bin", "rb") as remote:
                assert remote.read() == b"\x00blob\xff"
            assert oct(sftp.stat("trainyard-put-test.bin").st_mode & 0o777) == oct(0o600)
            assert not [name for name in sftp.listdir(".") if name.endswith(".part")]
            sftp.remove("trainyard-put-test.bin")


# ---------------------------------------------------------------- preflight


def system_python3_version() -> str:
    """The version of the python3 a login over SSH finds on this machine."""
    system_python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    assert system_python, "the VM tests need a system python3 (apt-get install python3)"
    return subprocess.run(
        [system_python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_preflight_reports_this_machine(sshd):
    with connect(password_target(sshd), timeout=TIMEOUT) as conn:
        facts = preflight(conn)

    os_release = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    assert facts["system"] == "Linux"
    assert facts["os_name"] == os_release["PRETTY_NAME"].strip('"')
    assert facts["os_id"] == os_release["ID"].strip('"')
    assert facts["os_version"] == os_release.get("VERSION_ID", "").strip('"')
    assert facts["kernel"] == platform.release()
    assert facts["arch"] == platform.machine()
    assert facts["cpus"] == os.cpu_count()
    meminfo_kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    assert facts["memory_mib"] == meminfo_kib // 1024
    home_free_mib = shutil.disk_usage(os.path.expanduser(f"~{sshd.username}")).free // 2**20
    assert abs(facts["disk_free_mib"] - home_free_mib) < max(home_free_mib // 50, 100)
    assert facts["gpus"] == []  # no nvidia-smi on this machine
    assert facts["python3"] == system_python3_version()
    assert facts["spark_submit"] is None and facts["spark_version"] is None

    docker = shutil.which("docker", path="/usr/local/bin:/usr/bin:/bin")
    assert facts["docker"] == docker
    if docker:
        # The test user is deliberately not in the docker group.
        assert facts["docker_usable"] is False
        if os.path.exists("/var/run/docker.sock"):
            expected = (
                f"User {sshd.username} cannot run docker: add them to the docker group "
                f"(sudo usermod -aG docker {sshd.username}) and reconnect"
            )
        else:
            expected = (
                "Docker is installed but not running on the VM: "
                "start it (sudo systemctl start docker) and reconnect"
            )
        assert facts["warnings"] == [expected]


# ---------------------------------------------------------------- the pool


def test_pool_reuses_one_transport_and_reconnects_when_it_died(sshd):
    pool = SshPool()
    target = password_target(sshd)
    try:
        conn = pool.get(target, timeout=TIMEOUT)
        transport = conn.transport
        assert conn.run("true")[0] == 0

        started = time.monotonic()
        again = pool.get(target, timeout=TIMEOUT)
        assert again.run(["echo", "checked"]) == (0, "checked\n", "")
        recheck_seconds = time.monotonic() - started
        assert again is conn and again.transport is transport
        # No new TCP connection, key exchange or login: one channel round trip.
        assert recheck_seconds < 1.0

        transport.close()  # as when the VM rebooted
        assert pool.get(target, timeout=TIMEOUT).run(["echo", "back"]) == (0, "back\n", "")
        assert conn.transport is not transport
        assert conn.host_key_fingerprint == sshd.host_key_fingerprint

        pool.close(target)
        assert pool.get(target, timeout=TIMEOUT) is not conn
    finally:
        pool.close_all()


def test_pool_serves_parallel_threads_over_one_transport(sshd):
    pool = SshPool()
    target = password_target(sshd)
    results, transports = [], set()

    def check(n: int) -> None:
        conn = pool.get(target, timeout=TIMEOUT)
        transports.add(id(conn.transport))
        results.append(conn.run(["echo", str(n)]))

    threads = [threading.Thread(target=check, args=(n,)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        pool.close_all()
    assert sorted(results) == sorted((0, f"{n}\n", "") for n in range(8))
    assert len(transports) == 1


def test_more_operations_at_once_than_sshd_allows_sessions_all_succeed(sshd):
    # sshd's default MaxSessions is 10: the pooled connection keeps fewer channels open
    # and the rest wait, as the monitor's polls of many runs on one VM do.
    pool = SshPool()
    target = password_target(sshd)
    results = []

    def operate(n: int) -> None:
        conn = pool.get(target, timeout=TIMEOUT)
        command = f"sleep 1; echo {n}"
        if n % 2:
            results.append(conn.run(command, timeout=30))
        else:
            out = io.BytesIO()
            code, err = _exec_bytes(conn, command, None, 30, out)
            results.append((code, out.getvalue().decode(), err.decode()))

    threads = [threading.Thread(target=operate, args=(n,)) for n in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        pool.close_all()
    assert sorted(results) == sorted((0, f"{n}\n", "") for n in range(16))


def test_login_hashes_hold_no_secrets(sshd):
    target = password_target(sshd, password="pool-secret")
    assert "pool-secret" not in target.login_hash
    assert "pool-secret" not in repr(target)


def logged_in_ports(server) -> set[str]:
    """The client ports of the logins the sshd still holds open, from its log."""
    log = server.log.read_text()
    accepted = set(re.findall(r"Accepted \S+ for \S+ from \S+ port (\d+)", log))
    ended = r"(?:Closing connection to|Connection closed by|Read error from remote host)"
    closed = set(re.findall(rf"{ended} \S+ port (\d+)", log))
    return accepted - closed


def test_pool_logs_in_again_when_the_credentials_changed(sshd_factory, tmp_path):
    server = sshd_factory()
    pool = SshPool()
    try:
        with_password = password_target(server, pool_key="vm-1")
        assert pool.get(with_password, timeout=TIMEOUT).run("whoami")[0] == 0
        [password_login] = logged_in_ports(server)

        private, public = ssh_keygen(tmp_path, "ed25519", "RFC4716")
        server.authorize(public)
        with_key = key_target(server, private, pool_key="vm-1")
        assert pool.get(with_key, timeout=TIMEOUT).run("whoami")[0] == 0
        assert "Accepted publickey for tytest" in server.log.read_text()
        # The login with the old password is closed, not left behind.
        [key_login] = wait_until(
            lambda: len(logged_in_ports(server)) == 1 and logged_in_ports(server)
        )
        assert key_login != password_login
    finally:
        pool.close_all()


def test_pool_closes_idle_connections_once_their_commands_finished(sshd_factory):
    server = sshd_factory()
    pool = SshPool(idle_seconds=0.5)
    try:
        idle = pool.get(password_target(server, pool_key="idle"), timeout=TIMEOUT)
        busy = pool.get(password_target(server, pool_key="busy"), timeout=TIMEOUT)
        idle_transport, busy_transport = idle.transport, busy.transport
        results = []
        command = threading.Thread(target=lambda: results.append(busy.run("sleep 3; echo done")))
        command.start()
        wait_until(lambda: busy.busy, what="the command to start")
        time.sleep(1)

        # Any checkout looks at the pool: both are idle, only the one without a command closes.
        pool.get(password_target(server, pool_key="other"), timeout=TIMEOUT)
        assert not idle_transport.is_active()
        assert busy_transport.is_active()
        command.join()
        assert results == [(0, "done\n", "")]
        pool.get(password_target(server, pool_key="other"), timeout=TIMEOUT)
        assert not busy_transport.is_active()
        wait_until(lambda: len(logged_in_ports(server)) == 1, what="idle logins closed")

        # Coming back to an idle target logs in afresh.
        assert pool.get(password_target(server, pool_key="idle"), timeout=TIMEOUT) is not idle
    finally:
        pool.close_all()


# ---------------------------------------------------------------- hosts at their own addresses


def test_two_hosts_in_network_namespaces(netns_host_factory):
    first, second = netns_host_factory(), netns_host_factory()
    assert first.host != second.host
    for server in (first, second):
        with connect(password_target(server), timeout=TIMEOUT) as conn:
            # sshd reports which of its addresses we reached.
            code, out, _ = conn.run("echo $SSH_CONNECTION")
            assert (code, out.split()[2:]) == (0, [server.host, "22"])
            assert conn.host_key_fingerprint == server.host_key_fingerprint

    # A new VM that took over an address is not trusted with the old one's key.
    with pytest.raises(SshError) as caught:
        connect(
            password_target(second, pinned_fingerprint=first.host_key_fingerprint), timeout=TIMEOUT
        )
    assert_user_error(caught.value, "host_key_changed", second, "Re-trust host key")
