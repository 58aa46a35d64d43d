"""Run-based compute: `target: amlcompute` creates a cluster for one run and deletes it after."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compute.models import ComputeTarget
from runs.logs import store as logstore
from runs.models import Run, RunStatus
from tests.compute.backends.test_runs_cluster import dispatch_until_started
from tests.conftest import client_for
from tests.runs.test_runs_api import archive
from tests.support.clusters import remove_test_containers
from tests.support.runs import minimal_environment, running_monitor, wait_final

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

RUNCONFIG = b"""\
script: train.py
target: amlcompute
amlcompute:
  vmSize: STANDARD_D2_V2
  vmPriority: dedicated
  clusterMaxNodeCount: 1
  retainCluster: %s
"""


@pytest.fixture
def engine(docker_engine):
    yield docker_engine
    remove_test_containers(docker_engine)


def submit(client, retain: bool):
    minimal_environment()  # the curated environment, which transactional tests flush
    return client.post(
        "/api/v1/runs?workspace=vision",
        {
            "experiment": "run-based",
            "snapshot": archive({"train.py": b"print('on a cluster of my own')\n"}),
            "runconfig": SimpleUploadedFile(
                "amlcompute.runconfig", RUNCONFIG % (b"true" if retain else b"false")
            ),
        },
    )


def test_a_run_based_cluster_is_created_for_the_run_and_deleted_after_it(
    workspace, api_alice, engine
):
    with running_monitor():
        response = submit(api_alice, retain=False)
        assert response.status_code == 201, response.content
        run = Run.objects.get(pk=response.json()["id"])
        cluster_name = run.target_name
        assert cluster_name.startswith("run-")
        cluster = ComputeTarget.objects.get(workspace=workspace, name=cluster_name)
        assert cluster.config["run_based"] is True
        assert (cluster.config["vm_size"], cluster.config["max_nodes"]) == ("Standard_D2_v2", 1)
        run = wait_final(dispatch_until_started(run), timeout=90)
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert logstore.read(run.pk, "stdout")[0] == b"on a cluster of my own\n"
    assert not ComputeTarget.objects.filter(workspace=workspace, name=cluster_name).exists()
    assert (
        engine.containers.list(all=True, filters={"label": f"trainyard.cluster={cluster.pk}"}) == []
    )
    run.refresh_from_db()
    assert run.target is None and run.target_name == cluster_name


def test_a_retained_run_based_cluster_stays(workspace, alice, api_alice, engine):
    with running_monitor():
        response = submit(api_alice, retain=True)
        assert response.status_code == 201, response.content
        run = wait_final(dispatch_until_started(Run.objects.get(pk=response.json()["id"])))
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert run.target_id is not None
    cluster = ComputeTarget.objects.get(pk=run.target_id)
    assert cluster.state == "Succeeded"
    page = client_for(alice).get(reverse("compute_detail", args=[workspace.slug, cluster.name]))
    assert "Created for one run, and kept after it" in page.content.decode()


def test_target_amlcompute_without_a_vm_size_is_explained(workspace, api_alice):
    minimal_environment()
    response = api_alice.post(
        "/api/v1/runs?workspace=vision",
        {
            "experiment": "run-based",
            "target": "amlcompute",
            "entry_script": "train.py",
            "snapshot": archive({"train.py": b"print(1)\n"}),
        },
    )
    assert response.status_code == 400
    assert "needs a VM size" in response.json()["detail"]
    assert not Run.objects.exists()
