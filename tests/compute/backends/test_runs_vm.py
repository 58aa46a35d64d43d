"""Runs on an attached VM over SSH, against a real sshd (the VM is this machine, as `tytest`)."""

import secrets

import pytest
from django.urls import reverse

from compute import ssh
from compute.models import AuthMethod, ComputeKind, ComputeState, ComputeTarget
from compute.vm.services import ssh_target
from runs.logs import store as logstore
from runs.models import RunStatus
from runs.services.lifecycle import run_cancel, runs_dispatch
from tests.conftest import client_for
from tests.support.runs import (
    BIG_OUTPUT,
    assert_big_output_kept,
    running_monitor,
    submit,
    wait_final,
    wait_for,
    write_tree,
)

pytestmark = pytest.mark.django_db(transaction=True)

STUBBORN = """\
import signal, subprocess, sys, time
marker = sys.argv[1]
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
for _ in range(2):
    subprocess.Popen([sys.executable, "-c", child, marker])
subprocess.Popen(["sh", "-c", f"sleep 600; echo {marker}"])
# Leaves the run's process group: only the run's mark still finds it.
subprocess.Popen([sys.executable, "-c", child, marker], start_new_session=True)
print("children started", flush=True)
time.sleep(600)
"""


@pytest.fixture
def vm(sshd, workspace, alice):
    private_key, public_line = ssh.generate_key_pair()
    sshd.authorize(public_line)
    ssh.pool.close_all()
    yield ComputeTarget.objects.create(
        workspace=workspace,
        name="test-vm",
        kind=ComputeKind.VM,
        state=ComputeState.SUCCEEDED,
        address=sshd.host,
        port=sshd.port,
        username=sshd.username,
        auth_method=AuthMethod.KEY,
        private_key=private_key,
        host_key_fingerprint=sshd.host_key_fingerprint,
        created_by=alice,
    )
    ssh.pool.close_all()


def on_target(vm, command: str) -> str:
    with ssh.connect(ssh_target(vm)) as connection:
        code, out, err = connection.run(["sh", "-c", command])
    return out


def test_a_vm_run_completes_with_outputs_and_metrics(tmp_path, workspace, alice, vm):
    source = write_tree(
        tmp_path / "src",
        {
            "train.py": (
                "import getpass\nfrom trainyard import run\n"
                "print('hello from', getpass.getuser())\n"
                "run.log_list('loss', [0.9, 0.4])\n"
                "open('outputs/result.txt', 'w').write('ok')\n" + BIG_OUTPUT
            )
        },
    )
    with running_monitor():
        run = wait_final(submit(workspace=workspace, user=alice, target=vm, source=source))
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert logstore.read(run.pk, "stdout")[0].startswith(b"hello from tytest\nbig ")
    assert list(run.metrics.values_list("name", "step", "value")) == [
        ("loss", 0, 0.9),
        ("loss", 1, 0.4),
    ]
    assert [f.path for f in run.files.all()] == ["outputs/big.bin", "outputs/result.txt"]
    assert_big_output_kept(run)
    # The work directory on the VM is cleaned up once the outputs are collected.
    assert run.handle is not None
    assert (
        on_target(vm, f"ls {run.handle['run_dir']} 2>&1 || true")
        .strip()
        .endswith("No such file or directory")
    )


def test_second_submit_of_the_same_folder_uploads_only_the_changed_file(
    tmp_path, workspace, alice, vm
):
    unique = secrets.token_hex(8)
    source = write_tree(
        tmp_path / "src",
        {
            "train.py": f"print('{unique}')\n",
            "lib/helpers.py": f"VALUE = '{unique}'\n",
            "data/config.json": f'{{"run": "{unique}"}}\n',
        },
    )
    with running_monitor():
        first = wait_final(submit(workspace=workspace, user=alice, target=vm, source=source))
        (source / "lib" / "helpers.py").write_text(f"VALUE = '{unique}-changed'\n")
        second = wait_final(submit(workspace=workspace, user=alice, target=vm, source=source))
    assert first.status == second.status == RunStatus.COMPLETED
    assert first.handle is not None and second.handle is not None
    assert first.handle["uploaded_files"] == 3
    assert second.handle["uploaded_files"] == 1
    assert second.handle["reused_files"] == 2
    starting = second.events.get(status=RunStatus.STARTING)
    assert starting.message.startswith("1 changed file(s) uploaded")


def test_cancel_leaves_no_process_of_the_run_on_the_vm(tmp_path, workspace, alice, vm, settings):
    settings.RUN_CANCEL_GRACE_SECONDS = 2
    marker = f"ty-cancel-{secrets.token_hex(6)}"
    source = write_tree(tmp_path / "src", {"train.py": STUBBORN})
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=vm, source=source, arguments=[marker])
        wait_for(run, [RunStatus.RUNNING])
        while b"children started" not in logstore.read(run.pk, "stdout")[0]:
            run.refresh_from_db()
            assert run.status == RunStatus.RUNNING, run.error
        assert int(on_target(vm, f"ps -eo args | grep -c [{marker[0]}]{marker[1:]}")) == 5
        assert run_cancel(run=run, user=alice)
        run = wait_final(run)
    assert run.status == RunStatus.CANCELED
    assert "Canceled by alice" in run.events.get(status=RunStatus.CANCELED).message
    assert on_target(vm, f"ps -eo args | grep -c [{marker[0]}]{marker[1:]} || true").strip() == "0"


def test_a_run_for_an_unreachable_vm_waits_in_the_queue_and_says_why(
    tmp_path, sshd_factory, workspace, alice
):
    server = sshd_factory()
    private_key, public_line = ssh.generate_key_pair()
    server.authorize(public_line)
    vm = ComputeTarget.objects.create(
        workspace=workspace,
        name="down-vm",
        kind=ComputeKind.VM,
        state=ComputeState.SUCCEEDED,
        address=server.host,
        port=server.port,
        username=server.username,
        auth_method=AuthMethod.KEY,
        private_key=private_key,
        host_key_fingerprint=server.host_key_fingerprint,
    )
    server.stop()
    source = write_tree(tmp_path / "src", {"train.py": "print('finally')\n"})
    run = submit(workspace=workspace, user=alice, target=vm, source=source)
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert run.status_reason.startswith("Target unreachable, retrying: Connection refused")
    page = client_for(alice).get(reverse("run_detail", args=[workspace.slug, run.pk]))
    assert "Waiting: Target unreachable, retrying" in page.content.decode()
    # The dispatcher retries every few seconds; the timeline says it once.
    for _ in range(3):
        runs_dispatch()
    assert [e.status for e in run.events.all()] == ["NotStarted", "Queued", "Queued"]

    server.start()
    ssh.pool.close_all()
    with running_monitor():
        runs_dispatch()
        run = wait_final(run)
    assert run.status == RunStatus.COMPLETED
    assert logstore.read(run.pk, "stdout")[0] == b"finally\n"
