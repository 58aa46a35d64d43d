"""Runs on managed-cluster nodes: real node containers on the local Docker engine."""

import threading
import time

import pytest
from django.conf import settings
from django.urls import reverse

from compute.backends import BackendError
from compute.backends.cluster import NodeBackend
from compute.cluster import services as cluster_services
from compute.cluster.autoscaler import cluster_autoscale
from compute.cluster.scheduler import node_docker
from compute.models import Node, NodeState
from runs.logs import store as logstore
from runs.models import RunStatus
from runs.services.lifecycle import run_cancel, run_transition, runs_dispatch
from tests.conftest import client_for
from tests.support.clusters import node_processes, remove_test_containers
from tests.support.runs import (
    BIG_OUTPUT,
    assert_big_output_kept,
    running_monitor,
    submit,
    wait_final,
    wait_for,
    write_tree,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]


@pytest.fixture
def engine(docker_engine):
    yield docker_engine
    remove_test_containers(docker_engine)


def make_cluster(workspace, alice, **options):
    options.setdefault("max_nodes", 1)
    cluster = cluster_services.cluster_create(
        workspace=workspace, user=alice, name="cpu-cluster", vm_size="Standard_D2_v2", **options
    )
    cluster.refresh_from_db()
    assert cluster.state == "Succeeded", cluster.error
    return cluster


def dispatch_until_started(run, timeout: float = 60):
    """What Celery beat does every few seconds: retry queued runs."""
    deadline = time.monotonic() + timeout
    run.refresh_from_db()
    while run.status == RunStatus.QUEUED and time.monotonic() < deadline:
        runs_dispatch()
        time.sleep(0.2)
        run.refresh_from_db()
    return run


def test_a_run_waits_for_a_node_then_completes_on_it(tmp_path, workspace, alice, engine):
    cluster = make_cluster(workspace, alice)
    source = write_tree(
        tmp_path / "src",
        {
            "train.py": (
                "import socket\nfrom trainyard import run\n"
                "print('on', socket.gethostname())\nrun.log('loss', 0.25)\n"
                "open('outputs/model.bin', 'wb').write(b'x' * 10)\n" + BIG_OUTPUT
            )
        },
    )
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=cluster, source=source)
        waited = run.events.filter(
            status=RunStatus.QUEUED, message__startswith="Waiting for a node"
        )
        assert waited.exists()
        run = wait_final(dispatch_until_started(run))
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    node = Node.objects.get(target=cluster, name=run.node_name)
    container = node_docker(node).containers.get(node.container_id)
    assert logstore.read(run.pk, "stdout")[0].startswith(
        f"on {container.attrs['Config']['Hostname']}\nbig ".encode()
    )
    assert list(run.metrics.values_list("name", "value")) == [("loss", 0.25)]
    assert [(f.path, f.size) for f in run.files.all()] == [
        ("outputs/big.bin", 48 * 1024 * 1024),
        ("outputs/model.bin", 10),
    ]
    assert_big_output_kept(run)
    node.refresh_from_db()
    assert node.state == NodeState.IDLE and node.run_id is None


def test_a_node_that_goes_away_during_a_command_is_unreachable_not_failing(
    workspace, alice, engine
):
    cluster = make_cluster(workspace, alice, vm_priority="lowpriority", min_nodes=1)
    cluster_autoscale(target=cluster)
    node = Node.objects.get(target=cluster)
    container = node_docker(node).containers.get(node.container_id)
    remover = threading.Timer(0.5, lambda: container.remove(force=True))
    remover.start()
    with pytest.raises(BackendError) as caught:
        NodeBackend(cluster, node).exec("sleep 5", [])
    remover.join()
    # Unreachable: the autoscaler decides (a preempted node's run is requeued).
    assert caught.value.unreachable
    assert (
        caught.value.message == f"The container of node {node.name} of cluster cpu-cluster stopped."
    )


def test_a_preempted_run_is_requeued_and_completes_on_another_node(
    tmp_path, workspace, alice, engine
):
    cluster = make_cluster(workspace, alice, vm_priority="lowpriority", min_nodes=1)
    cluster_autoscale(target=cluster)
    source = write_tree(
        tmp_path / "src",
        {"train.py": "import time\nprint('working', flush=True)\ntime.sleep(3)\nprint('done')\n"},
    )
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=cluster, source=source)
        run = wait_for(dispatch_until_started(run), [RunStatus.RUNNING])
        first = Node.objects.get(target=cluster, name=run.node_name)
        node_docker(first).containers.get(first.container_id).remove(force=True)
        cluster_autoscale(target=cluster)  # notices the lost node: preempted, run requeued
        run.refresh_from_db()
        assert run.events.filter(
            status=RunStatus.QUEUED, message__startswith="Requeued"
        ).exists(), list(run.events.values_list("status", "message"))
        cluster_autoscale(target=cluster)  # a new node for the waiting run
        run = wait_final(dispatch_until_started(run))
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert run.node_name != first.name
    assert logstore.read(run.pk, "stdout")[0].endswith(b"working\ndone\n")


def test_a_killed_low_priority_node_requeues_its_run_which_completes_on_another_node(
    tmp_path, workspace, alice, engine
):
    cluster = make_cluster(workspace, alice, vm_priority="lowpriority", min_nodes=1)
    cluster_autoscale(target=cluster)
    source = write_tree(
        tmp_path / "src",
        {"train.py": "import time\nprint('working', flush=True)\ntime.sleep(3)\nprint('done')\n"},
    )
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=cluster, source=source)
        run = wait_for(dispatch_until_started(run), [RunStatus.RUNNING])
        first = Node.objects.get(target=cluster, name=run.node_name)
        node_docker(first).containers.get(first.container_id).kill()
        time.sleep(settings.CLUSTER_AUTOSCALE_SECONDS)  # the monitor sees the run stop first
        cluster_autoscale(target=cluster)  # notices the stopped node: preempted, run requeued
        assert run.events.filter(
            status=RunStatus.QUEUED, message__contains="stopped (exited) outside Trainyard"
        ).exists(), list(run.events.values_list("status", "message"))
        cluster_autoscale(target=cluster)
        run = wait_final(dispatch_until_started(run))
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert run.node_name != first.name
    assert logstore.read(run.pk, "stdout")[0].endswith(b"working\ndone\n")


def test_a_killed_dedicated_node_fails_its_run_with_the_reason_on_the_run_page(
    tmp_path, workspace, alice, engine
):
    cluster = make_cluster(workspace, alice, min_nodes=1)
    cluster_autoscale(target=cluster)
    source = write_tree(
        tmp_path / "src", {"train.py": "import time\nprint('working', flush=True)\ntime.sleep(60)"}
    )
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=cluster, source=source)
        run = wait_for(dispatch_until_started(run), [RunStatus.RUNNING])
        node = Node.objects.get(target=cluster, name=run.node_name)
        node_docker(node).containers.get(node.container_id).kill()
        # The autoscale pass that notices comes up to its interval later: until then the
        # monitor, which sees the run's processes gone, must not end the run its own way.
        time.sleep(settings.CLUSTER_AUTOSCALE_SECONDS)
        cluster_autoscale(target=cluster)
        run = wait_final(run)
    reason = f"Node {node.name} of cluster cpu-cluster stopped (exited) outside Trainyard"
    assert run.status == RunStatus.FAILED
    assert run.error == reason
    page = client_for(alice).get(reverse("run_detail", args=[workspace.slug, run.pk]))
    assert reason in page.content.decode()
    node.refresh_from_db()
    assert node.state == NodeState.UNUSABLE and node.error == reason


def test_a_run_already_finalizing_when_its_low_priority_node_goes_is_requeued(
    tmp_path, workspace, alice, engine
):
    """The monitor may see the run's processes die before the autoscaler sees the node go."""
    cluster = make_cluster(workspace, alice, vm_priority="lowpriority", min_nodes=1)
    cluster_autoscale(target=cluster)
    source = write_tree(tmp_path / "src", {"train.py": "import time\ntime.sleep(30)\n"})
    run = dispatch_until_started(
        submit(workspace=workspace, user=alice, target=cluster, source=source)
    )
    assert run.status == RunStatus.STARTING
    node = Node.objects.get(target=cluster, name=run.node_name)
    assert run_transition(
        run.pk, RunStatus.FINALIZING, allowed_from=[RunStatus.STARTING], message="Collecting"
    )
    node_docker(node).containers.get(node.container_id).remove(force=True)
    cluster_autoscale(target=cluster)
    assert run.events.filter(status=RunStatus.QUEUED, message__startswith="Requeued").exists()


def test_cancel_on_a_node_leaves_no_process_in_its_container(
    tmp_path, workspace, alice, engine, settings
):
    settings.RUN_CANCEL_GRACE_SECONDS = 1
    cluster = make_cluster(workspace, alice, min_nodes=1)
    cluster_autoscale(target=cluster)
    stubborn = (
        "import signal, subprocess, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen(['sleep', '301'])\n"
        "print('waiting', flush=True)\ntime.sleep(300)\n"
    )
    source = write_tree(tmp_path / "src", {"train.py": stubborn})
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=cluster, source=source)
        run = wait_for(dispatch_until_started(run), [RunStatus.RUNNING])
        while b"waiting" not in logstore.read(run.pk, "stdout")[0]:
            pass
        node = Node.objects.get(target=cluster, name=run.node_name)
        container = node_docker(node).containers.get(node.container_id)
        assert b"sleep 301" in container.exec_run(["ps", "-eo", "args"]).output
        run_cancel(run=run, user=alice)
        run = wait_final(run)
    assert run.status == RunStatus.CANCELED
    assert node_processes(node, "train.py", "sleep 301") == []


def test_a_waiting_run_starts_as_soon_as_the_node_it_waits_for_is_free(
    tmp_path, workspace, alice, engine
):
    cluster = make_cluster(workspace, alice, min_nodes=1)
    cluster_autoscale(target=cluster)
    source = write_tree(tmp_path / "src", {"train.py": "import time\ntime.sleep(1)\nprint('ok')\n"})
    with running_monitor():
        first = submit(workspace=workspace, user=alice, target=cluster, source=source)
        second = submit(workspace=workspace, user=alice, target=cluster, source=source)
        second.refresh_from_db()
        assert second.status_reason.startswith("Waiting for a node of cpu-cluster")
        # No dispatcher here: the first run letting go of the node starts the second.
        first, second = wait_final(first), wait_final(second)
    assert first.status == second.status == RunStatus.COMPLETED
    assert second.node_name == first.node_name


NODE_PROBE = """\
import os
print("uid", os.getuid())
for name, action in {
    "read /etc/shadow": lambda: open("/etc/shadow").read(),
    "write the blobs": lambda: open("/var/lib/trainyard/blobs/planted", "w"),
    "write /etc": lambda: open("/etc/planted", "w"),
}.items():
    try:
        action()
        print(name, "ALLOWED")
    except OSError:
        print(name, "denied")
open("outputs/mine.txt", "w").write("its own folder")
"""


def test_run_code_on_a_node_is_not_the_nodes_root(tmp_path, workspace, alice, engine):
    cluster = make_cluster(workspace, alice)
    source = write_tree(tmp_path / "src", {"train.py": NODE_PROBE})
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=cluster, source=source)
        run = wait_final(dispatch_until_started(run))
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    lines = logstore.read(run.pk, "stdout")[0].decode().splitlines()
    assert lines == [
        "uid 65534",
        "read /etc/shadow denied",
        "write the blobs denied",
        "write /etc denied",
    ]
    assert [f.path for f in run.files.all()] == ["outputs/mine.txt"]
