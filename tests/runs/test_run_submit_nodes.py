"""What the submit form says about node counts and runconfig communicators."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compute.models import ComputeKind, ComputeTarget, NodeRequest
from runs.models import Run
from runs.services.lifecycle import runs_dispatch
from tests.runs.test_run_pages import folder, submit_data

pytestmark = pytest.mark.django_db


def post(client, workspace, data):
    data.setdefault("source_paths", "p/train.py")
    data.setdefault("source_folder", folder(("p/train.py", b"print(1)")))
    return client.post(reverse("run_submit", args=[workspace.slug]), data)


def test_more_than_one_node_on_one_machine_is_refused_at_the_field(workspace, as_carol):
    page = post(as_carol, workspace, submit_data(node_count="2")).content.decode()
    field = page.split('for="id_node_count"')[1].split("</div>")[0]
    assert "local is one machine: runs on more than one node need a compute cluster" in field
    assert not Run.objects.exists()


@pytest.mark.parametrize("communicator", ["Mpi", "ParameterServer"])
def test_a_runconfig_asking_for_mpi_or_a_parameter_server_is_explained(
    workspace, as_carol, communicator
):
    data = submit_data()
    data["runconfig"] = SimpleUploadedFile(
        "x.runconfig", f"script: train.py\nnodeCount: 2\ncommunicator: {communicator}\n".encode()
    )
    page = post(as_carol, workspace, data).content.decode()
    assert f"communicator {communicator} is not supported here" in page
    assert "Use communicator None, Gloo or Nccl." in page
    assert not Run.objects.exists()


def test_a_runconfig_with_communicator_none_is_accepted(workspace, as_carol):
    data = submit_data()
    data["runconfig"] = SimpleUploadedFile(
        "x.runconfig", b"script: train.py\nnodeCount: 1\ncommunicator: None\n"
    )
    assert post(as_carol, workspace, data).status_code == 302
    assert Run.objects.get().node_count == 1


def test_the_dispatcher_forgets_node_requests_of_runs_that_no_longer_wait(workspace, as_carol):
    post(as_carol, workspace, submit_data())
    run = Run.objects.get()
    cluster = ComputeTarget.objects.create(workspace=workspace, name="c", kind=ComputeKind.CLUSTER)
    NodeRequest.objects.create(target=cluster, run_id=run.pk, node_count=2)
    NodeRequest.objects.create(target=cluster, run_id=run.pk + 1000)
    runs_dispatch()
    assert list(NodeRequest.objects.values_list("run_id", flat=True)) == [run.pk]
