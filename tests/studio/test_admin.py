"""The admin: every model's list loads, searches and filters for staff, and only for staff."""

import pytest
from django.apps import apps

from compute.models import (
    ComputeKind,
    ComputeOperation,
    ComputeTarget,
    DockerEngine,
    Node,
    NodeRequest,
)
from pipelines.models import Pipeline, PipelineStep
from runs.models import (
    Environment,
    Experiment,
    Metric,
    Run,
    RunEvent,
    RunFile,
    Snapshot,
    SnapshotBlob,
)
from studio.services import token_create
from sweeps.models import Sweep, SweepChild


@pytest.fixture
def studio_data(workspace, alice, bob):
    """One row of each model, named so a search finds exactly it."""
    local = ComputeTarget.objects.get(workspace=workspace, name="local")
    mnist = Experiment.objects.create(workspace=workspace, name="mnist", created_by=alice)
    run = Run.objects.create(
        workspace=workspace,
        experiment=mnist,
        number=1,
        status="Running",
        target_name="local",
        submitted_by=alice,
    )
    text_jobs = Experiment.objects.create(workspace=workspace, name="text-jobs", created_by=alice)
    parent = Run.objects.create(
        workspace=workspace, experiment=text_jobs, number=1, status="Running"
    )
    child = Run.objects.create(
        workspace=workspace, experiment=text_jobs, number=2, status="Running", parent=parent
    )
    pipeline = Pipeline.objects.create(run=parent, name="word-count", definition="steps: []")
    PipelineStep.objects.create(
        pipeline=pipeline, run=child, name="prepare", position=0, step_type="script"
    )
    tuning = Experiment.objects.create(workspace=workspace, name="tuning", created_by=alice)
    sweep_run = Run.objects.create(
        workspace=workspace,
        experiment=tuning,
        number=1,
        status="Running",
        display_name="sweep of train.py",
    )
    trial = Run.objects.create(
        workspace=workspace,
        experiment=tuning,
        number=2,
        status="Completed",
        parent=sweep_run,
        display_name="--lr 0.01",
    )
    sweep = Sweep.objects.create(run=sweep_run, definition="sampling: {}", seed=7)
    SweepChild.objects.create(sweep=sweep, run=trial, index=0, hyperparameters={"--lr": 0.01})
    RunEvent.objects.create(run=run, status="Running", message="started on local")
    Metric.objects.create(run=run, name="loss", step=0, value=0.3)
    RunFile.objects.create(run=run, path="outputs/model.pkl", sha256="c" * 64, size=3)
    Snapshot.objects.create(workspace=workspace, digest="ab" * 32)
    SnapshotBlob.objects.create(workspace=workspace, sha256="cd" * 32, size=3)
    NodeRequest.objects.create(target=local, run_id=run.pk)
    ComputeOperation.objects.create(
        target=local, workspace=workspace, target_name="local", action="check"
    )
    engine = DockerEngine.objects.create(workspace=workspace, name="gpu-box", url="ssh://u@gpu")
    Node.objects.create(target=local, engine=engine, name="node-1")
    Environment.objects.create(workspace=workspace, name="sklearn", kind="user")
    token_create(user=bob, name="laptop")
    return workspace


def changelists(workspace, bob):
    """(changelist, a search and a filter that together match exactly one row)."""
    ws = workspace.pk
    return [
        ("studio/workspace", f"q=Vision&members__id__exact={bob.pk}"),
        ("studio/membership", "q=bob&role__exact=reader"),
        ("studio/apitoken", "q=laptop&revoked_at__isnull=True"),
        ("compute/computetarget", f"q=local&kind__exact=local&workspace__id__exact={ws}"),
        ("compute/computeoperation", "q=local&action__exact=check"),
        ("compute/dockerengine", f"q=gpu&workspace__id__exact={ws}"),
        ("compute/node", "q=node-1&state__exact=preparing"),
        ("compute/noderequest", f"q=local&target__workspace__id__exact={ws}"),
        ("runs/experiment", f"q=mnist&workspace__id__exact={ws}"),
        ("runs/run", "q=mnist&status__exact=Running"),
        ("runs/environment", f"q=sklearn&kind__exact=user&workspace__id__exact={ws}"),
        ("runs/runevent", "q=started&status__exact=Running"),
        ("runs/snapshot", f"q=abab&workspace__id__exact={ws}"),
        ("runs/snapshotblob", f"q=cdcd&workspace__id__exact={ws}"),
        ("runs/metric", f"q=loss&run__workspace__id__exact={ws}"),
        ("runs/runfile", f"q=model.pkl&run__workspace__id__exact={ws}"),
        ("pipelines/pipeline", "q=word-count&run__status__exact=Running"),
        ("pipelines/pipelinestep", "q=prepare&step_type__exact=script"),
        ("sweeps/sweep", "q=sweep+of+train.py&run__status__exact=Running"),
        ("sweeps/sweepchild", f"q=--lr&sweep__run__workspace__id__exact={ws}"),
    ]


def test_staff_search_and_filter_every_models_list(studio_data, alice, bob, as_alice):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    for changelist, query in changelists(studio_data, bob):
        response = as_alice.get(f"/admin/{changelist}/?{query}")
        # An unknown filter answers with a redirect to ?e=1, not 200.
        assert response.status_code == 200, changelist
        # The paginator counts what the search and the filter left: exactly our row.
        model = apps.get_model(*changelist.split("/"))
        assert f"1 {model._meta.verbose_name}\n" in response.content.decode(), changelist


def test_non_staff_are_refused(studio_data, bob, as_bob):
    for changelist, query in changelists(studio_data, bob):
        response = as_bob.get(f"/admin/{changelist}/?{query}")
        assert response.status_code == 302, changelist
        assert response["Location"].startswith("/admin/login/"), changelist


def test_admin_never_shows_secrets(workspace, alice, as_alice):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    vm = ComputeTarget.objects.create(
        workspace=workspace,
        name="gpu-vm",
        kind=ComputeKind.VM,
        address="10.0.0.4",
        username="azureuser",
        password="vm-password-123",
        private_key="-----BEGIN OPENSSH PRIVATE KEY-----",
        created_by=alice,
    )
    page = as_alice.get(f"/admin/compute/computetarget/{vm.pk}/change/").content.decode()
    assert "10.0.0.4" in page
    assert "vm-password-123" not in page and "PRIVATE KEY" not in page
    token, raw = token_create(user=alice, name="ci")
    page = as_alice.get(f"/admin/studio/apitoken/{token.pk}/change/").content.decode()
    assert token.prefix in page and token.token_hash not in page and raw not in page
