"""Runs on the local target: real detached processes, the real run monitor."""

import pytest

from compute.models import ComputeTarget
from runs import logstore
from runs.models import RunStatus
from tests.integration.runs_support import running_monitor, submit, wait_final, write_tree

pytestmark = pytest.mark.django_db(transaction=True)

TRAIN = """\
import os, sys
from trainyard import run
print("epochs", sys.argv[1:])
for step in range(3):
    run.log("loss", 1.0 / (step + 1))
    print(f"accuracy={0.5 + step / 10:.2f}")
run.tag("model", "tiny")
os.makedirs("outputs", exist_ok=True)
with open("outputs/model.txt", "w") as f:
    f.write("weights")
with open("logs/extra.log", "w") as f:
    f.write("more logs")
print("warning: done", file=sys.stderr)
"""


@pytest.fixture
def local(workspace):
    return ComputeTarget.objects.get(workspace=workspace, name="local")


def test_a_local_run_completes_with_outputs_logs_and_metrics(tmp_path, workspace, alice, local):
    source = write_tree(tmp_path / "src", {"train.py": TRAIN})
    with running_monitor():
        run = submit(
            workspace=workspace,
            user=alice,
            target=local,
            source=source,
            arguments=["--epochs", "3"],
            metric_patterns=[r"accuracy=(?P<accuracy>[0-9.]+)"],
        )
        run = wait_final(run)
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert run.exit_code == 0
    stdout, _ = logstore.read(run.pk, "stdout")
    assert b"epochs ['--epochs', '3']" in stdout
    assert b"warning: done" in logstore.read(run.pk, "stderr")[0]
    assert {f.path for f in run.files.all()} == {"outputs/model.txt", "logs/extra.log"}
    loss = list(run.metrics.filter(name="loss").values_list("step", "value"))
    assert loss == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    accuracy = list(run.metrics.filter(name="accuracy").values_list("step", "value"))
    assert accuracy == [(0, 0.5), (1, 0.6), (2, 0.7)]
    assert run.tags["model"] == "tiny"
    statuses = [e.status for e in run.events.all()]
    assert statuses == [
        "NotStarted",
        "Queued",
        "Preparing",
        "Starting",
        "Running",
        "Finalizing",
        "Completed",
    ]


def test_a_failing_script_shows_its_exit_code_and_stderr_tail(tmp_path, workspace, alice, local):
    source = write_tree(
        tmp_path / "src",
        {"train.py": "import sys\nprint('about to fail', file=sys.stderr)\nraise SystemExit(3)\n"},
    )
    with running_monitor():
        run = wait_final(submit(workspace=workspace, user=alice, target=local, source=source))
    assert run.status == RunStatus.FAILED
    assert run.exit_code == 3
    assert "about to fail" in run.stderr_tail
    assert "exited with code 3" in run.error
