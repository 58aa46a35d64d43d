"""Attaching VMs through the wizard against real sshd servers (tests/services/sshd.py, netns.py).

Tasks run eagerly (tests/settings.py), so a submitted form has finished its
check when the response comes back; the pages are read as a user would.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse

from compute import ssh
from compute.models import ComputeOperation, ComputeTarget
from compute.templatetags.compute_format import mib
from compute.vm import services
from runs.models import Experiment, Run
from studio.errors import ServiceError
from tests.compute.ssh.test_ssh_layer import logged_in_ports, ssh_keygen, system_python3_version
from tests.support.cloud import wait_until
from tests.support.vm import (
    attach,
    attach_url,
    form_data,
    logins,
    page_of,
    steps_of,
)

pytestmark = pytest.mark.django_db(transaction=True)


def facts_of(page: str) -> dict[str, str]:
    """The Facts section of a target's page, label by label."""
    section = page.split('id="facts-heading"', 1)[1].split("</section>", 1)[0]
    return {
        label: re.sub(r"<[^>]+>", "", value).strip()
        for label, value in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", section, re.DOTALL)
    }


def os_release(key: str) -> str:
    return subprocess.run(
        ["sh", "-c", f". /etc/os-release; echo ${key}"], capture_output=True, text=True
    ).stdout.strip()


def meminfo_kib(key: str) -> int:
    return int(Path("/proc/meminfo").read_text().split(f"{key}:")[1].split()[0])


# ---------------------------------------------------------------- attaching


def test_attach_with_password_pins_host_key_and_shows_facts(sshd, workspace, as_carol, as_bob):
    page = attach(as_carol, workspace, form_data(sshd))
    assert "Attaching gpu-vm" in page
    assert "State: Succeeded" in re.sub(r"<[^>]+>|\s+", " ", page).replace("  ", " ")
    assert f"First contact: pinned {sshd.host_key_fingerprint} (ssh-ed25519)" in page
    assert sshd.password not in page
    assert [state for state, _ in steps_of("gpu-vm").values()] == ["done"] * 4

    # Anyone in the workspace sees the facts of the VM and who attached it.
    page = page_of(as_bob, workspace, "gpu-vm")
    facts = facts_of(page)
    assert facts["Operating system"] == (
        f"{os_release('PRETTY_NAME')} (version {os_release('VERSION_ID')})"
    )
    assert facts["Kernel"] == os.uname().release
    assert facts["Architecture"] == os.uname().machine
    assert facts["CPUs"] == str(os.cpu_count())
    assert facts["Memory"] == mib(meminfo_kib("MemTotal") // 1024)
    assert facts["Python 3"] == system_python3_version()
    assert facts["Disk free (home)"].endswith(" GiB")
    assert "Attached by" in page and "carol" in page
    assert "Re-check" not in page  # bob reads only

    listing = as_bob.get(reverse("compute_list", args=[workspace.slug])).content.decode()
    assert "gpu-vm" in listing and "Virtual machine" in listing and sshd.host in listing
    assert ">local<" in listing


@pytest.mark.parametrize(
    ("key_type", "key_format", "how"),
    [("rsa", "PEM", "paste"), ("ed25519", "RFC4716", "upload"), ("ecdsa", "PEM", "paste")],
)
def test_attach_with_a_key_in_the_format_users_have(
    sshd, workspace, as_carol, tmp_path, key_type, key_format, how
):
    private, public = ssh_keygen(tmp_path, key_type, key_format)
    sshd.authorize(public)
    data = form_data(sshd, authentication="key", password="")
    files = {}
    if how == "paste":
        data["private_key"] = private
    else:
        files["private_key_file"] = (tmp_path / f"id_{key_type}_{key_format}").open("rb")
    page = attach(as_carol, workspace, data, files)
    assert "Logged in as tytest with an SSH key" in page
    target = ComputeTarget.objects.get(name="gpu-vm")
    assert target.state == "Succeeded" and target.auth_method == "key"
    assert private.strip().splitlines()[1] not in page


def test_attach_with_a_passphrase_protected_key(sshd, workspace, as_carol, tmp_path):
    private, public = ssh_keygen(tmp_path, "ed25519", "RFC4716", passphrase="open sesame")
    sshd.authorize(public)
    data = form_data(sshd, authentication="key", private_key=private, passphrase="open sesame")
    page = attach(as_carol, workspace, data)
    assert ComputeTarget.objects.get(name="gpu-vm").state == "Succeeded"
    assert "open sesame" not in page


def test_generate_a_key_pair_in_the_wizard(sshd, workspace, as_carol):
    data = form_data(sshd, authentication="generate", password="")
    page = attach(as_carol, workspace, data | {"generate": "1"})
    public = re.findall(r'id="generated-public-key" readonly value="([^"]+)"', page)[0]
    assert public.startswith("ssh-ed25519 ") and public.endswith(" trainyard")
    assert f"echo '{public}' >> ~/.ssh/authorized_keys" in page
    assert "PRIVATE KEY" not in page
    # The form kept what the user typed, so they only add the key and press Attach.
    assert 'value="gpu-vm"' in page
    token = re.findall(r'name="generated_key" value="([^"]+)"', page)[0]

    sshd.authorize(public)
    page = attach(as_carol, workspace, data | {"generated_key": token})
    target = ComputeTarget.objects.get(name="gpu-vm")
    assert target.state == "Succeeded", target.error
    assert target.config["public_key"] == public
    assert public in page  # shown again on the detail page, to add it to more VMs


def test_two_vms_at_their_own_addresses(netns_host_factory, workspace, as_alice):
    first, second = netns_host_factory(), netns_host_factory()
    attach(as_alice, workspace, form_data(first, name="vm-a"))
    attach(as_alice, workspace, form_data(second, name="vm-b"))
    a, b = ComputeTarget.objects.get(name="vm-a"), ComputeTarget.objects.get(name="vm-b")
    assert (a.state, b.state) == ("Succeeded", "Succeeded")
    assert a.address != b.address
    assert a.host_key_fingerprint == first.host_key_fingerprint
    assert b.host_key_fingerprint == second.host_key_fingerprint


# ---------------------------------------------------------------- the wizard's own checks


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a", "2–16 characters"),
        ("9lives", "a letter first"),
        ("gpu_vm", "letters, digits or hyphens"),
        ("a-very-long-name-x", "16 characters"),
        ("LOCAL", "already has a compute target called LOCAL"),
    ],
)
def test_compute_name_rules(sshd, workspace, as_carol, name, message):
    page = attach(as_carol, workspace, form_data(sshd, name=name))
    assert message in page
    assert not ComputeTarget.objects.filter(kind="virtualmachine").exists()


def test_resource_id_is_stored_and_a_reachable_address_is_asked_for(sshd, workspace, as_carol):
    resource_id = (
        "/subscriptions/0000-1111/resourceGroups/ml-rg/providers/"
        "Microsoft.Compute/virtualMachines/gpu-box"
    )
    page = attach(as_carol, workspace, form_data(sshd, address=resource_id))
    assert "A resource ID names the VM but cannot be connected to" in page
    attach(as_carol, workspace, form_data(sshd, address=resource_id, reachable_address=sshd.host))
    target = ComputeTarget.objects.get(name="gpu-vm")
    assert (target.resource_id, target.address, target.state) == (
        resource_id,
        sshd.host,
        "Succeeded",
    )
    assert resource_id in page_of(as_carol, workspace, "gpu-vm")


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("tytest@10.0.0.4", "the user name goes in the Username field"),
        ("10.0.0.4:2222", "the port has its own field"),
        ("/subscriptions/x/resourceGroups", "incomplete"),
        ("my vm", "Enter a DNS name"),
    ],
)
def test_address_mistakes_are_explained(sshd, workspace, as_carol, address, message):
    assert message in attach(as_carol, workspace, form_data(sshd, address=address))


def test_the_wizard_explains_keys(workspace, as_carol):
    page = html.unescape(as_carol.get(attach_url(workspace)).content.decode())
    assert "SSH key (recommended)" in page and "SSH keys are recommended" in page
    assert "ssh-keygen -t ed25519 -f ~/.ssh/trainyard -C trainyard" in page
    assert "ssh-copy-id" in page
    assert 'name="port" value="22"' in page
    for label in ("Compute name", "Address or Azure resource ID", "SSH port", "Username"):
        assert f">{label}" in page


# ---------------------------------------------------------------- later operations


def test_re_check_reuses_the_pooled_connection(sshd_factory, workspace, as_carol):
    server = sshd_factory()
    attach(as_carol, workspace, form_data(server))
    check = reverse("compute_check", args=[workspace.slug, "gpu-vm"])
    as_carol.post(check)
    after_first_check = logins(server)
    for _ in range(3):
        as_carol.post(check)
    assert logins(server) == after_first_check
    assert ComputeOperation.objects.filter(target_name="gpu-vm", state="Succeeded").count() == 5


def test_credentials_saved_by_another_process_replace_the_pooled_login(
    sshd_factory, workspace, as_carol, tmp_path
):
    server = sshd_factory()
    attach(as_carol, workspace, form_data(server))
    check = reverse("compute_check", args=[workspace.slug, "gpu-vm"])
    as_carol.post(check)
    [pooled_login] = wait_until(lambda: len(logins := logged_in_ports(server)) == 1 and logins)

    # Another process (a web server, a worker) saves a key instead of the password;
    # nothing tells this process's pool.
    private, public = ssh_keygen(tmp_path, "ed25519", "RFC4716")
    server.authorize(public)
    target = ComputeTarget.objects.get(name="gpu-vm")
    target.auth_method, target.private_key, target.password = "key", private, ""
    target.save()

    page = html.unescape(as_carol.post(check, follow=True).content.decode())
    assert "Logged in as tytest with an SSH key" in page
    assert server.log.read_text().count("Accepted publickey for tytest") == 1
    [key_login] = wait_until(lambda: len(logins := logged_in_ports(server)) == 1 and logins)
    assert key_login != pooled_login
    as_carol.post(check)
    assert logged_in_ports(server) == {key_login}


def test_a_target_detached_by_another_process_loses_its_pooled_login(
    sshd_factory, sshd, workspace, as_carol, monkeypatch
):
    server = sshd_factory()
    attach(as_carol, workspace, form_data(server))
    attach(as_carol, workspace, form_data(sshd, name="other-vm"))
    as_carol.post(reverse("compute_check", args=[workspace.slug, "gpu-vm"]))
    wait_until(lambda: len(logged_in_ports(server)) == 1, what="the pooled login")

    monkeypatch.setattr(ssh.pool, "idle_seconds", 0.5)
    # Another process detaches gpu-vm; nothing tells this process's pool.
    ComputeTarget.objects.filter(name="gpu-vm").delete()
    time.sleep(1)
    as_carol.post(reverse("compute_check", args=[workspace.slug, "other-vm"]))
    wait_until(lambda: not logged_in_ports(server), what="the detached target's login closed")


def test_edit_credentials_re_runs_the_check(sshd, workspace, as_carol, as_alice, tmp_path):
    attach(as_carol, workspace, form_data(sshd, password="wrong-password-1"))
    assert ComputeTarget.objects.get(name="gpu-vm").state == "Failed"
    url = reverse("compute_credentials", args=[workspace.slug, "gpu-vm"])
    assert as_carol.get(url).status_code == 403
    page = as_alice.get(url).content.decode()
    assert "wrong-password-1" not in page and 'value="tytest"' in page

    private, public = ssh_keygen(tmp_path, "ed25519", "RFC4716")
    sshd.authorize(public)
    response = as_alice.post(
        url, {"username": "tytest", "authentication": "key", "private_key": private}, follow=True
    )
    page = html.unescape(response.content.decode())
    assert "New credentials saved for gpu-vm: checking them now." in page
    target = ComputeTarget.objects.get(name="gpu-vm")
    assert (target.state, target.auth_method, target.password) == ("Succeeded", "key", "")
    operation = ComputeOperation.objects.filter(target_name="gpu-vm").first()
    assert operation is not None and operation.action == "credentials"


def test_detach_removes_target_and_secrets_runs_keep_history(sshd, workspace, alice, as_carol):
    attach(as_carol, workspace, form_data(sshd))
    target = ComputeTarget.objects.get(name="gpu-vm")
    experiment = Experiment.objects.create(workspace=workspace, name="mnist", created_by=alice)
    run = Run.objects.create(
        workspace=workspace,
        experiment=experiment,
        number=1,
        status="Completed",
        target=target,
        target_name=target.name,
        submitted_by=alice,
    )
    url = reverse("compute_detach", args=[workspace.slug, "gpu-vm"])
    page = html.unescape(as_carol.get(url).content.decode())
    assert "1 run used it: they keep their logs" in page
    page = html.unescape(as_carol.post(url, follow=True).content.decode())
    assert "gpu-vm was detached and its credentials deleted" in page
    assert not ComputeTarget.objects.filter(name="gpu-vm").exists()
    run.refresh_from_db()
    assert (run.target, run.target_name, run.status) == (None, "gpu-vm", "Completed")
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM compute_computetarget WHERE name = 'gpu-vm'")
        assert cursor.fetchone()[0] == 0
    assert ComputeOperation.objects.filter(target_name="gpu-vm", action="detach").exists()


def run_on(target, user, number: int, status: str) -> Run:
    experiment, _ = Experiment.objects.get_or_create(
        workspace=target.workspace, name="mnist", defaults={"created_by": user}
    )
    return Run.objects.create(
        workspace=target.workspace,
        experiment=experiment,
        number=number,
        status=status,
        target=target,
        target_name=target.name,
        submitted_by=user,
    )


def test_detach_is_refused_while_runs_have_not_ended(sshd, workspace, alice, as_carol):
    attach(as_carol, workspace, form_data(sshd))
    target = ComputeTarget.objects.get(name="gpu-vm")
    run_on(target, alice, 1, "Completed")
    running, queued = run_on(target, alice, 2, "Running"), run_on(target, alice, 3, "Queued")
    refusal = (
        "gpu-vm still has 2 runs that have not ended: mnist #2 (Running), mnist #3 (Queued). "
        "Cancel them or wait until they end, then detach gpu-vm."
    )
    url = reverse("compute_detach", args=[workspace.slug, "gpu-vm"])
    page = html.unescape(as_carol.get(url).content.decode())
    assert refusal in page
    assert "Detach gpu-vm</button>" not in page
    page = html.unescape(as_carol.post(url, follow=True).content.decode())
    assert refusal in page
    assert ComputeTarget.objects.filter(name="gpu-vm").exists()

    Run.objects.filter(pk__in=[running.pk, queued.pk]).update(status="Canceled")
    page = html.unescape(as_carol.post(url, follow=True).content.decode())
    assert "gpu-vm was detached and its credentials deleted" in page


def test_local_target_cannot_be_detached(workspace, as_alice):
    url = reverse("compute_detach", args=[workspace.slug, "local"])
    page = html.unescape(as_alice.post(url, follow=True).content.decode())
    assert "The built-in local target is part of every workspace" in page
    assert ComputeTarget.objects.filter(workspace=workspace, name="local").exists()


def test_secrets_are_encrypted_at_rest_and_never_in_operations(sshd, workspace, as_carol):
    attach(as_carol, workspace, form_data(sshd, password="wrong-but-secret-9"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM compute_computetarget WHERE name = 'gpu-vm'")
        stored = cursor.fetchone()[0]
    assert stored and "wrong-but-secret-9" not in stored
    target = ComputeTarget.objects.get(name="gpu-vm")
    assert target.password == "wrong-but-secret-9"
    operation = ComputeOperation.objects.get(target_name="gpu-vm")
    assert "wrong-but-secret-9" not in str(operation.steps) + operation.error + target.error


def test_busy_target_refuses_a_second_operation(sshd, workspace, carol):
    target = ComputeTarget.objects.create(
        workspace=workspace,
        name="busy-vm",
        kind="virtualmachine",
        address=sshd.host,
        port=sshd.port,
        username=sshd.username,
        auth_method="password",
        password=sshd.password,
    )
    ComputeOperation.objects.create(
        target=target, workspace=workspace, target_name="busy-vm", action="attach"
    )
    with pytest.raises(ServiceError, match="busy-vm is busy"):
        services.compute_check(target=target, user=carol)


def test_switch_to_a_key_generated_on_the_credentials_page(sshd, workspace, as_carol, as_alice):
    attach(as_carol, workspace, form_data(sshd))
    url = reverse("compute_credentials", args=[workspace.slug, "gpu-vm"])
    page = html.unescape(
        as_alice.post(url, {"username": "tytest", "generate": "1"}).content.decode()
    )
    public = re.findall(r'id="generated-public-key" readonly value="([^"]+)"', page)[0]
    token = re.findall(r'name="generated_key" value="([^"]+)"', page)[0]
    sshd.authorize(public)
    as_alice.post(url, {"username": "tytest", "authentication": "generate", "generated_key": token})
    target = ComputeTarget.objects.get(name="gpu-vm")
    assert (target.state, target.auth_method, target.password) == ("Succeeded", "key", "")
    assert target.config["public_key"] == public
    assert public in page_of(as_carol, workspace, "gpu-vm")


def test_first_contact_pins_the_host_key_even_when_the_login_fails(sshd, workspace, as_carol):
    page = attach(as_carol, workspace, form_data(sshd, password="not-it-at-all"))
    assert f"<code>{sshd.host_key_fingerprint}</code> (ssh-ed25519), pinned" in page
    target = ComputeTarget.objects.get(name="gpu-vm")
    assert (target.state, target.host_key_fingerprint) == ("Failed", sshd.host_key_fingerprint)
