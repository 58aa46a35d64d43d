"""A run survives its monitor being killed: another monitor process takes it over."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from compute.backends import backend_for
from compute.models import ComputeTarget
from runs import ranks
from runs.logs import store as logstore
from runs.models import Run, RunStatus
from runs.monitor import Monitor, RunFollower
from studio import secrets
from tests.support.runs import submit, wait_final, write_tree

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]
ROOT = Path(__file__).resolve().parents[2]

# The second half waits for the test to have killed the first monitor, however slow
# the machine is: the kill always lands mid-run. The test says so with a file in the
# run's own working directory, the only one of the test's the sandboxed run can see.
COUNT = """\
import os, time
for i in range(40):
    if i == 20:
        while not os.path.exists("go"):
            time.sleep(0.05)
    print(f"line {i}", flush=True)
    time.sleep(0.05)
"""


def database_url() -> str:
    """The test database (SQLite file or PostgreSQL), for processes the test starts."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def start_monitor() -> subprocess.Popen:
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATA_DIR=str(settings.DATA_DIR),
        DATABASE_URL=database_url(),
        MONITOR_LEASE_SECONDS="2",
        MONITOR_POLL_SECONDS="0.1",
    )
    return subprocess.Popen(
        [sys.executable, "manage.py", "monitor"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stored_lines(run) -> list[str]:
    return logstore.read(run.pk, "stdout")[0].decode().splitlines()


def test_killing_the_monitor_mid_run_loses_and_repeats_nothing(tmp_path, workspace, alice):
    local = ComputeTarget.objects.get(workspace=workspace, name="local")
    source = write_tree(tmp_path / "src", {"train.py": COUNT})
    # start_run runs in this process (eager Celery) and returns: the run lives on, detached.
    run = submit(workspace=workspace, user=alice, target=local, source=source)
    first = start_monitor()
    try:
        deadline = time.monotonic() + 30
        while len(stored_lines(run)) < 8:
            assert time.monotonic() < deadline, "the first monitor stored nothing"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = len(stored_lines(run))
        run.refresh_from_db()
        assert run.handle is not None
        (Path(run.handle["run_dir"]) / "wd" / "go").touch()
        second = start_monitor()
        try:
            run = wait_final(run)
        finally:
            second.terminate()
            second.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert run.status == RunStatus.COMPLETED
    assert killed_at < 40
    assert stored_lines(run) == [f"line {i}" for i in range(40)]


def test_a_follower_waking_after_another_took_the_run_over_stores_nothing_twice(
    tmp_path, workspace, alice
):
    password = "hunter2-correct-horse-battery"
    ComputeTarget.objects.create(
        workspace=workspace, name="gpu-vm", kind="vm", address="127.0.0.1", password=password
    )
    # Followers know the workspace's secrets only from the database.
    secrets._known.clear()
    local = ComputeTarget.objects.get(workspace=workspace, name="local")
    script = f"for i in range(20):\n    print(f'line {{i}} with {password}')\n"
    source = write_tree(tmp_path / "src", {"train.py": script})
    run = submit(workspace=workspace, user=alice, target=local, source=source)
    monitor = Monitor(owner="test-monitor")
    Run.objects.filter(pk=run.pk).update(lease_owner=monitor.owner)
    run = Run.objects.select_related("target").get(pk=run.pk)
    [handle] = ranks.handles(run)
    backend = backend_for(local, handle=handle)
    deadline = time.monotonic() + 30
    while backend.poll(handle, {}).state != "exited":
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.05)

    # One follower reads the run's output and stalls before storing it (masking makes
    # it shorter than what was read) ...
    stalled = RunFollower(run.pk, monitor)
    offsets = stalled.offsets(run, 0, handle)
    read = backend.poll(handle, offsets).chunks["stdout"]
    # ... another takes the run over and follows it to its end ...
    taking_over = RunFollower(run.pk, monitor)
    while taking_over.step():
        pass
    # ... and the first one wakes up.
    stalled.store(run, 0, "stdout", read, offsets["stdout"], handle)

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert stored_lines(run) == [f"line {i} with ******" for i in range(20)]
