"""The Azure Batch client (official azure-batch, shared key) against the account emulator."""

import base64
import textwrap

import pytest

from compute.cloud.clients import CANCELED, COMPLETED, FAILED, QUEUED, RUNNING, CloudError
from compute.cloud.clients.batch import Batch
from compute.models import ComputeKind, ComputeState, ComputeTarget
from tests.support.cloud import (
    closed_port_url,
    follow,
    process_exists,
    wait_until,
)

TRAIN = textwrap.dedent(
    """
    import os, sys, time
    print("training on", os.environ["AZ_BATCH_POOL_ID"], "with", *sys.argv[1:], flush=True)
    for epoch in range(3):
        print(f"epoch {epoch}", flush=True)
        time.sleep(0.2)
    print("a warning", file=sys.stderr)
    os.makedirs("outputs", exist_ok=True)
    with open("outputs/model.txt", "w") as out:
        out.write(os.environ["MODEL_NAME"])
    """
).encode()


@pytest.fixture
def batch(batch_emulator):
    return Batch(
        account_url=batch_emulator.url,
        account_name=batch_emulator.account_name,
        account_key=batch_emulator.account_key,
    )


def test_check_lists_the_pools(batch):
    facts = batch.check()

    assert facts["account_name"] == "trainyardbatch"
    assert facts["pools"] == [
        {
            "id": "cpu-pool",
            "vm_size": "standard_d2s_v3",
            "state": "active",
            "allocation_state": "steady",
            "dedicated_nodes": 2,
            "low_priority_nodes": 0,
        },
        {
            "id": "empty-pool",
            "vm_size": "standard_d2s_v3",
            "state": "active",
            "allocation_state": "steady",
            "dedicated_nodes": 0,
            "low_priority_nodes": 0,
        },
    ]


def test_a_script_runs_as_a_task_and_its_files_come_back(batch, batch_emulator):
    handle = batch.submit(
        pool_id="cpu-pool",
        job_id="mnist-1",
        command_line="python3 train.py --epochs 3",
        files={"train.py": TRAIN},
        environment={"MODEL_NAME": "mnist-cnn"},
    )

    pieces, offset = [], 0

    def read():
        nonlocal offset
        chunk = batch.log(handle, offset)
        offset += len(chunk)
        pieces.append(chunk)
        return b"epoch 1" in b"".join(pieces)

    wait_until(read, what="the second epoch in stdout.txt")
    seen, state, result = follow(batch, handle)
    pieces.append(batch.log(handle, offset))

    assert state == COMPLETED
    assert RUNNING in seen
    assert result["exit_code"] == 0
    stdout, stderr = batch.output(handle)
    assert stdout.decode().splitlines() == [
        "training on cpu-pool with --epochs 3",
        "epoch 0",
        "epoch 1",
        "epoch 2",
    ]
    assert stderr == b"a warning\n"
    assert b"".join(pieces) == stdout
    task_dir = batch_emulator.task_directory("mnist-1", "main")
    assert (task_dir / "wd" / "outputs" / "model.txt").read_text() == "mnist-cnn"
    [(name, download)] = batch.collect(handle)
    assert (name, download()) == ("outputs/model.txt", b"mnist-cnn")
    # The job ends by itself once its task has.
    assert wait_until(lambda: batch_emulator.jobs["mnist-1"].state == "completed")


def test_states_move_from_preparing_through_running_to_completed(batch):
    handle = batch.submit(pool_id="cpu-pool", job_id="slow", command_line="sleep 1.5")

    seen, state, _ = follow(batch, handle)

    assert seen[0] in ("Queued", "Preparing")
    assert "Preparing" in seen and "Running" in seen
    assert state == COMPLETED


def test_a_failing_command_fails_with_its_exit_code(batch):
    handle = batch.submit(
        pool_id="cpu-pool",
        job_id="bad",
        command_line="/bin/sh -c 'echo disk full >&2; exit 3'",
    )

    _, state, result = follow(batch, handle)

    assert state == FAILED
    assert result["exit_code"] == 3
    assert result["message"] == "The command exited with code 3."
    assert batch.output(handle) == (b"", b"disk full\n")


def test_a_pool_without_nodes_keeps_the_task_queued_and_says_why(batch):
    handle = batch.submit(pool_id="empty-pool", job_id="waits", command_line="true")

    state, finished, result = batch.status(handle)

    assert (state, finished) == (QUEUED, False)
    assert result["message"] == (
        "Waiting for a node: pool 'empty-pool' has no nodes. Resize the pool in the Azure "
        "portal to run the task."
    )
    assert batch.log(handle) == b""


def test_cancel_ends_the_task_and_kills_its_process(batch, batch_emulator):
    script = b"import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(300)\n"
    handle = batch.submit(
        pool_id="cpu-pool", job_id="long", command_line="python3 long.py", files={"long.py": script}
    )
    pid_file = wait_until(
        lambda: (d := batch_emulator.task_directory("long", "main")) and d / "wd" / "pid",
        what="the task to reach a node",
    )
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), what="the pid"))
    assert batch.status(handle)[0] == RUNNING
    assert process_exists(pid)

    batch.cancel(handle)
    _, state, result = follow(batch, handle)

    assert state == CANCELED
    assert result["failure_code"] == "TaskEnded"
    assert not process_exists(pid)
    assert wait_until(lambda: batch_emulator.jobs["long"].state == "completed")


def test_a_retried_submit_finds_the_job_it_made(batch, batch_emulator):
    first = batch.submit(pool_id="cpu-pool", job_id="run-41", command_line="echo once")
    second = batch.submit(pool_id="cpu-pool", job_id="run-41", command_line="echo once")

    assert second == first
    assert list(batch_emulator.jobs["run-41"].tasks) == ["main"]
    assert follow(batch, first)[1] == COMPLETED
    assert batch.output(first)[0] == b"once\n"


def test_a_job_id_batch_cannot_take_is_refused(batch, batch_emulator):
    with pytest.raises(CloudError) as caught:
        batch.submit(pool_id="cpu-pool", job_id="mnist #1", command_line="true")

    assert caught.value.code == "invalid_request"
    assert str(caught.value) == (
        "'mnist #1' cannot be a Batch job id: use at most 64 letters, digits, hyphens and "
        "underscores."
    )
    assert batch_emulator.jobs == {}


def test_a_wrong_key_says_where_to_copy_the_right_one(batch_emulator):
    wrong = base64.b64encode(b"not the key of this account").decode()
    client = Batch(
        account_url=batch_emulator.url, account_name=batch_emulator.account_name, account_key=wrong
    )

    with pytest.raises(CloudError) as caught:
        client.check()

    assert caught.value.code == "unauthenticated"
    assert str(caught.value) == (
        "Batch account 'trainyardbatch' rejected the account key (403): copy a key from the "
        "Batch account's Keys page in the Azure portal and edit the credentials of this "
        "compute target."
    )
    assert wrong not in str(caught.value)


def test_a_key_that_is_not_base64_is_refused_before_any_request(batch_emulator):
    client = Batch(
        account_url=batch_emulator.url,
        account_name=batch_emulator.account_name,
        account_key="not base64!",
    )

    with pytest.raises(CloudError) as caught:
        client.check()

    assert caught.value.code == "unauthenticated"
    assert "not a valid key" in str(caught.value)
    assert batch_emulator.requests == []


def test_an_unknown_pool_names_the_pools_there_are(batch, batch_emulator):
    with pytest.raises(CloudError) as caught:
        batch.submit(pool_id="gpu-pool", job_id="nowhere", command_line="true")

    assert caught.value.code == "pool_not_found"
    assert str(caught.value) == (
        "Batch pool 'gpu-pool' does not exist in account 'trainyardbatch': create it in the "
        "Azure portal or pick one of: cpu-pool, empty-pool."
    )
    assert "nowhere" not in batch_emulator.jobs


def test_check_of_a_pool_the_account_lacks_names_the_ones_it_has(batch):
    assert len(batch.check(pool_id="cpu-pool")["pools"]) == 2

    with pytest.raises(CloudError) as caught:
        batch.check(pool_id="gpu-pool")

    assert caught.value.code == "pool_not_found"
    assert "pick one of: cpu-pool, empty-pool" in str(caught.value)


def test_an_unreachable_account_says_so():
    client = Batch(
        account_url=closed_port_url(),
        account_name="acct",
        account_key=base64.b64encode(b"key").decode(),
        timeout=2,
    )

    with pytest.raises(CloudError) as caught:
        client.check()

    assert caught.value.code == "unreachable"
    assert "Cannot reach the Batch account" in str(caught.value)


def test_a_compute_target_gives_its_client(db, workspace, alice, batch_emulator):
    ComputeTarget.objects.create(
        workspace=workspace,
        name="batch",
        kind=ComputeKind.BATCH,
        state=ComputeState.SUCCEEDED,
        config={
            "account_name": batch_emulator.account_name,
            "account_url": batch_emulator.url,
            "resource_group": "ml-rg",
        },
        access_token=batch_emulator.account_key,
        created_by=alice,
    )
    target = ComputeTarget.objects.get(workspace=workspace, name="batch")

    facts = Batch.from_target(target).check()

    assert [p["id"] for p in facts["pools"]] == ["cpu-pool", "empty-pool"]
