"""What the VM check says on every failure, against real sshd servers (tests/services/sshd.py,
netns.py): wrong credentials, closed or silent ports, addresses the operator does not allow,
changed host keys, hosts that are not Linux or cannot run Docker.

Tasks run eagerly (tests/settings.py), so a submitted form has finished its
check when the response comes back; the pages are read as a user would.
"""

from __future__ import annotations

import contextlib
import grp
import html
import logging
import re
import socket
import subprocess
from pathlib import Path

import pytest
from django.urls import reverse

from compute import ssh
from compute.models import ComputeTarget
from studio.models import Workspace
from tests.compute.ssh.test_ssh_layer import ssh_keygen
from tests.services.sshd import TEST_USER, free_port
from tests.support.vm import (
    attach,
    attach_url,
    form_data,
    page_of,
    steps_of,
)

pytestmark = pytest.mark.django_db(transaction=True)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def as_staff_carol(carol, as_carol):
    """Carol as one of the server's staff: told why a connection failed."""
    carol.is_staff = True
    carol.save(update_fields=["is_staff"])
    return as_carol


# ---------------------------------------------------------------- every failure, precisely


def test_malformed_key_is_refused_in_the_form(sshd, workspace, as_carol):
    data = form_data(sshd, authentication="key", private_key="-----BEGIN OOPS-----\nxyz")
    page = attach(as_carol, workspace, data)
    assert "This does not look like a private key: paste the whole file" in page
    assert not ComputeTarget.objects.filter(name="gpu-vm").exists()


def test_wrong_passphrase_is_refused_in_the_form(sshd, workspace, as_carol, tmp_path):
    private, _ = ssh_keygen(tmp_path, "rsa", "PEM", passphrase="open sesame")
    data = form_data(sshd, authentication="key", private_key=private, passphrase="wrong one")
    page = attach(as_carol, workspace, data)
    assert "The passphrase does not unlock this key" in page
    page = attach(as_carol, workspace, data | {"passphrase": ""})
    assert "This key is protected by a passphrase: enter it" in page
    assert "wrong one" not in page
    assert not ComputeTarget.objects.filter(name="gpu-vm").exists()


def test_wrong_password(sshd, workspace, as_carol, caplog):
    caplog.set_level(logging.DEBUG)
    page = attach(as_carol, workspace, form_data(sshd, password="hunter2-wrong"))
    message = f"Permission denied (password) for tytest@127.0.0.1:{sshd.port}"
    assert message in page and "check the user name and password" in page
    assert steps_of("gpu-vm")["authenticating"][0] == "failed"
    assert steps_of("gpu-vm")["host_key"][0] == "done"
    assert "hunter2-wrong" not in page
    assert "hunter2-wrong" not in caplog.text
    assert ComputeTarget.objects.get(name="gpu-vm").state == "Failed"


def test_key_not_authorised(sshd, workspace, as_carol):
    private, _ = ssh.generate_key_pair()
    data = form_data(sshd, authentication="key", private_key=private)
    page = attach(as_carol, workspace, data)
    assert f"Permission denied (publickey) for tytest@127.0.0.1:{sshd.port}" in page
    assert "is the public key in ~/.ssh/authorized_keys on the VM?" in page


def test_connection_refused(workspace, as_staff_carol, sshd):
    port = free_port()
    page = attach(as_staff_carol, workspace, form_data(sshd, port=port))
    assert f"Connection refused by tytest@127.0.0.1:{port}" in page
    assert "is sshd running on the VM and listening on port" in page
    assert steps_of("gpu-vm")["connecting"][0] == "failed"


def test_a_host_name_that_does_not_resolve(workspace, as_carol, sshd, offline_thread):
    with offline_thread():
        page = attach(as_carol, workspace, form_data(sshd, address="gpu-box.invalid"))
    assert f"Cannot resolve the host name in tytest@gpu-box.invalid:{sshd.port}" in page
    assert "check its spelling, or use the VM's IP address" in page
    assert steps_of("gpu-vm")["connecting"][0] == "failed"


def test_host_unreachable(netns_host_factory, workspace, as_staff_carol):
    vm = netns_host_factory()
    # The VM's network goes away, as when it is powered off: nobody answers for its address.
    links = subprocess.run(
        ["ip", "-n", vm.namespace, "-o", "link", "show"], capture_output=True, text=True
    ).stdout
    for name in re.findall(r"^\d+: ([^:@]+)", links, re.MULTILINE):
        if name != "lo":
            subprocess.run(["ip", "-n", vm.namespace, "link", "set", name, "down"], check=True)
    page = attach(as_staff_carol, workspace, form_data(vm))
    assert f"Cannot reach tytest@{vm.host}:22" in page
    assert "check the address and that this server has a network route to the VM" in page
    assert steps_of("gpu-vm")["connecting"][0] == "failed"


def test_timeout(workspace, as_staff_carol, sshd, settings):
    settings.COMPUTE_SSH_TIMEOUT = 1
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        page = attach(as_staff_carol, workspace, form_data(sshd, port=port))
    assert f"tytest@127.0.0.1:{port} accepted the connection but did not answer" in page
    assert "within 1 s" in page


@pytest.fixture
def port_that_never_answers():
    """A loopback port whose SYNs go unanswered, as behind a firewall that drops them.

    The listener never accepts, so once its accept queue (backlog 0) is full the
    kernel drops every further connection attempt instead of refusing it.
    """
    with socket.socket() as listener, contextlib.ExitStack() as queued:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):
            filler = queued.enter_context(socket.socket())
            filler.settimeout(0.5)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            pytest.fail("the accept queue of a backlog-0 listener never filled")
        yield port


def test_connect_timeout(workspace, as_staff_carol, sshd, settings, port_that_never_answers):
    settings.COMPUTE_SSH_TIMEOUT = 1
    port = port_that_never_answers
    page = attach(as_staff_carol, workspace, form_data(sshd, port=port))
    assert (
        f"No answer from tytest@127.0.0.1:{port} within 1 s — is the VM running, is the address "
        "right, and does its firewall (network security group) allow SSH from this server?"
    ) in page
    assert steps_of("gpu-vm")["connecting"][0] == "failed"
    assert ComputeTarget.objects.get(name="gpu-vm").state == "Failed"


def test_who_is_not_staff_reads_the_same_words_for_closed_silent_and_not_ssh_ports(
    workspace, as_carol, sshd, settings, port_that_never_answers
):
    settings.COMPUTE_SSH_TIMEOUT = 1
    with socket.socket() as not_ssh:
        not_ssh.bind(("127.0.0.1", 0))
        not_ssh.listen()
        ports = {
            "closed": free_port(),
            "silent": port_that_never_answers,
            "not-ssh": not_ssh.getsockname()[1],
        }
        for name, port in ports.items():
            attach(as_carol, workspace, form_data(sshd, name=name, port=port))
    said = {}
    for name, port in ports.items():
        error = ComputeTarget.objects.get(name=name).error
        assert error == (
            f"Could not connect to 127.0.0.1:{port}: check the address, the port, and that its "
            "firewall lets this server in."
        )
        said[name] = (error.replace(str(port), "PORT"), steps_of(name)["connecting"][0])
    assert len(set(said.values())) == 1


def test_an_address_the_operator_does_not_allow_is_refused_in_the_form_and_the_api(
    workspace, as_carol, api_carol, sshd, settings
):
    settings.OUTBOUND_ALLOW = ["public"]
    for address in ("127.0.0.1", "localhost", "[::1]", "169.254.169.254", "10.1.2.3"):
        response = as_carol.post(attach_url(workspace), form_data(sshd, address=address))
        page = html.unescape(response.content.decode())
        assert f"Trainyard may not connect to {address.strip('[]')}" in page, address
        assert "the server's operator has not allowed that address (setting OUTBOUND_ALLOW)" in page
    api = api_carol.post(
        f"/api/v1/computes/vm?workspace={workspace.slug}",
        form_data(sshd, address="169.254.169.254"),
        content_type="application/json",
    )
    assert api.status_code == 400
    assert "Trainyard may not connect to 169.254.169.254" in api.json()["errors"]["address"][0]
    assert not ComputeTarget.objects.filter(name="gpu-vm").exists()


def test_the_metadata_address_is_refused_while_the_test_networks_are_allowed(
    workspace, as_carol, sshd
):
    page = attach(as_carol, workspace, form_data(sshd, address="169.254.169.254"))
    assert "Trainyard may not connect to 169.254.169.254" in page
    assert not ComputeTarget.objects.filter(name="gpu-vm").exists()


def test_a_target_whose_address_is_no_longer_allowed_is_refused_when_it_connects(
    workspace, as_carol, sshd, settings
):
    attach(as_carol, workspace, form_data(sshd, address="localhost"))
    assert ComputeTarget.objects.get(name="gpu-vm").state == "Succeeded"
    ssh.pool.close_all()
    settings.OUTBOUND_ALLOW = ["public"]
    check = reverse("compute_check", args=[workspace.slug, "gpu-vm"])
    page = html.unescape(as_carol.post(check, follow=True).content.decode())
    assert "Trainyard may not connect to localhost" in page
    assert ComputeTarget.objects.get(name="gpu-vm").state == "Failed"


def test_a_step_shows_another_workspace_s_secret_as_typed(workspace, as_carol, sshd):
    theirs = "other-team-password-0123"
    elsewhere = Workspace.objects.get(name="Charlie's own")
    ComputeTarget.objects.create(
        workspace=elsewhere, name="their-vm", kind="vm", address="127.0.0.1", password=theirs
    )
    # The worker checks every workspace's targets, so it has decrypted this one too.
    assert ComputeTarget.objects.get(workspace=elsewhere, name="their-vm").password == theirs
    attach(as_carol, workspace, form_data(sshd, username=theirs))
    # Whether a guess gets masked tells nothing of other workspaces' secrets.
    assert steps_of("gpu-vm")["connecting"] == (
        "done",
        f"Reached {theirs}@127.0.0.1:{sshd.port}",
    )
    page = page_of(as_carol, workspace, "gpu-vm")
    assert f"{theirs}@127.0.0.1" in page and "******" not in page


def test_host_key_changed_is_refused_and_re_trusted_deliberately(
    sshd_factory, workspace, as_carol, as_alice
):
    server = sshd_factory()
    attach(as_carol, workspace, form_data(server))
    trusted = server.host_key_fingerprint
    server.regenerate_host_key()
    # A rebuilt VM drops the connections it had.
    ssh.pool.close_all()
    check = reverse("compute_check", args=[workspace.slug, "gpu-vm"])
    page = html.unescape(as_carol.post(check, follow=True).content.decode())
    offered = server.host_key_fingerprint
    assert f"The host key of tytest@127.0.0.1:{server.port} has changed: expected {trusted}" in page
    assert f"the server offered {offered}" in page
    assert "Trainyard did not log in" in page
    assert "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub" in page
    assert "Only a workspace owner can trust the new key" in page
    assert steps_of("gpu-vm")["host_key"][0] == "failed"
    assert ComputeTarget.objects.get(name="gpu-vm").host_key_fingerprint == trusted
    retrust = reverse("compute_retrust", args=[workspace.slug, "gpu-vm"])
    assert as_carol.post(retrust, {"fingerprint": offered}).status_code == 403
    detail = reverse("compute_detail", args=[workspace.slug, "gpu-vm"])
    assert f"Re-trust host key {offered}" in as_alice.get(detail).content.decode()

    # Trusting a key the VM does not offer is refused.
    page = html.unescape(
        as_alice.post(retrust, {"fingerprint": "SHA256:forged"}, follow=True).content.decode()
    )
    assert "does not currently offer the host key SHA256:forged" in page

    page = html.unescape(
        as_alice.post(retrust, {"fingerprint": offered}, follow=True).content.decode()
    )
    target = ComputeTarget.objects.get(name="gpu-vm")
    assert (target.state, target.host_key_fingerprint) == ("Succeeded", offered)
    assert f"Matches the pinned {offered}" in page
    assert "The host key changed" not in page


def test_a_target_that_is_not_linux_is_refused(darwin_sshd, workspace, as_carol):
    page = attach(as_carol, workspace, form_data(darwin_sshd))
    assert (
        f"tytest@127.0.0.1:{darwin_sshd.port} runs a Darwin system; "
        "Trainyard runs jobs on Linux VMs only: attach a Linux VM instead." in page
    )
    steps = steps_of("gpu-vm")
    assert [state for state, _ in steps.values()] == ["done", "done", "done", "failed"]
    assert ComputeTarget.objects.get(name="gpu-vm").state == "Failed"
    assert "Facts" not in page


@pytest.fixture
def user_without_docker():
    """A running dockerd whose socket the test user may not use (as on a fresh VM)."""
    subprocess.run(["sh", str(REPO / "scripts" / "start-dockerd.sh")], cwd=REPO, check=True)
    # Other tests put the user in the docker group; take it out for this one only.
    was_member = TEST_USER in grp.getgrnam("docker").gr_mem
    if was_member:
        subprocess.run(
            ["gpasswd", "--delete", TEST_USER, "docker"], check=True, capture_output=True
        )
    yield
    if was_member:
        subprocess.run(["usermod", "--append", "--groups", "docker", TEST_USER], check=True)


def test_user_who_cannot_run_docker_gets_a_warning_not_a_failure(
    sshd, workspace, as_carol, user_without_docker
):
    page = attach(as_carol, workspace, form_data(sshd))
    target = ComputeTarget.objects.get(name="gpu-vm")
    assert target.state == "Succeeded"
    assert "Warning: User tytest cannot run docker: add them to the docker group" in page
    assert "sudo usermod -aG docker tytest" in page
    assert "not usable by tytest" in page
