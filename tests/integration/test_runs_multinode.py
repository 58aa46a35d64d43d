"""Multi-node runs on a managed cluster: one process per node container, talking to each other."""

import pytest

from compute.models import ComputeTarget, Node, NodeState
from compute.scheduler import cluster_autoscale, node_docker
from runs import logstore
from runs.models import RunStatus
from runs.services import FieldError
from tests.integration.cluster_support import remove_test_containers
from tests.integration.runs_support import running_monitor, submit, wait_final, write_tree
from tests.integration.test_runs_cluster import dispatch_until_started, make_cluster

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
    cluster = make_cluster(workspace, alice, max_nodes=3)
    source = write_tree(tmp_path / "src", {"train.py": GATHER})
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=cluster, source=source, node_count=3)
        assert run.status_reason.startswith("Waiting for 3 nodes of cpu-cluster")
        cluster_autoscale(target=cluster)
        nodes = list(Node.objects.filter(target=cluster, state=NodeState.IDLE))
        assert len(nodes) == 3
        for node in nodes:
            # A mark inside each node's container, so each rank can say where it ran.
            container = node_docker(node).containers.get(node.container_id)
            container.exec_run(["sh", "-c", f"echo {node.name} > /node-name"])
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
    driver = Node.objects.get(target=cluster, name=run.node_name)
    container = node_docker(driver).containers.get(driver.container_id)
    processes = container.exec_run(["ps", "-eo", "stat,args"]).output.decode().splitlines()
    assert [p for p in processes if "train.py" in p and not p.startswith("Z")] == []


def test_a_node_count_above_one_needs_a_cluster_that_can_grow_that_far(
    tmp_path, workspace, alice, engine
):
    source = write_tree(tmp_path / "src", {"train.py": "print('hi')\n"})
    local = ComputeTarget.objects.get(workspace=workspace, name="local")
    with pytest.raises(FieldError, match="local is one machine") as one_machine:
        submit(workspace=workspace, user=alice, target=local, source=source, node_count=2)
    assert one_machine.value.field == "node_count"
    cluster = make_cluster(workspace, alice, max_nodes=2)
    with pytest.raises(FieldError, match="at most 2 node"):
        submit(workspace=workspace, user=alice, target=cluster, source=source, node_count=3)
