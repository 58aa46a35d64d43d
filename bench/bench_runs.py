"""Runs: snapshot speed against rsync, and submit-to-Running on the local target and a warm node.

Snapshot: what the submit form does with a 10,000-file / 200 MB tree, the
first time and again after one file changed: the page's plan request with
the files' hashes (which ones the workspace lacks, and the signed plan),
then the submit with only those files uploaded (multipart, parsed by
Django) and the plan, the form, and the snapshot stored
(`snapshot_from_upload`). The page's own hashing (in the browser while the
user fills in the form; hashlib stands in for crypto.subtle) is timed
apart. The API sends the tree as a .zip every time: that path is timed too,
unpacked and captured. `rsync -a` of the same tree to a local directory,
and again after the same one-file change, is the baseline timed in the same
run. Each round starts with an empty blob store and a new workspace; 3
rounds, medians. Each timed step starts after a garbage collection, so the
cyclic collector does not spend the step's time on what the harness itself
built (the tree in memory, the multipart body).

Submit to Running: from `snapshot_create` + `run_submit` of a small folder
until the run's status is Running (the run monitor saw the script start),
polled every 5 ms; on the local target and on an idle node of a managed
cluster. Baselines: starting the same script with `subprocess` until its
first output line, and one `docker exec python3` into the node container.

Runs in-process with the test settings (tasks run at once, no broker, a run
monitor thread with the production poll interval) in a throwaway DATA_DIR:

    .venv/bin/python bench/bench_runs.py
"""

import gc
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="ty-bench-runs-")
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client, RequestFactory  # noqa: E402
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart  # noqa: E402
from django.urls import reverse  # noqa: E402

from compute.cluster import services as cluster_services  # noqa: E402
from compute.cluster.autoscaler import cluster_autoscale  # noqa: E402
from compute.cluster.scheduler import node_docker  # noqa: E402
from compute.models import ComputeTarget  # noqa: E402
from runs.forms import RunSubmitForm  # noqa: E402
from runs.models import FINAL_STATUSES, Environment, Run, RunStatus  # noqa: E402
from runs.monitor import Monitor  # noqa: E402
from runs.services.experiments import experiment_get_or_create  # noqa: E402
from runs.services.snapshots import snapshot_create, snapshot_from_upload  # noqa: E402
from runs.services.submit import run_submit  # noqa: E402
from runs.snapshots.capture import Capture  # noqa: E402
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
    gc.collect()
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def rsync(source: Path, dest: Path) -> None:
    subprocess.run(["rsync", "-a", f"{source}/", f"{dest}/"], check=True)


def tree_files(tree: Path) -> list[tuple[str, bytes]]:
    return sorted(
        (str(path.relative_to(tree.parent)), path.read_bytes())
        for path in tree.rglob("*")
        if path.is_file()
    )


def page_hashes(files: list[tuple[str, bytes]]) -> list[str]:
    return [hashlib.sha256(data).hexdigest() for _, data in files]


class FormSubmit:
    """The submit page's second step: which files the workspace lacks, then only those sent."""

    def __init__(self, workspace, user):
        self.workspace = workspace
        self.client = Client(HTTP_HOST="localhost")
        self.client.force_login(user)
        self.plan_url = reverse("snapshot_plan", args=[workspace.slug])

    def body(
        self, files: list[tuple[str, bytes]], hashes: list[str], missing: set[str], plan: str
    ) -> bytes:
        """The multipart body the page sends (built before the clock starts)."""
        sent = [
            SimpleUploadedFile(str(i), data)
            for i, ((_, data), sha) in enumerate(zip(files, hashes, strict=True))
            if sha in missing
        ]
        fields = {
            "source_paths": "\n".join(path for path, _ in files),
            "source_hashes": "\n".join(hashes),
            "source_plan": plan,
            "source_folder": sent,
        }
        return encode_multipart(BOUNDARY, fields)

    def plan(self, hashes: list[str]) -> tuple[set[str], str]:
        """The files the workspace lacks, and the signed plan the submit hands back."""
        response = self.client.post(
            self.plan_url, json.dumps({"sha256": hashes}), content_type="application/json"
        )
        answer = response.json()
        return set(answer["missing"]), answer["plan"]

    def store(self, body: bytes):
        request = RequestFactory().generic("POST", "/", body, content_type=MULTIPART_CONTENT)
        form = RunSubmitForm(request.POST, request.FILES, workspace=self.workspace)
        assert form.is_valid(), form.errors
        return snapshot_from_upload(workspace=self.workspace, files=form.folder_files())


def form_submit(submit: FormSubmit, files, hashes) -> tuple[float, Capture]:
    """Timed: the plan request, then parsing the submit and storing the snapshot."""
    gc.collect()
    start = time.perf_counter()
    missing, plan = submit.plan(hashes)
    planned = time.perf_counter() - start
    body = submit.body(files, hashes, missing, plan)
    gc.collect()
    start = time.perf_counter()
    _, capture = submit.store(body)
    return planned + time.perf_counter() - start, capture


def zip_of(tree: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                archive.write(path, str(path.relative_to(tree)))
    return buffer.getvalue()


def api_submit(workspace, tree: Path) -> tuple[float, Capture]:
    archive = SimpleUploadedFile("tree.zip", zip_of(tree))
    gc.collect()
    start = time.perf_counter()
    _, capture = snapshot_from_upload(workspace=workspace, archive=archive)
    return time.perf_counter() - start, capture


def snapshot_rounds(user) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {
        key: []
        for key in (
            "rsync_first",
            "rsync_again",
            "form_first",
            "form_again",
            "page_hash",
            "api_first",
            "api_again",
        )
    }
    base = Path(tempfile.mkdtemp(prefix="tree-", dir=settings.DATA_DIR))
    tree = base / "tree"
    make_tree(tree)
    changed = tree / "d050" / f"f{5000:05d}.bin"
    for round_number in range(SNAPSHOT_ROUNDS):
        for path_key in ("form", "api"):
            # A fresh blob store and workspace: this round's first submit stores everything.
            settings.BLOB_DIR = base / f"blobs-{round_number}-{path_key}"
            workspace = workspace_create(name=f"Snapshots {round_number} {path_key}", owner=user)
            submit = FormSubmit(workspace, user)
            mirror = base / f"mirror-{round_number}-{path_key}"
            if path_key == "form":
                results["rsync_first"].append(timed(lambda m=mirror: rsync(tree, m)))
                files = tree_files(tree)
                results["page_hash"].append(timed(lambda f=files: page_hashes(f)))
                seconds, capture = form_submit(submit, files, page_hashes(files))
            else:
                seconds, capture = api_submit(workspace, tree)
            results[f"{path_key}_first"].append(seconds)
            assert capture.new_blobs == FILES, capture.new_blobs
            changed.write_bytes(os.urandom(TREE_BYTES // FILES))
            if path_key == "form":
                results["rsync_again"].append(timed(lambda m=mirror: rsync(tree, m)))
                files = tree_files(tree)
                results["page_hash"].append(timed(lambda f=files: page_hashes(f)))
                seconds, capture = form_submit(submit, files, page_hashes(files))
            else:
                seconds, capture = api_submit(workspace, tree)
            results[f"{path_key}_again"].append(seconds)
            assert capture.new_blobs == 1, capture.new_blobs
            shutil.rmtree(mirror, ignore_errors=True)
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
    user = UserFactory.create(username="bench")
    workspace = workspace_create(name="Bench", owner=user)
    env, _ = Environment.objects.get_or_create(
        workspace=None,
        name="trainyard-minimal-python",
        version=1,
        defaults={"kind": "curated", "interpreter_path": "python3"},
    )

    snap = snapshot_rounds(user)
    med = {key: statistics.median(values) for key, values in snap.items()}
    print("## Snapshot of 10,000 files / 200 MB (median of 3 rounds)\n")
    print("| case | median | slowest | vs baseline | target |\n|---|---|---|---|---|")
    first, again = med["rsync_first"], med["rsync_again"]
    print(
        row(
            "`rsync -a` to a local directory, first time (baseline)", snap["rsync_first"], None, "—"
        )
    )
    print(
        row("form: plan + upload + snapshot, first time", snap["form_first"], first, "≤ 2× rsync")
    )
    print(row("API: .zip unpacked + snapshot, first time", snap["api_first"], first, "—"))
    print(row("`rsync -a` after changing one file (baseline)", snap["rsync_again"], None, "—"))
    print(
        row(
            "form: plan + upload + snapshot, one file changed",
            snap["form_again"],
            again,
            "≤ 2× rsync",
        )
    )
    print(row("API: .zip unpacked + snapshot, one file changed", snap["api_again"], again, "—"))
    print(row("the page hashing the folder (hashlib), each time", snap["page_hash"], again, "—"))
    print(
        f"\nform first / again: {med['form_first'] / med['form_again']:.1f}× (target ≥ 20×); "
        f"API first / again: {med['api_first'] / med['api_again']:.1f}×\n"
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
