"""Pipelines end to end: steps on the local target and on the Databricks and Batch emulators,
followed by a real run monitor, with files passed from step to step.

Tasks run eagerly; `advancing_pipelines` plays the Celery beat that moves pipelines on.
"""

from __future__ import annotations

import json

import pytest

from pipelines import services
from pipelines.models import Pipeline
from runs.models import Run
from runs.parents import parent_cancel
from studio.errors import ServiceError
from tests.compute.backends.test_runs_hdinsight import head_node  # noqa: F401 - a fixture
from tests.support.pipelines import (
    PIPELINE,
    SOURCE,
    advancing_pipelines,
    archive,
    file_text,
    steps_of,
    stored_log,
)
from tests.support.runs import running_monitor, wait_final

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]


def test_three_steps_pass_files_from_local_to_databricks_to_batch(cloud_targets, workspace, carol):
    parent = services.pipeline_submit(
        workspace=workspace, user=carol, definition=PIPELINE, archive=archive(SOURCE)
    )
    assert parent.experiment.name == "text-jobs"
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)

    steps = steps_of(parent)
    assert parent.status == "Completed", (parent.error, {n: r.error for n, r in steps.items()})
    assert [r.status for r in steps.values()] == ["Completed"] * 3
    assert [r.target_name for r in steps.values()] == ["local", "dbx", "cpubatch"]
    assert all(r.parent_id == parent.pk for r in steps.values())

    assert file_text(steps["prepare"], "outputs/words/words.txt").split() == [
        "the",
        "cat",
        "saw",
        "the",
        "dog",
        "and",
        "the",
        "bird",
    ]
    counts = json.loads(file_text(steps["count"], "outputs/counts/counts.json"))
    assert counts["the"] == 3
    assert "counted 6 distinct words on Databricks" in stored_log(steps["count"])
    assert file_text(steps["report"], "outputs/report.txt") == "top word: the (3)\n"
    assert "top word: the (3)" in stored_log(steps["report"])
    # The service's side of each cloud step is its preparation log.
    assert "Submitted Databricks run" in stored_log(steps["count"], "prepare")
    assert "Submitted Batch job" in stored_log(steps["report"], "prepare")
    # Each consumer saw its input in its snapshot.
    count, report = steps["count"].snapshot, steps["report"].snapshot
    assert count is not None and report is not None
    assert any(e[0] == "inputs/words/words.txt" for e in count.manifest)
    assert any(e[0] == "inputs/counts/counts.json" for e in report.manifest)
    events = [e.message for e in parent.events.all()]
    assert "All 3 step(s) completed" in events


def test_a_failing_step_fails_the_pipeline_and_later_steps_never_start(
    cloud_targets, workspace, carol
):
    definition = PIPELINE.replace("python_script: count.py", "python_script: fail.py")
    parent = services.pipeline_submit(
        workspace=workspace, user=carol, definition=definition, archive=archive(SOURCE)
    )
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)

    steps = steps_of(parent)
    assert parent.status == "Failed"
    assert steps["prepare"].status == "Completed"
    assert steps["count"].status == "Failed"
    assert "cannot count today" in stored_log(steps["count"]) + steps["count"].stderr_tail
    report = steps["report"]
    assert report.status == "Canceled"
    assert report.started_at is None and report.handle is None
    assert "Not started: step ‘count’ failed" in [e.message for e in report.events.all()]
    assert parent.error.startswith("Step ‘count’ failed")
    assert "Not started: report" in parent.error


def test_missing_output_fails_the_step_that_needed_it(cloud_targets, workspace, carol):
    definition = PIPELINE.replace("script: prepare.py", "script: report.py").replace(
        "arguments: [the, cat, saw, the, dog, and, the, bird]", "arguments: []"
    )
    source = dict(SOURCE, **{"report.py": "print('wrote nothing')\n"})
    parent = services.pipeline_submit(
        workspace=workspace, user=carol, definition=definition, archive=archive(source)
    )
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)

    steps = steps_of(parent)
    assert steps["prepare"].status == "Completed"
    assert steps["count"].status == "Failed"
    assert "Input words is missing: step ‘prepare’ completed without writing outputs/words" in (
        steps["count"].error
    )
    assert steps["report"].status == "Canceled"
    assert parent.status == "Failed"


def test_canceling_the_pipeline_stops_the_running_step(cloud_targets, workspace, carol):
    source = dict(
        SOURCE, **{"prepare.py": "import time\nprint('working', flush=True)\ntime.sleep(60)\n"}
    )
    parent = services.pipeline_submit(
        workspace=workspace, user=carol, definition=PIPELINE, archive=archive(source)
    )
    with running_monitor(), advancing_pipelines():
        prepare = steps_of(parent)["prepare"]
        from tests.support.runs import wait_for

        wait_for(prepare, ["Running"], timeout=60)
        parent_cancel(kind=services.PIPELINE, parent=Pipeline.objects.get(run=parent), user=carol)
        parent = wait_final(parent, timeout=60)

    steps = steps_of(parent)
    assert parent.status == "Canceled"
    assert {name: run.status for name, run in steps.items()} == {
        "prepare": "Canceled",
        "count": "Canceled",
        "report": "Canceled",
    }
    assert steps["count"].handle is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("compute: dbx", "compute: nothere"), "this workspace has no compute target 'nothere'"),
        (("compute: dbx", "compute: local"), "Step ‘count’ is a Databricks step"),
        (("python_script: count.py", "python_script: missing.py"), "runs missing.py, which is not"),
        (("inputs: [counts]", "inputs: [scores]"), "no step has scores among its outputs"),
        (("type: batch", "type: hadoop"), "type 'hadoop' is not one of"),
        (
            ("cluster_id: 0923-164208-meows279", "cluster: x"),
            "cluster is not a key of a databricks",
        ),
    ],
)
def test_definition_errors_name_the_step_and_the_fix(
    cloud_targets, workspace, carol, change, message
):
    with pytest.raises(ServiceError) as caught:
        services.pipeline_submit(
            workspace=workspace,
            user=carol,
            definition=PIPELINE.replace(*change),
            archive=archive(SOURCE),
        )
    assert message in str(caught.value)
    assert not Run.objects.exists()


LONG = "import os, time\nprint('pid', os.getpid(), flush=True)\ntime.sleep(300)\n"


@pytest.mark.parametrize(
    ("step", "emulator"),
    [
        ("type: databricks\n    compute: dbx\n    python_script: long.py", "databricks_emulator"),
        ("type: batch\n    compute: cpubatch\n    command: python3 long.py", "batch_emulator"),
    ],
)
def test_canceling_a_cloud_step_stops_its_job_on_the_service(
    cloud_targets, workspace, carol, step, emulator, request
):
    from tests.support.cloud import process_exists, wait_until

    definition = f"experiment: cancels\nsteps:\n  - name: long\n    {step}\n"
    parent = services.pipeline_submit(
        workspace=workspace, user=carol, definition=definition, archive=archive({"long.py": LONG})
    )
    with running_monitor(), advancing_pipelines():
        run = steps_of(parent)["long"]
        # The live log shows the job's pid: the monitor streams the service's log.
        line = wait_until(
            lambda: next((s for s in stored_log(run).splitlines() if s.startswith("pid ")), ""),
            timeout=60,
            what="the job's first line in the stored log",
        )
        pid = int(line.split()[1])
        assert process_exists(pid)
        parent_cancel(kind=services.PIPELINE, parent=Pipeline.objects.get(run=parent), user=carol)
        parent = wait_final(parent, timeout=90)

    run.refresh_from_db()
    assert (parent.status, run.status) == ("Canceled", "Canceled")
    assert not process_exists(pid)
    assert all(
        not p.popen or p.popen.poll() is not None
        for p in request.getfixturevalue(emulator).processes()
    )
