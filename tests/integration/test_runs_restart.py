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

from compute.models import ComputeTarget
from runs import logstore
from runs.models import RunStatus
from tests.integration.runs_support import submit, wait_final, write_tree

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]

# The second half waits for the test to have killed the first monitor, however slow
# the machine is: the kill always lands mid-run.
COUNT = """\
import os, time
for i in range(40):
    if i == 20:
        while not os.path.exists({go!r}):
            time.sleep(0.05)
    print(f"line {{i}}", flush=True)
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
    go = tmp_path / "go"
    source = write_tree(tmp_path / "src", {"train.py": COUNT.format(go=str(go))})
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
        go.touch()
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
