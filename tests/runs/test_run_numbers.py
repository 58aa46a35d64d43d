"""Run numbers: a submit that loses the race for a number takes the next free one."""

import pytest
from django.db import transaction

from runs.models import Experiment, Run
from runs.numbers import run_numbers_take
from studio.errors import ServiceError

pytestmark = pytest.mark.django_db


@pytest.fixture
def experiment(workspace, carol):
    experiment = Experiment.objects.create(workspace=workspace, name="race", created_by=carol)
    Run.objects.create(workspace=workspace, experiment=experiment, number=1)
    return experiment


def test_a_submit_whose_number_was_taken_meanwhile_gets_the_next(
    experiment, django_capture_on_commit_callbacks
):
    tried: list[int] = []
    committed: list[str] = []

    def create(first: int) -> Run:
        tried.append(first)
        transaction.on_commit(lambda: committed.append(f"attempt {len(tried)}"))
        if len(tried) == 1:
            # What a concurrent submit does between our read of the highest number and our
            # insert: it takes the same number first.
            Run.objects.create(workspace=experiment.workspace, experiment=experiment, number=first)
        return Run.objects.create(
            workspace=experiment.workspace, experiment=experiment, number=first
        )

    with django_capture_on_commit_callbacks(execute=True):
        run = run_numbers_take(experiment=experiment, create=create)
    assert tried == [2, 2]
    assert run.number == 2
    assert sorted(experiment.runs.values_list("number", flat=True)) == [1, 2]
    # What the losing attempt asked for after commit never happens.
    assert committed == ["attempt 2"]


def test_too_many_lost_races_ask_the_user_to_try_again(experiment):
    def create(first: int) -> Run:
        Run.objects.create(workspace=experiment.workspace, experiment=experiment, number=first)
        return Run.objects.create(
            workspace=experiment.workspace, experiment=experiment, number=first
        )

    with pytest.raises(ServiceError) as caught:
        run_numbers_take(experiment=experiment, create=create)
    assert str(caught.value) == (
        "Too many runs were submitted to this experiment at once: try again."
    )
    assert caught.value.status == 400
    assert list(experiment.runs.values_list("number", flat=True)) == [1]
