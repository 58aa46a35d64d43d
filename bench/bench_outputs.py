"""Collecting a run's ./outputs: time and memory for a 1 GB output file.

A run on the local target writes 1 GB of random bytes to ./outputs; once it
has exited, the run monitor collects its ./outputs and ./logs (a tar from the
target into a temporary file, then each file hashed and stored as a blob a
chunk at a time). Timed: that collection (`finalize.outputs_collect`), 3 rounds.
Memory: how much the peak resident size of this process grew over the rounds.
Baseline, timed in the same rounds: `tar -cf` of the same folder into a file,
then `sha256sum` of that file, the work collection cannot avoid.

Runs in-process with the test settings in a throwaway DATA_DIR:

    .venv/bin/python bench/bench_outputs.py
"""

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="ty-bench-outputs-")
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from compute.backends import backend_for  # noqa: E402
from compute.models import ComputeTarget  # noqa: E402
from runs import finalize, ranks  # noqa: E402
from runs.models import Environment  # noqa: E402
from runs.monitor import Monitor, RunFollower  # noqa: E402
from runs.services.experiments import experiment_get_or_create  # noqa: E402
from runs.services.snapshots import snapshot_create  # noqa: E402
from runs.services.submit import run_submit  # noqa: E402
from studio.services import workspace_create  # noqa: E402
from tests.factories import UserFactory  # noqa: E402

ROUNDS = 3
SIZE = 1024**3
WRITE = f"""\
import os
os.makedirs("outputs", exist_ok=True)
with open("outputs/model.bin", "wb") as f:
    for _ in range({SIZE // (1 << 24)}):
        f.write(os.urandom(1 << 24))
"""


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def finished_run(workspace, user, target, env, source: Path):
    """A run that wrote its outputs and exited, not collected yet."""
    snapshot, _ = snapshot_create(workspace=workspace, root=source)
    experiment = experiment_get_or_create(workspace=workspace, name="bench", user=user)
    run = run_submit(
        workspace=workspace,
        user=user,
        experiment=experiment,
        target=target,
        snapshot=snapshot,
        entry_script="train.py",
        environment=env,
    )
    run.refresh_from_db()
    assert run.handle, (run.status, run.error)
    exit_code = Path(run.handle["run_dir"]) / "ctl" / "exit_code"
    deadline = time.monotonic() + 300
    while not exit_code.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run.pk} did not exit: {run.status} {run.error}")
        time.sleep(0.1)
    return run


def main() -> None:
    call_command("migrate", verbosity=0)
    user = UserFactory.create(username="bench")
    workspace = workspace_create(name="Bench", owner=user)
    target = ComputeTarget.objects.get(workspace=workspace, name="local")
    env, _ = Environment.objects.get_or_create(
        workspace=None,
        name="trainyard-minimal-python",
        version=1,
        defaults={"kind": "curated", "interpreter_path": "python3"},
    )
    source = Path(tempfile.mkdtemp(prefix="src-", dir=os.environ["DATA_DIR"]))
    (source / "train.py").write_text(WRITE)
    monitor = Monitor()
    ours, baseline = [], []
    before = peak_mib()
    for _ in range(ROUNDS):
        run = finished_run(workspace, user, target, env, source)
        wd = Path((run.handle or {})["run_dir"]) / "wd"
        with tempfile.NamedTemporaryFile(dir=os.environ["DATA_DIR"]) as tar:
            start = time.perf_counter()
            subprocess.run(["tar", "-cf", tar.name, "-C", str(wd), "outputs"], check=True)
            subprocess.run(["sha256sum", tar.name], check=True, capture_output=True)
            baseline.append(time.perf_counter() - start)
        follower = RunFollower(run.pk, monitor)
        follower.backends = [backend_for(run.target, handle=h) for h in ranks.handles(run)]
        start = time.perf_counter()
        assert finalize.outputs_collect(run, follower.each_rank(run)).files >= 1
        ours.append(time.perf_counter() - start)
        assert run.files.get(path="outputs/model.bin").size == SIZE
        finalize.run_cleanup(run, follower.each_rank(run))
    grown = peak_mib() - before
    base = statistics.median(baseline)
    print(f"## Collecting a 1 GB ./outputs file (median of {ROUNDS})\n")
    print("| case | median | slowest | vs baseline | target |\n|---|---|---|---|---|")
    print(
        f"| `tar -cf` + `sha256sum` of the folder (baseline) | {base:.2f} s | "
        f"{max(baseline):.2f} s | 1.00× | — |"
    )
    print(
        f"| run monitor: collect ./outputs into blobs | {statistics.median(ours):.2f} s | "
        f"{max(ours):.2f} s | {statistics.median(ours) / base:.2f}× | — |"
    )
    print(f"\nPeak resident memory grew by {grown:.0f} MiB over the rounds (before: {before:.0f}).")


if __name__ == "__main__":
    main()
