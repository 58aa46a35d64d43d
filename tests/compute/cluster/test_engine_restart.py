"""The Docker engine of a cluster's node restarts under a run: a private dockerd, restarted."""

import signal
import subprocess
import time

import pytest
from django.conf import settings

from compute.cluster import services as cluster_services
from compute.cluster.autoscaler import cluster_autoscale
from compute.models import Node, NodeState
from runs.logs import store as logstore
from runs.models import FINAL_STATUSES, RunStatus
from runs.services.lifecycle import runs_dispatch
from tests.support.clusters import make_cluster
from tests.support.runs import running_monitor, submit, write_tree

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

SCRIPT = "import time\nfor i in range(4):\n    print('line', i, flush=True)\n    time.sleep(1)\n"
LINES = b"".join(b"line %d\n" % i for i in range(4))


@pytest.fixture(scope="module")
def node_engine(private_engine):
    """The private dockerd with the node image, loaded once for the module."""
    saved = subprocess.Popen(
        ["docker", "save", settings.CLUSTER_NODE_IMAGE], stdout=subprocess.PIPE
    )
    subprocess.run(
        ["docker", "-H", private_engine.url, "load", "-q"],
        stdin=saved.stdout,
        check=True,
        capture_output=True,
    )
    assert saved.wait() == 0
    return private_engine


def status_of(run) -> str:
    run.refresh_from_db()
    return run.status


def requeued(run) -> bool:
    return run.events.filter(status=RunStatus.QUEUED, message__startswith="Requeued").exists()


def autoscale_until(cluster, done, timeout: float = 60):
    """What beat does every few seconds: autoscale passes and queued runs retried."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        cluster_autoscale(target=cluster)
        runs_dispatch()
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_an_engine_restart_requeues_the_run_which_completes_on_a_new_node(
    sig, node_engine, workspace, alice, tmp_path, django_capture_on_commit_callbacks
):
    engine = cluster_services.engine_register(
        workspace=workspace, name="private", url=node_engine.url, user=alice
    )
    assert engine.error == "" and engine.facts["node_image"] is True
    cluster = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        name=f"restart-{sig.name[3:].lower()}",
        engines=[engine],
        min_nodes=1,
        max_nodes=1,
    )
    assert cluster.state == "Succeeded", cluster.error
    cluster_autoscale(target=cluster)
    source = write_tree(tmp_path / "src", {"train.py": SCRIPT})
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=cluster, source=source)
        autoscale_until(cluster, lambda: status_of(run) == RunStatus.RUNNING)
        first = Node.objects.get(target=cluster, name=run.node_name)

        restarted_at = time.monotonic()
        node_engine.restart(sig)
        back_after = time.monotonic() - restarted_at
        autoscale_until(cluster, lambda: requeued(run) or status_of(run) in FINAL_STATUSES)
        assert requeued(run), (run.status, run.error)
        requeued_after = time.monotonic() - restarted_at
        autoscale_until(cluster, lambda: status_of(run) in FINAL_STATUSES)
        recovered_after = time.monotonic() - restarted_at
    events = [(e.status, e.message) for e in run.events.all()]
    assert run.status == RunStatus.COMPLETED, (run.error, events)
    print(
        f"{sig.name}: engine back after {back_after:.1f} s, "
        f"run requeued after {requeued_after:.1f} s, completed after {recovered_after:.1f} s"
    )

    reason = (
        f"The Docker engine of node {first.name} of cluster {cluster.name} restarted "
        "(or its container was restarted); the run is queued again"
    )
    assert run.events.filter(status=RunStatus.QUEUED, message=f"Requeued: {reason}").exists()
    assert run.node_name != first.name
    first.refresh_from_db()
    assert first.state == NodeState.UNUSABLE and first.error == reason
    # The log keeps what the first attempt printed before the restart, then the second's whole.
    log = logstore.read(run.pk, "stdout")[0]
    assert log.endswith(LINES) and LINES.startswith(log[: -len(LINES)]), log
    print(f"first attempt printed {log[: -len(LINES)]!r}")
