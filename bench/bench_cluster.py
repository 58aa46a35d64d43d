"""Managed-cluster latency: from "a run asks for a node" to "the node is ready".

Three cases on the local Docker engine with the node image already built:
- a new node: the cluster is at 0 nodes, so the request scales it up (create
  and start the container, check it runs Python) and the run gets the node;
- the same on a cluster with an SSH admin user, whose nodes also create the
  user, generate their host keys and start their sshd;
- a reused idle node: a node is idle, and the run is given it.

Baselines, timed in the same run: for a new node, the bare docker SDK doing
the same container work (create and start the image with `sleep infinity`,
exec python3); for an idle node, a single-row read of the cluster from the
database.

Runs in-process with the test settings (tasks run at once, no broker), in a
throwaway DATA_DIR and SQLite database:

    .venv/bin/python bench/bench_cluster.py
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="ty-bench-cluster-")
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

import django  # noqa: E402

django.setup()

import docker  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from compute.cluster import services as cluster_services  # noqa: E402
from compute.cluster.autoscaler import cluster_autoscale  # noqa: E402
from compute.cluster.scheduler import node_release, node_request  # noqa: E402
from compute.models import ComputeTarget  # noqa: E402
from compute.ssh import generate_key_pair  # noqa: E402
from studio.services import workspace_create  # noqa: E402
from tests.factories import UserFactory  # noqa: E402

NEW_NODE_ROUNDS = 10
REUSE_ROUNDS = 200


def ms(seconds: float) -> float:
    return seconds * 1000


def bare_docker_node(client: docker.DockerClient) -> float:
    start = time.perf_counter()
    container = client.containers.create(
        settings.CLUSTER_NODE_IMAGE,
        ["sleep", "infinity"],
        init=True,
        network_mode="host",
        labels={"trainyard.instance": settings.TRAINYARD_INSTANCE_ID},
    )
    container.start()
    container.exec_run(["python3", "-c", "pass"])
    elapsed = time.perf_counter() - start
    container.remove(force=True)
    return elapsed


def cluster_at_zero(workspace, alice, name: str, **options) -> ComputeTarget:
    target = cluster_services.cluster_create(
        workspace=workspace,
        user=alice,
        name=name,
        vm_size="Standard_D2_v2",
        max_nodes=1,
        idle_seconds_before_scaledown=0,
        **options,
    )
    target.refresh_from_db()
    assert target.state == "Succeeded", target.error
    return target


def new_node_round(target: ComputeTarget, run_id: int) -> float:
    start = time.perf_counter()
    assert node_request(target=target, run_id=run_id) is None
    nodes = node_request(target=target, run_id=run_id)
    elapsed = time.perf_counter() - start
    assert nodes is not None and nodes[0].state == "running"
    node_release(run_id=run_id)
    cluster_autoscale(target=target)  # idle time 0: back to no nodes
    return elapsed


def main() -> None:
    call_command("migrate", verbosity=0)
    client = docker.from_env()
    client.images.get(settings.CLUSTER_NODE_IMAGE)  # fails fast: run `make node-image` first
    alice = UserFactory.create(username="alice")
    workspace = workspace_create(name="Bench", owner=alice)
    target = cluster_at_zero(workspace, alice, "bench")
    _, public_key = generate_key_pair()
    with_ssh = cluster_at_zero(
        workspace, alice, "bench-ssh", admin_username="azureuser", admin_ssh_public_key=public_key
    )
    try:
        new_node, new_ssh_node, bare = [], [], []
        # Interleaved, so a slow moment of the machine weighs on every case alike.
        for run_id in range(1, NEW_NODE_ROUNDS + 1):
            bare.append(bare_docker_node(client))
            new_node.append(new_node_round(target, run_id))
            new_ssh_node.append(new_node_round(with_ssh, 100 + run_id))

        cluster_services.cluster_update(
            target=target, min_nodes=1, max_nodes=1, idle_seconds_before_scaledown=600
        )
        cluster_autoscale(target=target)
        reuse, db_read = [], []
        for run_id in range(1000, 1000 + REUSE_ROUNDS):
            start = time.perf_counter()
            ComputeTarget.objects.get(pk=target.pk)
            db_read.append(time.perf_counter() - start)
            start = time.perf_counter()
            nodes = node_request(target=target, run_id=run_id)
            reuse.append(time.perf_counter() - start)
            assert nodes is not None
            node_release(run_id=run_id)
    finally:
        for container in client.containers.list(
            all=True, filters={"label": f"trainyard.instance={settings.TRAINYARD_INSTANCE_ID}"}
        ):
            container.remove(force=True)

    rows = [
        ("bare docker: create + start node image, exec python3 (baseline)", bare, bare),
        ("slot requested → new node ready (warm image)", new_node, bare),
        ("slot requested → new node with SSH admin user ready", new_ssh_node, bare),
        ("single-row database read (baseline)", db_read, db_read),
        ("slot requested → reused idle node", reuse, db_read),
    ]
    print("| case | median | p90 | vs baseline |")
    print("|---|---|---|---|")
    for label, samples, baseline in rows:
        med = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        ratio = med / statistics.median(baseline)
        print(f"| {label} | {ms(med):.1f} ms | {ms(p90):.1f} ms | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
