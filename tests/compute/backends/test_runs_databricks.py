"""The Databricks client (official databricks-sdk) against the workspace emulator."""

import textwrap

import pytest

from compute.cloud.clients import CANCELED, COMPLETED, FAILED, RUNNING, CloudError
from compute.cloud.clients.databricks import Databricks
from compute.models import ComputeKind, ComputeState, ComputeTarget
from tests.support.cloud import (
    closed_port_url,
    follow,
    hello_jar,
    process_exists,
    wait_until,
)

CLUSTER = "0923-164208-meows279"

TRAIN = textwrap.dedent(
    """
    import sys, time
    print("training with", " ".join(sys.argv[1:]), flush=True)
    for epoch in range(3):
        print(f"epoch {epoch} loss {1 / (epoch + 1):.3f}", flush=True)
        time.sleep(0.2)
    import os
    os.makedirs("outputs", exist_ok=True)
    with open("outputs/model.txt", "w") as out:
        out.write("weights=42")
    print("done", flush=True)
    """
).encode()


@pytest.fixture
def dbx(databricks_emulator):
    return Databricks(workspace_url=databricks_emulator.url, token=databricks_emulator.token)


def test_check_shows_the_user_and_the_clusters(dbx, databricks_emulator):
    facts = dbx.check()

    assert facts["user"] == "alice@example.com"
    assert {c["cluster_id"]: c["cluster_name"] for c in facts["clusters"]} == {
        "0923-164208-meows279": "shared-autoscale",
        "1101-093012-bark123": "gpu-ml",
    }
    assert all(c["state"] == "RUNNING" for c in facts["clusters"])


def test_python_script_runs_on_an_existing_cluster_to_success(dbx, databricks_emulator):
    handle = dbx.submit(
        kind="python",
        entry="train.py",
        files={"train.py": TRAIN, "helper.py": b"VALUE = 1\n"},
        run_name="mnist #1",
        parameters=["--lr", "0.01"],
        cluster_id=CLUSTER,
    )

    pieces, offset = [], 0

    def read():
        nonlocal offset
        chunk = dbx.log(handle, offset)
        offset += len(chunk)
        pieces.append(chunk)
        return b"epoch 1" in b"".join(pieces)

    wait_until(read, what="the second epoch in the live log")
    _, state, result = follow(dbx, handle)
    pieces.append(dbx.log(handle, offset))

    assert state == COMPLETED
    assert result["result_state"] == "SUCCESS"
    stdout, stderr = dbx.output(handle)
    assert stdout.decode().splitlines() == [
        "training with --lr 0.01",
        "epoch 0 loss 1.000",
        "epoch 1 loss 0.500",
        "epoch 2 loss 0.333",
        "done",
    ]
    assert stderr == b""
    # The log read piece by piece is the whole log, nothing lost or repeated.
    assert b"".join(pieces) == stdout
    written = databricks_emulator.workspace_path(
        handle["task_run_id"], f"{handle['folder']}/outputs/model.txt"
    )
    assert written.read_text() == "weights=42"
    [(name, download)] = dbx.collect(handle)
    assert (name, download()) == ("outputs/model.txt", b"weights=42")
    assert handle["run_page_url"].endswith(f"#job/runs/{handle['run_id']}")


def test_states_move_from_preparing_through_running_to_completed(dbx, databricks_emulator):
    slow = b"import time\nprint('start', flush=True)\ntime.sleep(1.5)\nprint('end')\n"
    handle = dbx.submit(
        kind="python", entry="slow.py", files={"slow.py": slow}, run_name="slow", cluster_id=CLUSTER
    )

    seen, state, _ = follow(dbx, handle)

    assert seen[0] == "Preparing"
    assert "Running" in seen
    assert state == COMPLETED


def test_a_failing_script_fails_with_its_error(dbx):
    script = b"print('loading')\nraise RuntimeError('CUDA out of memory')\n"
    handle = dbx.submit(
        kind="python", entry="bad.py", files={"bad.py": script}, run_name="bad", cluster_id=CLUSTER
    )

    _, state, result = follow(dbx, handle)

    assert state == FAILED
    assert result["result_state"] == "FAILED"
    assert dbx.collect(handle) == []
    assert "RuntimeError: CUDA out of memory" in result["error"]
    stdout, stderr = dbx.output(handle)
    assert b"loading" in stdout
    assert b"Traceback" in stderr


def test_notebook_reads_its_parameters_and_returns_its_exit_value(dbx):
    notebook = textwrap.dedent(
        """\
        # Databricks notebook source
        alpha = float(dbutils.widgets.get("alpha"))

        # COMMAND ----------

        print("alpha is", alpha)
        dbutils.notebook.exit(f"score={alpha * 2}")
        print("never printed")
        """
    ).encode()
    handle = dbx.submit(
        kind="notebook",
        entry="evaluate.py",
        files={"evaluate.py": notebook},
        run_name="evaluate",
        parameters=["alpha=0.25"],
        cluster_id=CLUSTER,
    )

    _, state, result = follow(dbx, handle)

    assert state == COMPLETED
    assert result["notebook_result"] == "score=0.5"
    assert dbx.output(handle) == (b"score=0.5", b"")


def test_jar_runs_its_main_class_on_a_new_job_cluster(dbx, databricks_emulator, tmp_path):
    handle = dbx.submit(
        kind="jar",
        entry="hello.jar",
        files={"hello.jar": hello_jar(tmp_path)},
        run_name="jar",
        parameters=["a", "b"],
        main_class="ai.trainyard.Hello",
        new_cluster={
            "spark_version": "13.3.x-scala2.12",
            "node_type_id": "Standard_DS3_v2",
            "num_workers": 1,
        },
    )

    seen, state, _ = follow(dbx, handle)

    assert state == COMPLETED, dbx.output(handle)
    assert seen[0] == "Preparing"
    assert dbx.output(handle)[0] == b"hello from the JVM a,b\n"
    job_clusters = [c for c in dbx.check()["clusters"] if c["cluster_name"].startswith("job-")]
    assert [c["state"] for c in job_clusters] == ["TERMINATED"]


def test_cancel_stops_the_run_and_its_process(dbx, databricks_emulator):
    script = b"import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(300)\n"
    handle = dbx.submit(
        kind="python",
        entry="long.py",
        files={"long.py": script},
        run_name="long",
        cluster_id=CLUSTER,
    )
    pid_file = databricks_emulator.workspace_path(handle["task_run_id"], f"{handle['folder']}/pid")
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), what="the pid file"))
    assert dbx.status(handle)[0] == RUNNING
    assert process_exists(pid)

    dbx.cancel(handle)
    _, state, result = follow(dbx, handle)

    assert state == CANCELED
    assert result["result_state"] == "CANCELED"
    assert not process_exists(pid)


def test_a_retried_submit_with_the_same_key_starts_one_run(dbx, databricks_emulator):
    options = {
        "kind": "python",
        "entry": "a.py",
        "files": {"a.py": b"print('once')\n"},
        "run_name": "retry",
        "cluster_id": CLUSTER,
        "idempotency_key": "run-41",
    }

    first = dbx.submit(**options)
    second = dbx.submit(**options)

    assert second == first
    assert list(databricks_emulator.runs) == [first["run_id"]]
    assert follow(dbx, first)[1] == COMPLETED
    assert dbx.output(second)[0] == b"once\n"


def test_a_run_past_its_timeout_is_stopped_and_fails(dbx, databricks_emulator):
    script = b"import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(300)\n"
    handle = dbx.submit(
        kind="python",
        entry="slow.py",
        files={"slow.py": script},
        run_name="too slow",
        cluster_id=CLUSTER,
        timeout_seconds=1,
    )
    pid_file = databricks_emulator.workspace_path(handle["task_run_id"], f"{handle['folder']}/pid")
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), what="the pid file"))

    _, state, result = follow(dbx, handle)

    assert state == FAILED
    assert result["result_state"] == "TIMEDOUT"
    assert result["message"] == "Run timed out after 1 seconds."
    assert not process_exists(pid)


def test_a_new_cluster_without_its_node_type_is_refused(dbx, databricks_emulator):
    with pytest.raises(CloudError) as caught:
        dbx.submit(
            kind="python",
            entry="a.py",
            files={"a.py": b""},
            run_name="x",
            new_cluster={"spark_version": "13.3.x-scala2.12", "num_workers": 1},
        )

    assert caught.value.code == "invalid_request"
    assert str(caught.value).startswith("A new job cluster needs its node_type_id")
    assert databricks_emulator.runs == {}


def test_a_rejected_token_says_how_to_make_a_new_one(databricks_emulator):
    bad = "dapi-not-the-right-token-42"
    client = Databricks(workspace_url=databricks_emulator.url, token=bad)

    with pytest.raises(CloudError) as caught:
        client.check()

    assert caught.value.code == "unauthenticated"
    assert str(caught.value) == (
        "The Databricks token was rejected (401): create a new personal access token in "
        "User Settings → Developer → Access tokens and edit the credentials of this "
        "compute target."
    )
    assert bad not in str(caught.value)


def test_an_unknown_cluster_names_the_clusters_there_are(dbx):
    with pytest.raises(CloudError) as caught:
        dbx.submit(
            kind="python",
            entry="a.py",
            files={"a.py": b"print(1)"},
            run_name="x",
            cluster_id="0000-000000-nothere",
        )

    assert caught.value.code == "cluster_not_found"
    assert str(caught.value) == (
        f"Databricks cluster '0000-000000-nothere' does not exist in {dbx.workspace_url}: "
        "pick one of: shared-autoscale (0923-164208-meows279), gpu-ml (1101-093012-bark123), "
        "or run on a new job cluster."
    )


def test_check_of_a_cluster_the_workspace_lacks_names_the_ones_it_has(dbx):
    assert len(dbx.check(cluster_id=CLUSTER)["clusters"]) == 2

    with pytest.raises(CloudError) as caught:
        dbx.check(cluster_id="0000-000000-nothere")

    assert caught.value.code == "cluster_not_found"
    assert "pick one of: shared-autoscale (0923-164208-meows279)" in str(caught.value)


def test_an_unreachable_workspace_says_so():
    client = Databricks(workspace_url=closed_port_url(), token="dapi-x-0123456789", timeout=1)

    with pytest.raises(CloudError) as caught:
        client.check()

    assert caught.value.code == "unreachable"
    assert "Cannot reach the Databricks workspace" in str(caught.value)


def test_a_compute_target_gives_its_client(db, workspace, alice, databricks_emulator):
    ComputeTarget.objects.create(
        workspace=workspace,
        name="dbx",
        kind=ComputeKind.DATABRICKS,
        state=ComputeState.SUCCEEDED,
        config={"workspace_url": databricks_emulator.url, "resource_group": "ml-rg"},
        access_token=databricks_emulator.token,
        created_by=alice,
    )
    target = ComputeTarget.objects.get(workspace=workspace, name="dbx")

    facts = Databricks.from_target(target).check()

    assert facts["workspace_url"] == databricks_emulator.url
    assert len(facts["clusters"]) == 2
