"""A terminal on a VM in Chromium: the live stack, a real sshd, xterm.js over the websocket."""

import re

import pytest
from playwright.sync_api import expect

from compute import ssh
from tests.runs.logs.test_log_viewer import python
from tests.services.live_stack import login

pytestmark = pytest.mark.e2e

ATTACHED_VM = """
import sys, django; django.setup()
from django.contrib.auth import get_user_model
from compute.models import AuthMethod, ComputeKind, ComputeState, ComputeTarget
from studio.models import Workspace
host, port, user, fingerprint, name = sys.argv[1:6]
ComputeTarget.objects.create(
    workspace=Workspace.objects.get(slug=%r), name=name, kind=ComputeKind.VM,
    state=ComputeState.SUCCEEDED, address=host, port=int(port), username=user,
    auth_method=AuthMethod.KEY, private_key=sys.stdin.read(), host_key_fingerprint=fingerprint,
    created_by=get_user_model().objects.get(username="alice"),
)
"""


def attach(live_stack, sshd, name: str) -> None:
    private_key, public_line = ssh.generate_key_pair()
    sshd.authorize(public_line)
    args = (sshd.host, str(sshd.port), sshd.username, sshd.host_key_fingerprint, name)
    python(live_stack, ATTACHED_VM % live_stack.workspace_slug, *args, stdin=private_key.encode())


# The terminal's buffer as text, row by row.
LINES = """(() => {
    const buffer = window.trainyardTerminal.term.buffer.active;
    const rows = [];
    for (let i = 0; i < buffer.length; i++) {
        rows.push(buffer.getLine(i).translateToString(true));
    }
    return rows;
})()"""


def test_type_a_command_in_a_vm_terminal_and_see_its_output(page, live_stack, sshd):
    attach(live_stack, sshd, "term-vm")
    login(page, live_stack, "carol")
    page.goto(f"{live_stack.url}/w/{live_stack.workspace_slug}/compute/term-vm/")
    expect(page.get_by_text("No terminal opened yet.")).to_be_visible()
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Terminal", exact=True).click()
    terminal = opened.value
    expect(terminal.get_by_role("heading", level=1)).to_have_text("Terminal on term-vm")
    expect(terminal.get_by_role("status")).to_have_text("Connected.", timeout=20_000)
    terminal.locator(".xterm").click()
    terminal.keyboard.type("echo typed-$((6*7)); whoami; stty size\n")
    terminal.wait_for_function(f"() => {LINES}.includes('typed-42')", timeout=15_000)
    shown = terminal.evaluate(LINES)
    assert sshd.username in shown
    # The pty has the size xterm.js fitted to the page, not the 80x24 it opened with.
    rows, cols = terminal.evaluate(
        "[window.trainyardTerminal.term.rows, window.trainyardTerminal.term.cols]"
    )
    assert f"{rows} {cols}" in shown and (rows, cols) != (24, 80)

    # Copy: xterm's selection is the text on the screen.
    terminal.evaluate("window.trainyardTerminal.term.selectAll()")
    assert "typed-42" in terminal.evaluate("window.trainyardTerminal.term.getSelection()")

    # Closing the page ends the shell; the session is listed on the VM's page.
    terminal.close()
    page.reload()
    sessions = page.locator("#terminal-sessions + table")
    expect(sessions).to_contain_text("carol")
    expect(sessions).to_contain_text("closed by the user", timeout=10_000)
    expect(sessions.locator("td").nth(3)).to_have_text(re.compile(r"\d+(\.\d)? s|\d+ min"))
