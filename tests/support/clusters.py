"""Helpers for the managed-cluster tests: create clusters for real, see their containers."""

from __future__ import annotations

import docker
from django.conf import settings

from compute.cluster import services as cluster_services
from compute.cluster.scheduler import node_request
from compute.models import ComputeTarget, Node


def cluster_containers(client: docker.DockerClient, target: ComputeTarget | None = None) -> list:
    """Node containers of this test run (of one cluster, if given), running or not."""
    labels = [f"trainyard.instance={settings.TRAINYARD_INSTANCE_ID}"]
    if target is not None:
        labels.append(f"trainyard.cluster={target.pk}")
    return client.containers.list(all=True, filters={"label": labels})


def make_cluster(
    capture, *, workspace, user, name: str = "cpu-cluster", **options
) -> ComputeTarget:
    """Create a cluster through the service and run its provisioning task (as on commit)."""
    options.setdefault("vm_size", "Standard_D2_v2")
    options.setdefault("max_nodes", 2)
    with capture(execute=True):
        target = cluster_services.cluster_create(
            workspace=workspace, user=user, name=name, **options
        )
    target.refresh_from_db()
    return target


def nodes_granted(*, target: ComputeTarget, run_id: int, count: int = 1) -> list[Node]:
    """The nodes `node_request` gives the run, failing the test if the run has to wait."""
    nodes = node_request(target=target, run_id=run_id, count=count)
    assert nodes is not None, f"run {run_id} waits for a node of {target.name}"
    return nodes


def remove_test_containers(client: docker.DockerClient) -> None:
    for container in cluster_containers(client):
        container.remove(force=True)


def node_processes(node, *needles: str) -> list[str]:
    """The live (not zombie) processes in a node's container whose command has a needle."""
    from compute.cluster.scheduler import node_docker

    container = node_docker(node).containers.get(node.container_id)
    listing = container.exec_run(["ps", "-eo", "stat,args"]).output.decode().splitlines()[1:]
    return [p for p in listing if any(n in p for n in needles) and not p.startswith("Z")]
