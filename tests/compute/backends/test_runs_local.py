"""Runs on the local target: real detached processes, the real run monitor."""

import hashlib
import subprocess
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from compute.backends import PosixHandle
from compute.models import ComputeTarget
from compute.selectors import workspace_secrets
from runs.logs import store as logstore
from runs.models import EnvironmentKind, RunStatus
from runs.monitor import Monitor, RunFollower
from runs.services.environments import environment_create
from runs.services.lifecycle import run_cancel
from studio import secrets
from studio.models import Workspace
from tests.compute.backends.test_runs_vm import STUBBORN
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

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]

TRAIN = """\
import os, sys
from trainyard import run
print("epochs", sys.argv[1:])
for step in range(3):
    run.log("loss", 1.0 / (step + 1))
    print(f"accuracy={0.5 + step / 10:.2f}")
run.tag("model", "tiny")
os.makedirs("outputs", exist_ok=True)
with open("outputs/model.txt", "w") as f:
    f.write("weights")
with open("logs/extra.log", "w") as f:
    f.write("more logs")
print("warning: done", file=sys.stderr)
"""


@pytest.fixture
def local(workspace):
    return ComputeTarget.objects.get(workspace=workspace, name="local")


def test_a_local_run_completes_with_outputs_logs_and_metrics(tmp_path, workspace, alice, local):
    source = write_tree(tmp_path / "src", {"train.py": TRAIN + BIG_OUTPUT})
    with running_monitor():
        run = submit(
            workspace=workspace,
            user=alice,
            target=local,
            source=source,
            arguments=["--epochs", "3"],
            metric_patterns=[r"accuracy=(?P<accuracy>[0-9.]+)"],
        )
        run = wait_final(run)
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert run.exit_code == 0
    stdout, _ = logstore.read(run.pk, "stdout")
    assert b"epochs ['--epochs', '3']" in stdout
    assert b"warning: done" in logstore.read(run.pk, "stderr")[0]
    assert {f.path for f in run.files.all()} == {
        "outputs/model.txt",
        "outputs/big.bin",
        "logs/extra.log",
    }
    assert_big_output_kept(run)
    loss = list(run.metrics.filter(name="loss").values_list("step", "value"))
    assert loss == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    accuracy = list(run.metrics.filter(name="accuracy").values_list("step", "value"))
    assert accuracy == [(0, 0.5), (1, 0.6), (2, 0.7)]
    assert run.tags["model"] == "tiny"
    statuses = [e.status for e in run.events.all()]
    assert statuses == [
        "NotStarted",
        "Queued",
        "Preparing",
        "Starting",
        "Running",
        "Finalizing",
        "Completed",
    ]


def test_a_failing_script_shows_its_exit_code_and_stderr_tail(tmp_path, workspace, alice, local):
    source = write_tree(
        tmp_path / "src",
        {"train.py": "import sys\nprint('about to fail', file=sys.stderr)\nraise SystemExit(3)\n"},
    )
    with running_monitor():
        run = wait_final(submit(workspace=workspace, user=alice, target=local, source=source))
    assert run.status == RunStatus.FAILED
    assert run.exit_code == 3
    assert "about to fail" in run.stderr_tail
    assert "exited with code 3" in run.error
    page = client_for(alice).get(reverse("run_detail", args=[workspace.slug, run.pk]))
    text = page.content.decode()
    assert "Why it failed" in text
    assert "Exit code <strong>3</strong>" in text
    assert "about to fail" in text
    assert 'hx-trigger="every 2s' not in text


def processes_with(marker: str) -> list[str]:
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in ps.stdout.splitlines() if marker in line]


def start_stubborn_run(tmp_path, *, workspace, alice, local, **options):
    marker = f"ty-cancel-{uuid.uuid4().hex[:12]}"
    source = write_tree(tmp_path / "src", {"train.py": STUBBORN})
    run = submit(
        workspace=workspace, user=alice, target=local, source=source, arguments=[marker], **options
    )
    wait_for(run, [RunStatus.RUNNING])
    while b"children started" not in logstore.read(run.pk, "stdout")[0]:
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING, run.error
    return run, marker


def test_cancel_leaves_no_process_of_the_run_even_one_in_its_own_session(
    tmp_path, workspace, alice, local, settings
):
    settings.RUN_CANCEL_GRACE_SECONDS = 2
    with running_monitor():
        run, marker = start_stubborn_run(tmp_path, workspace=workspace, alice=alice, local=local)
        # The script's own processes, not the sandbox (bwrap) around them.
        assert len([p for p in processes_with(marker) if not p.startswith("bwrap ")]) == 5
        assert run_cancel(run=run, user=alice)
        run = wait_final(run)
    assert run.status == RunStatus.CANCELED
    assert processes_with(marker) == []


def test_max_run_duration_stops_the_run_and_every_process_of_it(
    tmp_path, workspace, alice, local, settings
):
    settings.RUN_CANCEL_GRACE_SECONDS = 1
    with running_monitor():
        run, marker = start_stubborn_run(
            tmp_path, workspace=workspace, alice=alice, local=local, max_duration_seconds=3
        )
        run = wait_final(run, timeout=60)
    assert run.status == RunStatus.CANCELED
    assert run.cancel_reason == "Stopped after the maximum run duration of 3 s"
    assert run.events.filter(status=RunStatus.CANCEL_REQUESTED).exists()
    assert b"children started" in logstore.read(run.pk, "stdout")[0]
    assert processes_with(marker) == []


def test_a_system_managed_environment_is_built_once_and_reused(tmp_path, workspace, alice, local):
    env = environment_create(
        workspace=workspace,
        name="venv-test",
        kind=EnvironmentKind.SYSTEM_MANAGED,
        pip_requirements=f"# nothing to install yet ({tmp_path.name})\n",
    )
    source = write_tree(
        tmp_path / "src", {"train.py": "import sys\nprint(sys.prefix != sys.base_prefix)\n"}
    )
    with running_monitor():
        first = wait_final(
            submit(workspace=workspace, user=alice, target=local, source=source, environment=env),
            timeout=120,
        )
        second = wait_final(
            submit(workspace=workspace, user=alice, target=local, source=source, environment=env)
        )
    assert first.status == second.status == RunStatus.COMPLETED, (first.error, second.error)
    assert logstore.read(first.pk, "stdout")[0] == b"True\n"
    assert b"Building environment venv-test:1" in logstore.read(first.pk, "prepare")[0]
    assert b"Reusing environment venv-test:1" in logstore.read(second.pk, "prepare")[0]


@pytest.mark.docker
def test_an_environment_with_a_docker_image_runs_in_a_container(
    tmp_path, workspace, alice, local, docker_engine
):
    env = environment_create(
        workspace=workspace,
        name="in-docker",
        kind=EnvironmentKind.USER_MANAGED,
        docker_image=settings.CLUSTER_NODE_IMAGE,
    )
    source = write_tree(
        tmp_path / "src",
        {
            "train.py": (
                "import os\nfrom trainyard import run\n"
                "print('in a container:', os.path.exists('/.dockerenv'))\n"
                "run.log('acc', 0.75)\nopen('outputs/o.txt', 'w').write('x')\n"
            )
        },
    )
    with running_monitor():
        run = wait_final(
            submit(workspace=workspace, user=alice, target=local, source=source, environment=env)
        )
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert logstore.read(run.pk, "stdout")[0] == b"in a container: True\n"
    assert list(run.metrics.values_list("name", "value")) == [("acc", 0.75)]
    assert [f.path for f in run.files.all()] == ["outputs/o.txt"]


@pytest.mark.docker
def test_a_gpu_environment_asks_docker_for_the_gpus(
    tmp_path, workspace, alice, local, docker_engine
):
    env = environment_create(
        workspace=workspace,
        name="with-gpus",
        kind=EnvironmentKind.USER_MANAGED,
        docker_image=settings.CLUSTER_NODE_IMAGE,
        docker_gpus=True,
    )
    # As the check of a machine with a GPU records it: this engine has no GPU runtime, so
    # docker itself refuses the container, which shows that the run asked for the GPUs.
    local.facts = dict(local.facts or {}, gpus=[{"name": "NVIDIA A100", "memory_mib": 40960}])
    local.save(update_fields=["facts"])
    source = write_tree(tmp_path / "src", {"train.py": "print('never')\n"})
    with running_monitor():
        run = wait_final(
            submit(workspace=workspace, user=alice, target=local, source=source, environment=env)
        )
    assert run.status == RunStatus.FAILED
    assert "could not select device driver" in run.stderr_tail
    assert "capabilities: [[gpu]]" in run.stderr_tail


@pytest.mark.docker
def test_cancel_of_a_docker_run_removes_its_container(
    tmp_path, workspace, alice, local, docker_engine, settings
):
    settings.RUN_CANCEL_GRACE_SECONDS = 1
    env = environment_create(
        workspace=workspace,
        name="in-docker",
        kind=EnvironmentKind.USER_MANAGED,
        docker_image=settings.CLUSTER_NODE_IMAGE,
    )
    source = write_tree(
        tmp_path / "src", {"train.py": "import time\nprint('up', flush=True)\ntime.sleep(300)\n"}
    )
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=local, source=source, environment=env)
        wait_for(run, [RunStatus.RUNNING])
        while b"up" not in logstore.read(run.pk, "stdout")[0]:
            pass
        run.refresh_from_db()
        assert run.handle is not None
        name = run.handle["container"]
        assert docker_engine.containers.list(filters={"name": name})
        run_cancel(run=run, user=alice)
        run = wait_final(run)
    assert run.status == RunStatus.CANCELED
    assert docker_engine.containers.list(all=True, filters={"name": name}) == []


def test_a_workspace_secret_printed_in_two_pieces_is_masked_in_the_stored_log(
    tmp_path, workspace, alice, local
):
    password = "hunter2-correct-horse-battery"
    ComputeTarget.objects.create(
        workspace=workspace, name="gpu-vm", kind="vm", address="127.0.0.1", password=password
    )
    # The monitor is its own process: it knows the workspace's secrets only from the database.
    secrets._known.clear()
    script = (
        "import sys, time\n"
        f"secret = {password!r}\n"
        "sys.stdout.write('token: ' + secret[:9]); sys.stdout.flush()\n"
        "time.sleep(0.5)\n"
        "print(secret[9:], flush=True)\n"
        "print('a', flush=True)\n"
    )
    source = write_tree(tmp_path / "src", {"train.py": script})
    with running_monitor():
        run = wait_final(submit(workspace=workspace, user=alice, target=local, source=source))
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert logstore.read(run.pk, "stdout")[0] == b"token: ******\na\n"


ODD_OUTPUTS = """\
import os
os.makedirs("outputs", exist_ok=True)
os.makedirs("logs", exist_ok=True)
open("outputs/model.txt", "w").write("weights")
open("outputs/ça va?.txt", "w").write("an unusual but plain name")
open("outputs/bad\\nname\\x1b[2J.txt", "w").write("a name with control characters")
os.symlink("/etc/passwd", "outputs/passwd")
os.symlink("/etc", "outputs/etc")
os.link("outputs/model.txt", "logs/model-link.txt")
os.mkfifo("outputs/pipe")
"""


def test_links_devices_and_odd_names_in_outputs_are_left_out_with_a_warning(
    tmp_path, workspace, alice, local
):
    source = write_tree(tmp_path / "src", {"train.py": ODD_OUTPUTS})
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=local, source=source)
        run = wait_final(run)

    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert {f.path for f in run.files.all()} == {"outputs/model.txt", "outputs/ça va?.txt"}
    passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    assert not run.files.filter(sha256=passwd).exists()
    message = run.events.get(status=RunStatus.COMPLETED).message
    assert message.startswith("2 output file(s) collected; 5 left out: ")
    for left_out in (
        "outputs/passwd (a link to /etc/passwd: links are not kept)",
        "outputs/etc (a link to /etc: links are not kept)",
        "outputs/bad\\x0aname\\x1b[2J.txt (a control character in the name)",
        "outputs/pipe (not a regular file)",
        "logs/model-link.txt (a link to outputs/model.txt: links are not kept)",
    ):
        assert left_out in message
    page = client_for(alice).get(reverse("run_detail", args=[workspace.slug, run.pk]))
    assert "outputs/passwd (a link to /etc/passwd: links are not kept)" in page.content.decode()


def test_a_run_masks_its_own_workspace_secrets_and_no_other_workspace_s(
    tmp_path, workspace, alice, local
):
    mine, theirs = "hunter2-correct-horse-battery", "other-team-token-0123456789"
    ComputeTarget.objects.create(
        workspace=workspace, name="gpu-vm", kind="vm", address="127.0.0.1", password=mine
    )
    elsewhere = Workspace.objects.get(name="Charlie's own")
    ComputeTarget.objects.create(
        workspace=elsewhere, name="their-vm", kind="vm", address="127.0.0.1", password=theirs
    )
    # The monitor follows every workspace's runs, so it has decrypted the other one's too.
    assert ComputeTarget.objects.get(workspace=elsewhere, name="their-vm").password == theirs
    script = f"print('mine:', {mine!r})\nprint('theirs:', {theirs!r})\n"
    source = write_tree(tmp_path / "src", {"train.py": script})
    with running_monitor():
        run = wait_final(submit(workspace=workspace, user=alice, target=local, source=source))
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    # Shown as printed: whether a guess gets masked tells nothing of other workspaces.
    assert logstore.read(run.pk, "stdout")[0] == f"mine: ******\ntheirs: {theirs}\n".encode()


def test_an_unfinished_line_is_held_back_alike_whether_or_not_it_begins_a_secret(
    tmp_path, workspace, alice, local
):
    password = "hunter2-correct-horse-battery"
    ComputeTarget.objects.create(
        workspace=workspace, name="gpu-vm", kind="vm", address="127.0.0.1", password=password
    )
    source = write_tree(tmp_path / "src", {"train.py": "print('queued')\n"})
    stored = {}
    for guess in (password[:9], "not-a-sec"):
        run = submit(workspace=workspace, user=alice, target=local, source=source)
        follower = RunFollower(run.pk, Monitor())
        follower.secrets = workspace_secrets(workspace_id=workspace.pk)
        data = f"step 1\ntoken: {guess}".encode()
        follower.store(run, 0, "stdout", data, 0, PosixHandle(attempt="a"))
        stored[guess] = logstore.read(run.pk, "stdout")[0]
    assert stored == {password[:9]: b"step 1\n", "not-a-sec": b"step 1\n"}
