"""The managed-cluster scheduler against a real Docker engine: scale up, wait, scale down."""

import time

import paramiko
import pytest
from django.conf import settings
from docker.models.containers import ContainerCollection

from compute.cluster import services as cluster_services
from compute.cluster.autoscaler import cluster_autoscale
from compute.cluster.scheduler import (
    cluster_counts,
    cluster_wait_reason,
    node_docker,
    node_release,
    node_request,
)
from compute.models import Node, NodeState
from compute.signals import node_lost, node_ready
from compute.ssh import generate_key_pair, parse_private_key
from tests.support.clusters import (
    cluster_containers,
    make_cluster,
    nodes_granted,
    remove_test_containers,
)

pytestmark = pytest.mark.docker


@pytest.fixture
def engine(docker_engine):
    yield docker_engine
    remove_test_containers(docker_engine)


@pytest.fixture
def lost_runs():
    """What the runs app would hear: every node_lost signal, in order."""
    heard = []

    def receiver(sender, **kwargs):
        heard.append(kwargs)

    node_lost.connect(receiver, weak=False)
    yield heard
    node_lost.disconnect(receiver)


def running(client, target):
    return [c for c in cluster_containers(client, target) if c.status == "running"]


def test_two_nodes_come_up_the_third_run_waits_then_scale_down_to_zero(
    engine, workspace, alice, django_capture_on_commit_callbacks
):
    cluster = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        min_nodes=0,
        max_nodes=2,
        idle_seconds_before_scaledown=2,
    )
    assert cluster.state == "Succeeded", cluster.error
    assert running(engine, cluster) == []

    assert [node_request(target=cluster, run_id=run) for run in (1, 2, 3)] == [None] * 3
    assert cluster_wait_reason(cluster) == "3 runs waiting, scaling up at the next autoscale pass"
    ready = []
    node_ready.connect(lambda sender, **kw: ready.append(kw), weak=False, dispatch_uid="t-ready")
    try:
        cluster_autoscale(target=cluster)
    finally:
        node_ready.disconnect(dispatch_uid="t-ready")
    assert sorted(r["node_name"] for r in ready) == sorted(
        Node.objects.filter(target=cluster).values_list("name", flat=True)
    )
    assert {r["target_id"] for r in ready} == {cluster.pk}

    assert len(running(engine, cluster)) == 2
    assert cluster_counts(cluster).idle == 2
    [first] = nodes_granted(target=cluster, run_id=1)
    [second] = nodes_granted(target=cluster, run_id=2)
    assert {first.state, second.state} == {NodeState.RUNNING}
    assert first.pk != second.pk
    assert node_request(target=cluster, run_id=3) is None
    assert cluster_wait_reason(cluster) == "1 run waiting, at max nodes 2"
    cluster_autoscale(target=cluster)
    assert len(running(engine, cluster)) == 2

    # The node runs Python for the run, through the engine the runs app is given.
    container = node_docker(first).containers.get(first.container_id)
    result = container.exec_run(["python3", "-c", "print(6 * 7)"])
    assert result.output.decode().strip() == "42"

    # Run 1 is done: its node is reused by the waiting run 3, not a new one.
    node_release(run_id=1)
    [third] = nodes_granted(target=cluster, run_id=3)
    assert third.pk == first.pk and third.run_id == 3
    assert nodes_granted(target=cluster, run_id=3)[0].pk == first.pk

    node_release(run_id=2)
    node_release(run_id=3)
    cluster_autoscale(target=cluster)
    assert len(running(engine, cluster)) == 2, "idle nodes stay for the idle time"
    assert "2 idle nodes: removed after 2 s idle" in cluster_wait_reason(cluster)

    time.sleep(2.5)
    cluster_autoscale(target=cluster)
    assert cluster_containers(engine, cluster) == []
    assert Node.objects.filter(target=cluster).count() == 0
    assert cluster_wait_reason(cluster) == "steady at 0 nodes (min 0, max 2)"


def test_raising_max_nodes_lets_the_waiting_run_get_a_node(
    engine, workspace, alice, django_capture_on_commit_callbacks
):
    cluster = make_cluster(
        django_capture_on_commit_callbacks, workspace=workspace, user=alice, max_nodes=2
    )
    for run in (1, 2, 3):
        node_request(target=cluster, run_id=run)
    cluster_autoscale(target=cluster)
    assert node_request(target=cluster, run_id=1) and node_request(target=cluster, run_id=2)
    assert node_request(target=cluster, run_id=3) is None

    cluster = cluster_services.cluster_update(
        target=cluster, min_nodes=0, max_nodes=3, idle_seconds_before_scaledown=120
    )
    assert cluster_wait_reason(cluster) == "1 run waiting, scaling up at the next autoscale pass"
    cluster_autoscale(target=cluster)
    assert nodes_granted(target=cluster, run_id=3)[0].state == NodeState.RUNNING
    assert len(running(engine, cluster)) == 3
    assert cluster_counts(cluster).current == 3


def test_lowering_max_nodes_removes_idle_nodes_at_once(
    engine, workspace, alice, django_capture_on_commit_callbacks
):
    cluster = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        min_nodes=2,
        max_nodes=2,
    )
    assert len(running(engine, cluster)) == 2
    cluster = cluster_services.cluster_update(
        target=cluster, min_nodes=0, max_nodes=1, idle_seconds_before_scaledown=600
    )
    cluster_autoscale(target=cluster)
    assert len(running(engine, cluster)) == 1


def test_minimum_nodes_are_started_by_provisioning_with_the_size_limits(
    engine, workspace, alice, django_capture_on_commit_callbacks
):
    engine_cpus = engine.info()["NCPU"]
    cluster = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        vm_size="Standard_F4",
        min_nodes=1,
        max_nodes=1,
    )
    [container] = running(engine, cluster)
    host_config = container.attrs["HostConfig"]
    assert host_config["Memory"] == 8 * 1024**3
    assert host_config["NanoCpus"] == min(4, engine_cpus) * 1_000_000_000
    assert host_config["NetworkMode"] == "host"
    assert container.labels["trainyard.cluster"] == str(cluster.pk)
    if engine_cpus < 4:
        assert (
            f"Nodes on engine local get {engine_cpus} CPUs instead of the 4 vCPUs of "
            f"Standard_F4: the engine has {engine_cpus} CPUs." in cluster.warnings
        )
    operation = cluster.operations.get()
    assert [step["label"] for step in operation.steps] == [
        "Check Docker engines",
        "Size the nodes",
        "Start minimum nodes",
    ]
    assert operation.steps[-1]["detail"] == "1 of 1 ready"


def test_the_admin_user_logs_in_to_every_node_over_ssh_with_its_key(
    engine, workspace, alice, django_capture_on_commit_callbacks
):
    private_key, public_key = generate_key_pair("alice@laptop")
    cluster = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        min_nodes=2,
        admin_username="azureuser",
        admin_ssh_public_key=public_key,
    )
    nodes = list(Node.objects.filter(target=cluster, state=NodeState.IDLE))
    assert len(nodes) == 2 and all(node.ssh_port for node in nodes)
    assert nodes[0].ssh_port != nodes[1].ssh_port
    host_keys = set()
    for node in nodes:
        with paramiko.SSHClient() as ssh:
            ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            ssh.connect(
                "127.0.0.1",
                port=node.ssh_port,
                username="azureuser",
                pkey=parse_private_key(private_key),
                allow_agent=False,
                look_for_keys=False,
                timeout=10,
            )
            host_keys.add(ssh.get_transport().get_remote_server_key().get_base64())
            _, stdout, _ = ssh.exec_command("whoami && python3 -c 'print(6 * 7)'")
            assert stdout.read().decode().split() == ["azureuser", "42"]
    # Every node has its own host key: none comes baked into the image.
    assert len(host_keys) == 2
    other_private_key, _ = generate_key_pair()
    with paramiko.SSHClient() as ssh, pytest.raises(paramiko.AuthenticationException):
        ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        ssh.connect(
            "127.0.0.1",
            port=nodes[0].ssh_port,
            username="azureuser",
            pkey=parse_private_key(other_private_key),
            allow_agent=False,
            look_for_keys=False,
            timeout=10,
        )


def test_a_node_image_without_sshd_says_to_rebuild_it(
    engine, workspace, alice, settings, django_capture_on_commit_callbacks
):
    """An image built before nodes had SSH, kept under CLUSTER_NODE_IMAGE by hand."""
    older = engine.containers.run(
        settings.CLUSTER_NODE_IMAGE, ["rm", "/usr/sbin/sshd"], network_mode="none", detach=True
    )
    older.wait()
    older.commit(repository="trainyard/node", tag="test-no-sshd")
    older.remove()
    settings.CLUSTER_NODE_IMAGE = "trainyard/node:test-no-sshd"
    _, public_key = generate_key_pair()
    try:
        cluster = make_cluster(
            django_capture_on_commit_callbacks,
            workspace=workspace,
            user=alice,
            min_nodes=1,
            admin_username="azureuser",
            admin_ssh_public_key=public_key,
        )
    finally:
        engine.images.remove("trainyard/node:test-no-sshd", force=True)
    [node] = Node.objects.filter(target=cluster)
    assert node.state == NodeState.UNUSABLE
    assert node.error == (
        "Could not start the node container on engine local: the node image "
        "trainyard/node:test-no-sshd has no sshd, which the admin user azureuser needs: build "
        "the current node image with `make node-image` and unset CLUSTER_NODE_IMAGE (or set it "
        "to that image)"
    )
    assert cluster_containers(engine, cluster) == []


def test_a_killed_low_priority_node_is_preempted_and_its_run_goes_back_to_the_queue(
    engine, workspace, alice, django_capture_on_commit_callbacks, lost_runs
):
    cluster = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        vm_priority="lowpriority",
        max_nodes=2,
    )
    node_request(target=cluster, run_id=7)
    cluster_autoscale(target=cluster)
    [node] = nodes_granted(target=cluster, run_id=7)
    engine.containers.get(node.container_id).kill()

    cluster_autoscale(target=cluster)
    node.refresh_from_db()
    assert node.state == NodeState.PREEMPTED
    assert lost_runs == [
        {
            "signal": node_lost,
            "run_id": 7,
            "preempted": True,
            "reason": f"Node {node.name} of cluster cpu-cluster stopped (exited) outside "
            "Trainyard; the cluster is low priority, so the node counts as preempted",
        }
    ]
    # What the runs app does on a preemption: the run asks for a node again.
    assert node_request(target=cluster, run_id=7) is None
    cluster_autoscale(target=cluster)
    [replacement] = nodes_granted(target=cluster, run_id=7)
    assert replacement.pk != node.pk
    assert replacement.state == NodeState.RUNNING
    assert [c.id for c in running(engine, cluster)] == [replacement.container_id]


def test_a_removed_dedicated_node_fails_its_run_with_the_reason(
    engine, workspace, alice, django_capture_on_commit_callbacks, lost_runs
):
    cluster = make_cluster(
        django_capture_on_commit_callbacks, workspace=workspace, user=alice, max_nodes=1
    )
    node_request(target=cluster, run_id=9)
    cluster_autoscale(target=cluster)
    [node] = nodes_granted(target=cluster, run_id=9)
    engine.containers.get(node.container_id).remove(force=True)

    cluster_autoscale(target=cluster)
    node.refresh_from_db()
    assert node.state == NodeState.UNUSABLE
    assert node.error == f"Node {node.name} of cluster cpu-cluster was removed outside Trainyard"
    assert [(h["run_id"], h["preempted"], h["reason"]) for h in lost_runs] == [
        (9, False, node.error)
    ]


def test_containers_nobody_owns_are_removed(
    engine, workspace, alice, django_capture_on_commit_callbacks
):
    cluster = make_cluster(
        django_capture_on_commit_callbacks, workspace=workspace, user=alice, min_nodes=1
    )
    [container] = running(engine, cluster)
    Node.objects.filter(target=cluster).delete()
    cluster_autoscale(target=cluster)
    assert container.id not in [c.id for c in cluster_containers(engine, cluster)]


def test_a_node_started_by_a_concurrent_pass_is_not_taken_for_an_orphan(
    engine, workspace, alice, django_capture_on_commit_callbacks, monkeypatch
):
    cluster = make_cluster(
        django_capture_on_commit_callbacks, workspace=workspace, user=alice, max_nodes=1
    )
    node_request(target=cluster, run_id=51)
    list_containers = ContainerCollection.list
    concurrent: list[bool] = []

    def list_after_a_concurrent_pass(collection, *args, **kwargs):
        # Another worker's pass starts the node after this pass read the nodes,
        # and before it lists the containers.
        if not concurrent:
            concurrent.append(True)
            cluster_autoscale(target=cluster)
        return list_containers(collection, *args, **kwargs)

    monkeypatch.setattr(ContainerCollection, "list", list_after_a_concurrent_pass)
    cluster_autoscale(target=cluster)
    monkeypatch.undo()

    assert concurrent
    [node] = nodes_granted(target=cluster, run_id=51)
    assert [c.name for c in running(engine, cluster)] == [
        f"trainyard-{settings.TRAINYARD_INSTANCE_ID}-{node.name}"
    ]
    cluster_autoscale(target=cluster)
    assert Node.objects.get(pk=node.pk).state == NodeState.RUNNING


def test_a_multi_node_run_gets_all_its_nodes_at_once_and_keeps_its_place_in_line(
    engine, workspace, alice, django_capture_on_commit_callbacks
):
    cluster = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        min_nodes=2,
        max_nodes=2,
    )
    cluster_autoscale(target=cluster)
    [busy] = nodes_granted(target=cluster, run_id=1)
    # One node idle: the two-node run claims none of it and waits, first in line.
    assert node_request(target=cluster, run_id=2, count=2) is None
    assert cluster_counts(cluster).waiting_nodes == 2
    assert cluster_wait_reason(cluster) == "1 run waiting, at max nodes 2"
    # A one-node run that came later does not take the node the two-node run waits for.
    assert node_request(target=cluster, run_id=3) is None
    assert Node.objects.get(pk=busy.pk).run_id == 1
    assert Node.objects.filter(target=cluster, state=NodeState.IDLE).count() == 1

    node_release(run_id=1)
    both = nodes_granted(target=cluster, run_id=2, count=2)
    assert both is not None and len({n.pk for n in both}) == 2
    assert [n.pk for n in nodes_granted(target=cluster, run_id=2, count=2)] == [n.pk for n in both]
    assert node_request(target=cluster, run_id=3) is None
    node_release(run_id=2)
    assert node_request(target=cluster, run_id=3) is not None
