"""A VM goes away mid-run and comes back (or does not): what the user sees, what is kept.

The VM is a real sshd: on a loopback port (its sshd killed) or in a network namespace of
its own (its link set down). The run keeps running detached on the VM meanwhile.
"""

import re
import time

import pytest
from django.urls import reverse

from compute import ssh
from compute.models import AuthMethod, ComputeKind, ComputeState, ComputeTarget
from runs.logs import store as logstore
from runs.models import RunStatus
from studio.blobs import blob_path
from tests.conftest import api_client_for, client_for
from tests.support.runs import running_monitor, submit, wait_final, wait_for, write_tree
from tests.support.vm import page_of

pytestmark = pytest.mark.django_db(transaction=True)

# Prints numbered lines (and keeps a copy in outputs/) until the test drops the marker.
CHATTY = """\
import os, sys, time
marker = sys.argv[1]
os.makedirs("outputs", exist_ok=True)
copy = open("outputs/printed.txt", "w")
i = 0
while not os.path.exists(marker) and i < 1500:
    line = f"line {i:05d} " + "x" * 50 + "\\n"
    sys.stdout.write(line)
    sys.stdout.flush()
    copy.write(line)
    copy.flush()
    i += 1
    time.sleep(0.1)
sys.stdout.write("done\\n")
copy.write("done\\n")
"""


def attached(server, workspace, alice, name: str) -> ComputeTarget:
    private_key, public_line = ssh.generate_key_pair()
    server.authorize(public_line)
    return ComputeTarget.objects.create(
        workspace=workspace,
        name=name,
        kind=ComputeKind.VM,
        state=ComputeState.SUCCEEDED,
        address=server.host,
        port=server.port,
        username=server.username,
        auth_method=AuthMethod.KEY,
        private_key=private_key,
        host_key_fingerprint=server.host_key_fingerprint,
        created_by=alice,
    )


def start_chatty(tmp_path, shared_dir, workspace, alice, vm):
    marker = shared_dir / "stop"
    source = write_tree(tmp_path / "src", {"train.py": CHATTY})
    run = submit(workspace=workspace, user=alice, target=vm, source=source, arguments=[str(marker)])
    wait_for(run, [RunStatus.RUNNING])
    deadline = time.monotonic() + 30
    while b"line 00005" not in logstore.read(run.pk, "stdout")[0]:
        assert time.monotonic() < deadline, "the run printed nothing"
        time.sleep(0.1)
    return run, marker


def api_target(alice, workspace, name: str) -> dict:
    response = api_client_for(alice).get(f"/api/v1/computes/{name}?workspace={workspace.slug}")
    assert response.status_code == 200
    return response.json()


def wait_unreachable(alice, workspace, name: str, reason: str, timeout: float) -> dict:
    """The target as the API shows it once it says Unreachable for `reason`."""
    deadline = time.monotonic() + timeout
    while True:
        shown = api_target(alice, workspace, name)
        if shown["unreachable_since"] and reason in shown["unreachable_reason"]:
            return shown
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)


def assert_pages_say_unreachable(alice, workspace, name: str, reason: str) -> None:
    client = client_for(alice)
    for page in (
        page_of(client, workspace, name),
        client.get(reverse("compute_list", args=[workspace.slug])).content.decode(),
    ):
        text = re.sub(r"<[^>]+>", "", page)
        match = re.search(r"Unreachable since \d\d:\d\d \((\d+ s|\d+ min)\): ([^\n]*)", text)
        assert match, text
        assert reason in match.group(2)


def assert_log_whole(run) -> None:
    """The stored log is what the script printed, byte for byte: no line lost or repeated."""
    stored = logstore.read(run.pk, "stdout")[0]
    kept = run.files.get(path="outputs/printed.txt")
    assert stored == blob_path(kept.sha256).read_bytes()
    count = stored.count(b"\n") - 1
    expected = "".join(f"line {i:05d} " + "x" * 50 + "\n" for i in range(count)) + "done\n"
    assert stored == expected.encode()


def outage(run, alice, workspace, vm, *, away, back, seconds: float, reason: str) -> None:
    """Take the VM away for `seconds`, check what the user sees meanwhile, bring it back."""
    began = time.monotonic()
    away()
    wait_for(run, [RunStatus.NOT_RESPONDING], timeout=45)
    noticed = time.monotonic() - began
    shown = wait_unreachable(alice, workspace, vm.name, reason, timeout=30)
    assert_pages_say_unreachable(alice, workspace, vm.name, reason)
    run.refresh_from_db()
    assert run.status == RunStatus.NOT_RESPONDING
    assert shown["state"] == "Succeeded"
    time.sleep(max(0.0, seconds - (time.monotonic() - began)))
    back()
    returned = time.monotonic()
    wait_for(run, [RunStatus.RUNNING], timeout=60)
    recovered = time.monotonic() - returned
    assert api_target(alice, workspace, vm.name)["unreachable_since"] is None
    print(f"\n{vm.name}: NotResponding after {noticed:.1f} s, Running {recovered:.1f} s later")


@pytest.mark.outage
def test_sshd_killed_for_30_s_the_run_goes_on_and_its_log_is_whole(
    tmp_path, shared_dir, sshd_factory, workspace, alice
):
    server = sshd_factory()
    vm = attached(server, workspace, alice, "away-vm")
    with running_monitor():
        run, marker = start_chatty(tmp_path, shared_dir, workspace, alice, vm)
        outage(
            run,
            alice,
            workspace,
            vm,
            away=server.kill,
            back=server.start,
            seconds=30,
            # Alice is no staff member: she is not told whether the port was closed.
            reason=f"Could not connect to 127.0.0.1:{server.port}",
        )
        marker.touch()
        run = wait_final(run)
    assert run.status == RunStatus.COMPLETED, run.error
    assert_log_whole(run)
    assert "NotResponding" in [e.status for e in run.events.all()]


@pytest.mark.outage
def test_network_cut_for_60_s_the_run_goes_on_and_its_log_is_whole(
    tmp_path, shared_dir, netns_host_factory, workspace, alice
):
    server = netns_host_factory()
    vm = attached(server, workspace, alice, "cut-vm")
    with running_monitor():
        run, marker = start_chatty(tmp_path, shared_dir, workspace, alice, vm)
        outage(
            run,
            alice,
            workspace,
            vm,
            away=lambda: server.set_link("down"),
            back=lambda: server.set_link("up"),
            seconds=60,
            reason=f"{server.host}:22",
        )
        marker.touch()
        run = wait_final(run)
    assert run.status == RunStatus.COMPLETED, run.error
    assert_log_whole(run)


def test_a_vm_away_past_the_limit_fails_its_run_and_keeps_queued_ones_waiting(
    tmp_path, shared_dir, sshd_factory, workspace, alice, settings
):
    settings.TARGET_UNREACHABLE_LIMIT_SECONDS = 3
    server = sshd_factory()
    vm = attached(server, workspace, alice, "gone-vm")
    with running_monitor():
        run, marker = start_chatty(tmp_path, shared_dir, workspace, alice, vm)
        server.kill()
        run = wait_final(run, timeout=30)
    marker.touch()
    assert run.status == RunStatus.FAILED
    assert re.fullmatch(
        r"The target gone-vm has not answered for 3 s \(since \d\d:\d\d\): Could not connect "
        rf"to 127\.0\.0\.1:{server.port}: .* The run's processes may still be running "
        "on it.",
        run.error,
    ), run.error
    page = client_for(alice).get(reverse("run_detail", args=[workspace.slug, run.pk]))
    assert "has not answered for 3 s" in page.content.decode()

    # A run that has not started anywhere waits for the VM, and says so.
    queued = submit(
        workspace=workspace,
        user=alice,
        target=vm,
        source=write_tree(tmp_path / "later", {"train.py": "print('later')\n"}),
    )
    queued.refresh_from_db()
    assert queued.status == RunStatus.QUEUED
    assert queued.status_reason.startswith("Target unreachable for more than 3 s (since "), (
        queued.status_reason
    )
    assert "the run starts when gone-vm answers again; cancel it to stop waiting" in (
        queued.status_reason
    )

    # Back, and checked from its page or the API: the mark goes at once.
    server.start()
    api = api_client_for(alice)
    response = api.post(f"/api/v1/computes/gone-vm/check?workspace={workspace.slug}")
    assert response.status_code == 202
    shown = api_target(alice, workspace, "gone-vm")
    assert (shown["state"], shown["unreachable_since"], shown["unreachable_reason"]) == (
        "Succeeded",
        None,
        "",
    )
