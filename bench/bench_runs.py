"""Runs: snapshot speed against rsync, and submit-to-Running on the local target and a warm node.

Snapshot: a 10,000-file / 200 MB tree is captured (hash every file, store the
blobs, record the snapshot) the first time and again after one file changed;
`rsync -a` of the same tree to a local directory, and again after the same
one-file change, is the baseline timed in the same run. Each round starts
with an empty blob store; 3 rounds, medians.

Submit to Running: from `snapshot_create` + `run_submit` of a small folder
until the run's status is Running (the run monitor saw the script start),
polled every 5 ms; on the local target and on an idle node of a managed
cluster. Baselines: starting the same script with `subprocess` until its
first output line, and one `docker exec python3` into the node container.

Runs in-process with the test settings (tasks run at once, no broker, a run
monitor thread with the production poll interval) in a throwaway DATA_DIR:

    .venv/bin/python bench/bench_runs.py
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="ty-bench-runs-")
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from compute import cluster_services  # noqa: E402
from compute.models import ComputeTarget  # noqa: E402
from compute.scheduler import cluster_autoscale, node_docker  # noqa: E402
from runs import services  # noqa: E402
from runs.models import FINAL_STATUSES, Environment, Run, RunStatus  # noqa: E402
from runs.monitor import Monitor  # noqa: E402
from studio.services import workspace_create  # noqa: E402
from tests.factories import UserFactory  # noqa: E402

FILES = 10_000
TREE_BYTES = 200 * 1024 * 1024
SNAPSHOT_ROUNDS = 3
SUBMIT_ROUNDS = 10
TRAIN = "print('started', flush=True)\n"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def make_tree(root: Path) -> None:
    size = TREE_BYTES // FILES
    for i in range(FILES):
        folder = root / f"d{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.bin").write_bytes(os.urandom(size))


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def rsync(source: Path, dest: Path) -> None:
    subprocess.run(["rsync", "-a", f"{source}/", f"{dest}/"], check=True)


def snapshot_rounds(workspace) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {
        "ours_first": [],
        "ours_again": [],
        "rsync_first": [],
        "rsync_again": [],
    }
    base = Path(tempfile.mkdtemp(prefix="tree-", dir=settings.DATA_DIR))
    tree = base / "tree"
    make_tree(tree)
    for round_number in range(SNAPSHOT_ROUNDS):
        # A fresh blob store and stat cache: this round's first capture stores everything.
        settings.BLOB_DIR = base / f"blobs-{round_number}"
        shutil.rmtree(Path(settings.DATA_DIR) / "snapshot-cache", ignore_errors=True)
        mirror = base / f"mirror-{round_number}"
        results["rsync_first"].append(timed(lambda m=mirror: rsync(tree, m)))
        results["ours_first"].append(
            timed(lambda: services.snapshot_create(workspace=workspace, root=tree, use_cache=True))
        )
        changed = tree / "d050" / f"f{5000:05d}.bin"
        changed.write_bytes(os.urandom(TREE_BYTES // FILES))
        results["rsync_again"].append(timed(lambda m=mirror: rsync(tree, m)))
        snapshot_holder: dict = {}

        def again(holder=snapshot_holder):
            holder["result"] = services.snapshot_create(
                workspace=workspace, root=tree, use_cache=True
            )

        results["ours_again"].append(timed(again))
        assert snapshot_holder["result"][1].new_blobs == 1
        shutil.rmtree(mirror)
        shutil.rmtree(settings.BLOB_DIR)
    shutil.rmtree(base)
    settings.BLOB_DIR = Path(settings.DATA_DIR) / "blobs"
    return results


def wait_status(run: Run, statuses, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while Run.objects.filter(pk=run.pk).values_list("status", flat=True)[0] not in statuses:
        if time.monotonic() > deadline:
            run.refresh_from_db()
            raise RuntimeError(f"run {run.pk} stuck in {run.status}: {run.error}")
        time.sleep(0.005)


def submit_to_running(workspace, user, target, source: Path, env) -> list[float]:
    times = []
    for _ in range(SUBMIT_ROUNDS):
        (source / "train.py").write_text(TRAIN + f"# {time.time_ns()}\n")
        start = time.perf_counter()
        snapshot, _ = services.snapshot_create(workspace=workspace, root=source)
        experiment = services.experiment_get_or_create(workspace=workspace, name="bench", user=user)
        run = services.run_submit(
            workspace=workspace,
            user=user,
            experiment=experiment,
            target=target,
            snapshot=snapshot,
            entry_script="train.py",
            environment=env,
        )
        wait_status(run, [RunStatus.RUNNING, *FINAL_STATUSES])
        times.append(time.perf_counter() - start)
        wait_status(run, FINAL_STATUSES)
        run.refresh_from_db()
        assert run.status == RunStatus.COMPLETED, (run.status, run.error)
    return times


def subprocess_baseline(source: Path) -> list[float]:
    times = []
    for _ in range(SUBMIT_ROUNDS):
        start = time.perf_counter()
        process = subprocess.Popen(
            ["python3", str(source / "train.py")], stdout=subprocess.PIPE, cwd=source
        )
        assert process.stdout is not None
        process.stdout.readline()
        times.append(time.perf_counter() - start)
        process.wait()
    return times


def exec_baseline(node) -> list[float]:
    container = node_docker(node).containers.get(node.container_id)
    return [
        timed(lambda: container.exec_run(["python3", "-c", "pass"])) for _ in range(SUBMIT_ROUNDS)
    ]


def row(name: str, values: list[float], baseline: float | None, target: str) -> str:
    median = statistics.median(values)
    ratio = "1.00×" if baseline is None else f"{median / baseline:.2f}×"
    return f"| {name} | {ms(median)} | {ms(max(values))} | {ratio} | {target} |"


def main() -> None:
    call_command("migrate", verbosity=0)
    user = UserFactory(username="bench")
    workspace = workspace_create(name="Bench", owner=user)
    env, _ = Environment.objects.get_or_create(
        workspace=None,
        name="trainyard-minimal-python",
        version=1,
        defaults={"kind": "curated", "interpreter_path": "python3"},
    )

    snap = snapshot_rounds(workspace)
    med = {key: statistics.median(values) for key, values in snap.items()}
    print("## Snapshot of 10,000 files / 200 MB (median of 3 rounds)\n")
    print("| case | median | slowest | vs baseline | target |\n|---|---|---|---|---|")
    print(
        row(
            "`rsync -a` to a local directory, first time (baseline)", snap["rsync_first"], None, "—"
        )
    )
    print(row("snapshot, first time", snap["ours_first"], med["rsync_first"], "≤ 2× rsync"))
    print(row("`rsync -a` after changing one file (baseline)", snap["rsync_again"], None, "—"))
    print(
        row(
            "snapshot after changing one file", snap["ours_again"], med["rsync_again"], "≤ 2× rsync"
        )
    )
    print(
        f"\nsnapshot first / again: {med['ours_first'] / med['ours_again']:.1f}× (target ≥ 20×)\n"
    )

    monitor = Monitor()
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            monitor.tick_safely()
            stop.wait(0.05)
        monitor.shutdown()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        source = Path(tempfile.mkdtemp(prefix="src-", dir=settings.DATA_DIR))
        (source / "train.py").write_text(TRAIN)
        local = ComputeTarget.objects.get(workspace=workspace, name="local")
        base_local = subprocess_baseline(source)
        ours_local = submit_to_running(workspace, user, local, source, env)
        cluster = cluster_services.cluster_create(
            workspace=workspace,
            user=user,
            name="warm",
            vm_size="Standard_D2_v2",
            min_nodes=1,
            max_nodes=1,
            idle_seconds_before_scaledown=600,
        )
        cluster.refresh_from_db()
        cluster_autoscale(target=cluster)
        node = cluster.nodes.get()
        base_node = exec_baseline(node)
        ours_node = submit_to_running(workspace, user, cluster, source, env)
    finally:
        stop.set()
        thread.join(timeout=60)
        for target in ComputeTarget.objects.filter(kind="amlcompute"):
            for node in target.nodes.all():
                node_docker(node).containers.get(node.container_id).remove(force=True)

    print(f"## Submit to Running (median of {SUBMIT_ROUNDS})\n")
    print("| case | median | slowest | vs baseline | target |\n|---|---|---|---|---|")
    b_local, b_node = statistics.median(base_local), statistics.median(base_node)
    print(row("`subprocess` python3 script to its first line (baseline)", base_local, None, "—"))
    print(row("local target: submit → Running", ours_local, b_local, "< 1.5 s"))
    print(row("`docker exec python3` into the node (baseline)", base_node, None, "—"))
    print(row("warm cluster node: submit → Running", ours_node, b_node, "< 1.5 s"))


if __name__ == "__main__":
    main()
