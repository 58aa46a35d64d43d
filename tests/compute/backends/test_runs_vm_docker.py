"""Runs in Docker on an attached VM: the VM's user may run docker (real sshd, real engine)."""

import os
import pwd

import pytest
from django.conf import settings

from compute import ssh
from compute.models import AuthMethod, ComputeKind, ComputeState, ComputeTarget
from runs.logs import store as logstore
from runs.models import EnvironmentKind, RunStatus
from runs.services.environments import environment_create
from runs.services.lifecycle import run_cancel
from tests.services.sshd import DOCKER_USER
from tests.support.runs import running_monitor, submit, wait_final, wait_for, write_tree

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

IN_DOCKER = """\
import os, socket
from trainyard import run
print("in a container:", os.path.exists("/.dockerenv"), "as uid", os.getuid())
run.log("acc", 0.75)
open("outputs/model.txt", "w").write("weights")
"""


@pytest.fixture
def docker_vm(docker_user_sshd, docker_engine, workspace, alice):
    private_key, public_line = ssh.generate_key_pair()
    docker_user_sshd.authorize(public_line)
    docker_user_sshd.start()
    ssh.pool.close_all()
    yield ComputeTarget.objects.create(
        workspace=workspace,
        name="docker-vm",
        kind=ComputeKind.VM,
        state=ComputeState.SUCCEEDED,
        address=docker_user_sshd.host,
        port=docker_user_sshd.port,
        username=DOCKER_USER,
        auth_method=AuthMethod.KEY,
        private_key=private_key,
        host_key_fingerprint=docker_user_sshd.host_key_fingerprint,
        created_by=alice,
    )
    ssh.pool.close_all()


@pytest.fixture
def in_docker(workspace):
    return environment_create(
        workspace=workspace,
        name="in-docker",
        kind=EnvironmentKind.USER_MANAGED,
        docker_image=settings.CLUSTER_NODE_IMAGE,
    )


def test_a_run_in_docker_on_a_vm_completes_with_outputs_and_metrics(
    tmp_path, workspace, alice, docker_vm, in_docker
):
    source = write_tree(tmp_path / "src", {"train.py": IN_DOCKER})
    with running_monitor():
        run = wait_final(
            submit(
                workspace=workspace,
                user=alice,
                target=docker_vm,
                source=source,
                environment=in_docker,
            )
        )
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    uid = pwd.getpwnam(DOCKER_USER).pw_uid
    assert logstore.read(run.pk, "stdout")[0] == f"in a container: True as uid {uid}\n".encode()
    assert list(run.metrics.values_list("name", "value")) == [("acc", 0.75)]
    assert [(f.path, f.size) for f in run.files.all()] == [("outputs/model.txt", 7)]
    # The VM is this machine: its user could remove everything the container wrote.
    assert run.handle is not None
    assert not os.path.exists(run.handle["run_dir"])


def test_cancel_of_a_docker_run_on_a_vm_leaves_no_container(
    tmp_path, workspace, alice, docker_vm, in_docker, docker_engine, settings
):
    settings.RUN_CANCEL_GRACE_SECONDS = 1
    stubborn = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\ntime.sleep(300)\n"
    )
    source = write_tree(tmp_path / "src", {"train.py": stubborn})
    with running_monitor():
        run = submit(
            workspace=workspace, user=alice, target=docker_vm, source=source, environment=in_docker
        )
        run = wait_for(run, [RunStatus.RUNNING])
        while b"up" not in logstore.read(run.pk, "stdout")[0]:
            pass
        assert run.handle is not None
        name = run.handle["container"]
        assert docker_engine.containers.list(filters={"name": name})
        run_cancel(run=run, user=alice)
        run = wait_final(run)
    assert run.status == RunStatus.CANCELED
    assert docker_engine.containers.list(all=True, filters={"name": name}) == []
