"""The dispatcher rescues a run whose start stopped half way (its worker, Redis or the
database went away between uploading and launching)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from runs.models import Run, RunEvent, RunStatus
from runs.services.lifecycle import runs_dispatch
from tests.runs.test_run_pages import submit_data
from tests.runs.test_run_submit_nodes import post

pytestmark = pytest.mark.django_db

UPLOADED_NOT_LAUNCHED = {"attempt": "a1", "run_dir": "/nowhere/run", "root": "/nowhere"}


@pytest.mark.parametrize(
    ("status", "after"),
    [
        (RunStatus.STARTING, "The worker starting the run stopped; trying again"),
        (RunStatus.CANCEL_REQUESTED, "Canceled before the run started"),
    ],
)
def test_a_run_left_uploaded_but_not_launched_is_not_stuck(workspace, as_carol, status, after):
    post(as_carol, workspace, submit_data())
    run = Run.objects.get()
    Run.objects.filter(pk=run.pk).update(status=status, handle=UPLOADED_NOT_LAUNCHED)
    long_ago = timezone.now() - timedelta(hours=1)
    RunEvent.objects.filter(run=run).update(at=long_ago)
    RunEvent.objects.create(run=run, status=status, at=long_ago)
    runs_dispatch()
    assert RunEvent.objects.filter(run=run, message=after).exists()
    assert Run.objects.get(pk=run.pk).status != status


def test_a_launched_run_is_left_to_the_monitor(workspace, as_carol):
    post(as_carol, workspace, submit_data())
    run = Run.objects.get()
    launched = {**UPLOADED_NOT_LAUNCHED, "pgid": 12345, "container": ""}
    Run.objects.filter(pk=run.pk).update(status=RunStatus.STARTING, handle=launched)
    RunEvent.objects.filter(run=run).update(at=timezone.now() - timedelta(hours=1))
    runs_dispatch()
    assert Run.objects.get(pk=run.pk).status == RunStatus.STARTING
