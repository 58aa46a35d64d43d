"""Multi-node runs on a managed cluster: one process per node container, talking to each other."""

import time

import pytest
from django.urls import reverse

from compute.cluster.autoscaler import cluster_autoscale
from compute.cluster.scheduler import node_docker
from compute.models import ComputeTarget, Node, NodeState
from runs.logs import store as logstore
from runs.models import RunStatus
from runs.services.lifecycle import run_cancel
from studio.errors import ServiceError
from tests.compute.backends.test_runs_cluster import dispatch_until_started, make_cluster
from tests.conftest import api_client_for, client_for
from tests.support.clusters import node_processes, remove_test_containers
from tests.support.runs import (
    running_monitor,
    submit,
    wait_final,
    wait_for,
    write_tree,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

# Rank 0 gathers a line from every other rank over TCP, at MASTER_ADDR:MASTER_PORT, as a
# distributed-training rendezvous does.
GATHER = """\
import os, socket, time
from trainyard import run
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
address = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
me = f"rank {rank} of {world} on {open('/node-name').read().strip()}"
print(me, flush=True)
os.makedirs("outputs", exist_ok=True)
open("outputs/rank.txt", "w").write(str(rank))
if rank == 0:
    server = socket.create_server(("", address[1]))
    heard = []
    for _ in range(world - 1):
        connection, _ = server.accept()
        heard.append(connection.makefile().readline().strip())
    print("heard:", " | ".join(sorted(heard)))
    run.log("world_size", world)
else:
    for _ in range(300):
        try:
            connection = socket.create_connection(address)
            break
        except OSError:
            time.sleep(0.1)
    connection.sendall((me + "\\n").encode())
"""


@pytest.fixture
def engine(docker_engine):
    yield docker_engine
    remove_test_containers(docker_engine)


def test_a_run_on_three_nodes_rendezvous_at_rank_0_and_keeps_each_nodes_log(
    tmp_path, workspace, alice, engine
):
    cluster = make_cluster(workspace, alice, max_nodes=3, min_nodes=3)
    cluster_autoscale(target=cluster)
    nodes = list(Node.objects.filter(target=cluster, state=NodeState.IDLE))
    assert len(nodes) == 3
    for node in nodes:
        # A mark inside each node's container, so each rank can say where it ran.
        container = node_docker(node).containers.get(node.container_id)
        container.exec_run(["sh", "-c", f"echo {node.name} > /node-name"])
    source = write_tree(tmp_path / "src", {"train.py": GATHER})
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=cluster, source=source, node_count=3)
        run = wait_final(dispatch_until_started(run), timeout=90)
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)

    driver = logstore.read(run.pk, "stdout")[0].decode().splitlines()
    assert driver[0] == f"rank 0 of 3 on {run.node_name}"
    workers = [logstore.read(run.pk, f"node-{rank}.stdout")[0].decode().strip() for rank in (1, 2)]
    assert [line.rsplit(" ", 1)[0] for line in workers] == ["rank 1 of 3 on", "rank 2 of 3 on"]
    worker_hosts = {line.rsplit(" ", 1)[1] for line in workers}
    assert worker_hosts == {node.name for node in nodes} - {run.node_name}
    assert driver[1] == "heard: " + " | ".join(sorted(workers))

    assert list(run.metrics.values_list("name", "value")) == [("world_size", 3.0)]
    files = {f.path: f.size for f in run.files.all()}
    assert files == {
        "outputs/rank.txt": 1,
        "outputs/node-1/rank.txt": 1,
        "outputs/node-2/rank.txt": 1,
    }
    assert "over 3 nodes" in run.events.get(status=RunStatus.STARTING).message
    for node in Node.objects.filter(target=cluster):
        assert node.state == NodeState.IDLE and node.run_id is None

    page = client_for(alice).get(reverse("run_detail", args=[workspace.slug, run.pk]))
    assert f"3 nodes, the driver on {run.node_name}" in page.content.decode()
    shown = api_client_for(alice).get(f"/api/v1/runs/{run.pk}").json()
    assert (shown["node_count"], shown["node"]) == (3, run.node_name)
    streams = api_client_for(alice).get(f"/api/v1/runs/{run.pk}/logs/streams").json()
    assert {"node-1.stdout", "node-2.stdout"} <= {s["name"] for s in streams}


def test_a_failing_node_fails_the_run_and_stops_the_other_nodes(
    tmp_path, workspace, alice, engine, settings
):
    settings.RUN_CANCEL_GRACE_SECONDS = 1
    cluster = make_cluster(workspace, alice, max_nodes=2, min_nodes=2)
    cluster_autoscale(target=cluster)
    script = (
        "import os, sys, time\n"
        "if os.environ['RANK'] == '1':\n"
        "    print('giving up', file=sys.stderr, flush=True)\n"
        "    time.sleep(1)\n"
        "    sys.exit(3)\n"
        "time.sleep(301)\n"
    )
    source = write_tree(tmp_path / "src", {"train.py": script})
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=cluster, source=source, node_count=2)
        run = wait_final(dispatch_until_started(run), timeout=90)
    assert run.status == RunStatus.FAILED
    assert run.error == "The script exited with code 3 on node 1 of 2"
    assert run.exit_code == 3
    assert logstore.read(run.pk, "node-1.stderr")[0] == b"giving up\n"
    assert node_processes(Node.objects.get(target=cluster, name=run.node_name), "train.py") == []


def test_a_node_count_above_one_needs_a_cluster_that_can_grow_that_far(
    tmp_path, workspace, alice, engine
):
    source = write_tree(tmp_path / "src", {"train.py": "print('hi')\n"})
    local = ComputeTarget.objects.get(workspace=workspace, name="local")
    with pytest.raises(ServiceError, match="local is one machine") as one_machine:
        submit(workspace=workspace, user=alice, target=local, source=source, node_count=2)
    assert one_machine.value.field == "node_count"
    cluster = make_cluster(workspace, alice, max_nodes=2)
    with pytest.raises(ServiceError, match="at most 2 node"):
        submit(workspace=workspace, user=alice, target=cluster, source=source, node_count=3)


def test_cancel_of_a_multi_node_run_leaves_no_process_on_any_node(
    tmp_path, workspace, alice, engine, settings
):
    settings.RUN_CANCEL_GRACE_SECONDS = 1
    cluster = make_cluster(workspace, alice, max_nodes=2, min_nodes=2)
    cluster_autoscale(target=cluster)
    stubborn = (
        "import os, signal, subprocess, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen(['sleep', '301'])\n"
        "print('waiting on', os.environ['RANK'], flush=True)\ntime.sleep(300)\n"
    )
    source = write_tree(tmp_path / "src", {"train.py": stubborn})
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=cluster, source=source, node_count=2)
        run = wait_for(dispatch_until_started(run), [RunStatus.RUNNING])
        while b"waiting" not in logstore.read(run.pk, "node-1.stdout")[0]:
            time.sleep(0.1)
        run_cancel(run=run, user=alice)
        run = wait_final(run)
    assert run.status == RunStatus.CANCELED
    for node in Node.objects.filter(target=cluster):
        assert node_processes(node, "train.py", "sleep 301") == [], node.name
        assert node.state == NodeState.IDLE


def test_a_preempted_node_requeues_the_whole_run_which_completes_on_fresh_nodes(
    tmp_path, workspace, alice, engine
):
    cluster = make_cluster(workspace, alice, vm_priority="lowpriority", max_nodes=2, min_nodes=2)
    cluster_autoscale(target=cluster)
    script = (
        "import os, pathlib, time\n"
        "print('rank', os.environ['RANK'], 'started', flush=True)\n"
        "while not pathlib.Path('/proceed').exists():\n"
        "    time.sleep(0.2)\n"
    )
    source = write_tree(tmp_path / "src", {"train.py": script})

    def started(times: int) -> None:
        while logstore.read(run.pk, "node-1.stdout")[0].count(b"started") < times:
            time.sleep(0.1)

    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=cluster, source=source, node_count=2)
        run = wait_for(dispatch_until_started(run), [RunStatus.RUNNING])
        started(1)
        driver = Node.objects.get(target=cluster, name=run.node_name)
        survivor = Node.objects.filter(target=cluster).exclude(pk=driver.pk).get()
        node_docker(survivor).containers.get(survivor.container_id).remove(force=True)
        cluster_autoscale(target=cluster)  # notices the lost node: preempted, run requeued
        assert run.events.filter(status=RunStatus.QUEUED, message__startswith="Requeued").exists()
        # The first attempt was stopped on the driver's node: at most the second runs there.
        assert len(node_processes(driver, "train.py")) <= 1
        run = dispatch_until_started(run)
        started(2)
        for node in Node.objects.filter(target=cluster, state=NodeState.RUNNING):
            node_docker(node).containers.get(node.container_id).exec_run(["touch", "/proceed"])
        run = wait_final(run, timeout=90)
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert logstore.read(run.pk, "stdout")[0] == b"rank 0 started\nrank 0 started\n"
