"""The disk under the run logs fills mid-run: the monitor stores nothing it cannot store
whole, says so on the run, and stores everything exactly once when space frees."""

import time

import pytest

from compute.models import ComputeTarget
from runs.logs import store as logstore
from runs.models import RunStatus
from runs.monitor import STORAGE_FULL_REASON
from tests.support.cloud import wait_until
from tests.support.runs import running_monitor, submit, wait_final, write_tree

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]

PRINTS = """\
import os, sys, time
go = sys.argv[1]
def line(i):
    print(f"line {i:05d} " + "x" * 50, flush=True)
    if i % 100 == 0:
        print(f"note {i}", file=sys.stderr, flush=True)
for i in range(100):
    line(i)
while not os.path.exists(go):
    time.sleep(0.05)
for i in range(100, 1500):
    line(i)
"""


def printed(stream: str) -> bytes:
    if stream == "stdout":
        return b"".join(b"line %05d %s\n" % (i, b"x" * 50) for i in range(1500))
    return b"".join(b"note %d\n" % i for i in range(0, 1500, 100))


def test_a_log_stored_while_the_disk_is_full_is_whole_once_space_frees(
    tmp_path, shared_dir, workspace, alice, storage_on_small_disk
):
    disk = storage_on_small_disk
    go = shared_dir / "go"
    local = ComputeTarget.objects.get(workspace=workspace, name="local")
    source = write_tree(tmp_path / "src", {"train.py": PRINTS})
    with running_monitor():
        run = submit(
            workspace=workspace, user=alice, target=local, source=source, arguments=[str(go)]
        )
        wait_until(lambda: b"line 00099" in logstore.read(run.pk, "stdout")[0])
        disk.fill()
        go.touch()

        def says_full():
            run.refresh_from_db()
            return run.status_reason == STORAGE_FULL_REASON

        wait_until(says_full)
        assert "DATA_DIR" in run.status_reason and "free space" in run.status_reason
        # Retries meet the full disk again and again: still no hole, nothing twice, no
        # temporary file, and the arrival index holds whole records only.
        time.sleep(1.5)
        for stream in ("stdout", "stderr"):
            stored = logstore.read(run.pk, stream)[0]
            assert printed(stream).startswith(stored)
        assert len(logstore.read(run.pk, "stdout")[0]) < len(printed("stdout"))
        assert disk.leftovers("*.source-part") == []
        index = settings_log_dir(run.pk) / logstore.ARRIVAL_INDEX
        assert index.stat().st_size % logstore.ARRIVAL_RECORD.size == 0
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING

        freed = time.monotonic()
        disk.free()
        wait_until(lambda: logstore.read(run.pk, "stdout")[0] == printed("stdout"))
        recovered = time.monotonic() - freed
        run = wait_final(run)
    # Stored on the next poll or two after space frees.
    assert recovered < 10, recovered
    print(f"log stored {recovered:.2f} s after space freed")
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert run.status_reason == ""
    for stream in ("stdout", "stderr"):
        assert logstore.read(run.pk, stream)[0] == printed(stream)
    # Replayed in arrival order, the streams still end where they end.
    order = logstore.arrival_order(run.pk, {"stdout": 0, "stderr": 0})
    assert max(end for stream, end in order if stream == "stdout") == len(printed("stdout"))
    messages = [e.message for e in run.events.all()]
    assert messages.count(STORAGE_FULL_REASON) == 1
    assert any("room in DATA_DIR again" in m for m in messages)


def settings_log_dir(run_id: int):
    return logstore.stream_path(run_id, "stdout").parent
