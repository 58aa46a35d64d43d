"""Helpers for run tests: source folders, submitting through the service, a live run monitor."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

from runs.logs import store as logstore
from runs.models import FINAL_STATUSES, Environment, Run
from runs.monitor import Monitor
from runs.services.experiments import experiment_get_or_create
from runs.services.snapshots import snapshot_create
from runs.services.submit import run_submit
from studio.blobs import blob_path

MINIMAL = "trainyard-minimal-python"


def write_tree(root: Path, files: Mapping[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def minimal_environment() -> Environment:
    """The curated environment the data migration seeds (transactional tests flush it)."""
    env, _ = Environment.objects.get_or_create(
        workspace=None,
        name=MINIMAL,
        version=1,
        defaults={"kind": "curated", "interpreter_path": "python3"},
    )
    return env


def submit(*, workspace, user, target, source: Path, entry: str = "train.py", **options) -> Run:
    snapshot, _ = snapshot_create(workspace=workspace, root=source)
    experiment = experiment_get_or_create(
        workspace=workspace, name=options.pop("experiment", "tests"), user=user
    )
    options.setdefault("environment", minimal_environment())
    return run_submit(
        workspace=workspace,
        user=user,
        experiment=experiment,
        target=target,
        snapshot=snapshot,
        entry_script=entry,
        **options,
    )


@contextmanager
def running_monitor(poll_seconds: float = 0.1):
    """A run monitor in a thread of the test process, stopped (leases handed back) at the end."""
    monitor = Monitor(poll_seconds=poll_seconds)
    stop = threading.Event()

    def loop():
        from django.db import connection

        try:
            while not stop.is_set():
                monitor.tick_safely()
                stop.wait(0.1)
            monitor.shutdown()
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield monitor
    finally:
        stop.set()
        thread.join(timeout=60)


def wait_for(run: Run, statuses, timeout: float = 60) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in statuses:
            return run
        time.sleep(0.1)
    events = [(e.status, e.message) for e in run.events.all()]
    raise AssertionError(f"run {run.pk} is {run.status}, not {statuses}: {events} {run.error}")


def wait_final(run: Run, timeout: float = 60) -> Run:
    return wait_for(run, FINAL_STATUSES, timeout)


# A script's lines writing 48 MB of random bytes to ./outputs and printing their SHA-256:
# more than any one read of the target's output, so collecting it takes many.
BIG_OUTPUT = (
    "import hashlib, os\n"
    "os.makedirs('outputs', exist_ok=True)\n"
    "data = os.urandom(48 * 1024 * 1024)\n"
    "open('outputs/big.bin', 'wb').write(data)\n"
    "print('big', hashlib.sha256(data).hexdigest(), flush=True)\n"
)


def assert_big_output_kept(run: Run) -> None:
    """The run's outputs/big.bin (BIG_OUTPUT) is kept whole: its digest is the one printed."""
    stdout = logstore.read(run.pk, "stdout")[0].decode()
    printed = stdout.split("big ", 1)[1].split()[0]
    kept = run.files.get(path="outputs/big.bin")
    assert (kept.sha256, kept.size) == (printed, 48 * 1024 * 1024)
    digest = hashlib.sha256()
    with blob_path(kept.sha256).open("rb") as blob:
        while chunk := blob.read(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == printed
