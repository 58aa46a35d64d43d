"""Provisioning and deleting managed clusters on a real Docker engine, and what fails how."""

import pytest

from compute.cluster import services as cluster_services
from compute.cluster.autoscaler import cluster_autoscale
from compute.models import ComputeOperation, ComputeTarget, Node, NodeState
from compute.signals import node_lost
from studio.errors import ServiceError
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


def test_an_unreachable_engine_fails_provisioning_with_what_to_do(
    engine, workspace, alice, django_capture_on_commit_callbacks
):
    far = cluster_services.engine_register(
        workspace=workspace, name="far", url="unix:///tmp/ty-no-such-docker.sock", user=alice
    )
    assert "is unreachable" in far.error
    cluster = make_cluster(
        django_capture_on_commit_callbacks, workspace=workspace, user=alice, engines=[far]
    )
    assert cluster.state == "Failed"
    assert cluster.error.startswith(
        "Docker engine at unix:///tmp/ty-no-such-docker.sock is unreachable ("
    )
    assert "Is dockerd running on the Trainyard server?" in cluster.error
    operation = ComputeOperation.objects.get(target=cluster)
    assert operation.state == "Failed" and operation.error == cluster.error


def test_a_gpu_size_on_an_engine_without_gpus_fails(
    engine, workspace, alice, django_capture_on_commit_callbacks
):
    cluster = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        name="gpu-cluster",
        vm_size="Standard_NC6",
    )
    assert cluster.state == "Failed"
    assert cluster.error == (
        "No selected Docker engine can host Standard_NC6: Standard_NC6 has 1 GPU, but Docker "
        "engine local has no GPUs (nvidia is not among its runtimes): pick a CPU size, or "
        "register an engine with the NVIDIA container runtime."
    )


def test_a_size_larger_than_the_engine_names_the_limit(
    engine, workspace, alice, django_capture_on_commit_callbacks
):
    memory_gib = engine.info()["MemTotal"] / 1024**3
    cluster = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        name="big",
        vm_size="Standard_E64s_v3",
    )
    assert cluster.state == "Failed"
    assert cluster.error == (
        "No selected Docker engine can host Standard_E64s_v3: Standard_E64s_v3 needs 432 GiB "
        f"of memory, but Docker engine local has {memory_gib:.1f} GiB: pick a size with less "
        "memory, or register a larger engine."
    )
    assert cluster_containers(engine, cluster) == []


def test_a_missing_node_image_trainyard_does_not_build_says_what_to_do(
    engine, workspace, alice, settings, django_capture_on_commit_callbacks
):
    settings.CLUSTER_NODE_IMAGE = "trainyard/node:not-built"
    cluster = make_cluster(django_capture_on_commit_callbacks, workspace=workspace, user=alice)
    assert cluster.state == "Failed"
    assert cluster.error == (
        "Could not build the node image on Docker engine local: CLUSTER_NODE_IMAGE names "
        "trainyard/node:not-built, which Trainyard does not build: load that image into the "
        "engine (`docker load`), or unset CLUSTER_NODE_IMAGE so Trainyard builds and uses "
        "trainyard/node:bookworm-2."
    )
    steps = ComputeOperation.objects.get(target=cluster).steps
    assert [(step["label"], step["state"]) for step in steps] == [
        ("Check Docker engines", "done"),
        ("Build the node image on local", "failed"),
    ]
    assert "no node image yet" in steps[0]["detail"]


def test_a_taken_name_is_refused_whatever_its_case(
    engine, workspace, alice, django_capture_on_commit_callbacks
):
    make_cluster(django_capture_on_commit_callbacks, workspace=workspace, user=alice)
    for name in ("cpu-cluster", "CPU-Cluster", "local"):
        with pytest.raises(ServiceError, match="already has a compute target called"):
            make_cluster(
                django_capture_on_commit_callbacks, workspace=workspace, user=alice, name=name
            )
    assert ComputeTarget.objects.filter(workspace=workspace, kind="amlcompute").count() == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "9lives"}, "A compute name is 2–16 characters"),
        ({"name": "a" * 17}, "A compute name is 2–16 characters"),
        ({"name": "new"}, "used by the compute pages"),
        ({"min_nodes": 3, "max_nodes": 2}, "Minimum nodes (3) is above maximum nodes (2)"),
        ({"max_nodes": 0}, "Maximum nodes must be at least 1."),
        ({"vm_size": "Standard_Z9"}, "Standard_Z9 is not a virtual machine size"),
        ({"admin_ssh_public_key": "ssh-ed25519 AAAA"}, "Give the SSH admin user name"),
        ({"admin_username": "azureuser"}, "Give the SSH public key of azureuser"),
    ],
)
def test_invalid_requests_are_refused_before_anything_is_created(
    workspace, alice, django_capture_on_commit_callbacks, options, message
):
    with pytest.raises(ServiceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_cluster(django_capture_on_commit_callbacks, workspace=workspace, user=alice, **options)
    assert not ComputeTarget.objects.filter(kind="amlcompute").exists()


def test_delete_removes_every_node_container_and_the_target(
    engine, workspace, alice, django_capture_on_commit_callbacks
):
    heard = []
    node_lost.connect(lambda sender, **kw: heard.append(kw), weak=False, dispatch_uid="t-del")
    try:
        cluster = make_cluster(
            django_capture_on_commit_callbacks, workspace=workspace, user=alice, min_nodes=2
        )
        [node] = nodes_granted(target=cluster, run_id=11)
        assert node is not None
        assert len(cluster_containers(engine, cluster)) == 2
        with django_capture_on_commit_callbacks(execute=True):
            operation = cluster_services.cluster_delete(target=cluster, user=alice)
    finally:
        node_lost.disconnect(dispatch_uid="t-del")
    assert cluster_containers(engine, cluster) == []
    assert not ComputeTarget.objects.filter(pk=cluster.pk).exists()
    assert not Node.objects.filter(target_id=cluster.pk).exists()
    operation.refresh_from_db()
    assert operation.state == "Succeeded"
    assert operation.steps[0]["detail"] == "2 containers removed"
    assert [(h["run_id"], h["preempted"]) for h in heard] == [(11, False)]
    assert "Cluster cpu-cluster was deleted" in heard[0]["reason"]


def test_an_engine_with_nodes_cannot_be_removed(
    engine, workspace, alice, django_capture_on_commit_callbacks
):
    cluster = make_cluster(
        django_capture_on_commit_callbacks, workspace=workspace, user=alice, min_nodes=1
    )
    local = Node.objects.get(target=cluster).engine
    assert local is not None
    with pytest.raises(ServiceError, match="still hosts nodes of cpu-cluster"):
        cluster_services.engine_remove(engine=local)
    cluster_services.cluster_update(
        target=cluster, min_nodes=0, max_nodes=2, idle_seconds_before_scaledown=0
    )
    cluster_autoscale(target=cluster)
    assert not Node.objects.filter(target=cluster, state=NodeState.IDLE).exists()
    cluster_services.engine_remove(engine=local)
