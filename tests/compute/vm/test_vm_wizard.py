"""Attach a VM in Chromium with a key pair generated in the wizard, against a real sshd."""

import os
import re

import pytest
from playwright.sync_api import expect

from tests.compute.ssh.test_ssh_layer import system_python3_version
from tests.services.live_stack import login

pytestmark = pytest.mark.e2e


def test_attach_a_vm_with_a_generated_key_pair(page, live_stack, sshd):
    login(page, live_stack, "carol")
    page.get_by_role("navigation", name="Studio").get_by_role("link", name="Compute").click()
    page.get_by_text("+ New").click()
    page.get_by_role("link", name="Attach → Virtual machine").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Attach a virtual machine")

    page.get_by_label("Compute name").fill("e2e-vm")
    page.get_by_label("Address or Azure resource ID").fill(sshd.host)
    expect(page.get_by_label("SSH port")).to_have_value("22")
    page.get_by_label("SSH port").fill(str(sshd.port))
    page.get_by_label("Username").fill(sshd.username)
    # Only the chosen method's fields are shown.
    expect(page.locator("input#id_password")).to_be_hidden()
    page.get_by_role("radio", name="Generate a key pair here").check()
    expect(page.get_by_label("Private key", exact=True)).to_be_hidden()
    page.get_by_role("button", name="Generate key pair").click()

    public_key = page.get_by_label("Public key").input_value()
    assert re.fullmatch(r"ssh-ed25519 [A-Za-z0-9+/=]+ trainyard", public_key)
    expect(page.get_by_label("Command to run on the VM")).to_have_value(
        re.compile(re.escape(f"echo '{public_key}' >> ~/.ssh/authorized_keys"))
    )
    expect(page.get_by_label("Compute name")).to_have_value("e2e-vm")

    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_stack.url)
    key_row = page.locator(".copyrow").filter(has=page.locator("#generated-public-key"))
    key_row.get_by_role("button", name="Copy").click()
    expect(key_row.get_by_role("status")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == public_key
    # Opened over plain HTTP at a LAN address, the page has no navigator.clipboard.
    page.evaluate(
        "window.clipboardForTest = navigator.clipboard;"
        "Object.defineProperty(navigator, 'clipboard', {value: undefined})"
    )
    command_row = page.locator(".copyrow").filter(has=page.locator("#authorize-command"))
    command_row.get_by_role("button", name="Copy").click()
    expect(command_row.get_by_role("status")).to_have_text("Copied")
    command = page.get_by_label("Command to run on the VM").input_value()
    assert page.evaluate("window.clipboardForTest.readText()") == command
    sshd.authorize(public_key)

    page.get_by_role("button", name="Attach", exact=True).click()
    expect(page).to_have_url(re.compile(r"/compute/e2e-vm/$"))
    # The status refreshes by itself while the background check runs.
    status = page.locator("#status-heading")
    expect(status).to_contain_text("Succeeded", timeout=20_000)
    steps = page.get_by_role("list", name="Steps")
    expect(steps).to_contain_text(f"First contact: pinned {sshd.host_key_fingerprint}")
    expect(steps).to_contain_text("Logged in as tytest with an SSH key")
    facts = page.locator("#facts-heading + dl")
    for label, value in (
        ("Kernel", os.uname().release),
        ("Architecture", os.uname().machine),
        ("CPUs", str(os.cpu_count())),
        ("Python 3", system_python3_version()),
    ):
        expect(facts.locator(f"dt:text-is('{label}') + dd")).to_have_text(value)
    for label in ("Operating system", "Memory", "Disk free (home)", "Docker"):
        expect(facts.locator(f"dt:text-is('{label}') + dd")).not_to_be_empty()
    expect(page.get_by_label("Public key")).to_have_value(public_key)

    page.get_by_role("navigation", name="Studio").get_by_role("link", name="Compute").click()
    row = page.get_by_role("row").filter(has_text="e2e-vm")
    expect(row).to_contain_text("Virtual machine")
    expect(row).to_contain_text("Succeeded")
    expect(row).to_contain_text(sshd.host)
