"""Experiments, environments, snapshots and runs: everything that changes their state.

A run moves through its statuses only by `run_transition`, a conditional
update that also records the step on the run's timeline and tells live
viewers. Starting a run (`run_start`) is a short Celery task: it uploads what
the target lacks and launches the run detached; the run monitor follows it
from there (runs/monitor.py).
"""

from __future__ import annotations

import logging
import re
import shlex
import tarfile
import tempfile
import uuid
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from datetime import timedelta
from functools import partial
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from compute.backends import (
    LOG_STREAMS,
    RUNNABLE_KINDS,
    Backend,
    BackendError,
    Handle,
    LaunchSpec,
    backend_for,
)
from compute.cluster_services import ClusterError
from compute.models import (
    LOCAL_TARGET_NAME,
    ComputeKind,
    ComputeState,
    ComputeTarget,
    NodeRequest,
)
from compute.sandbox import local_target_problem
from runs import linear_regex, live, logstore, metric_records, ranks, selectors, snapshots
from runs.models import (
    FINAL_STATUSES,
    Environment,
    EnvironmentKind,
    Experiment,
    Framework,
    Metric,
    Run,
    RunEvent,
    RunFile,
    RunStatus,
    Snapshot,
    SnapshotBlob,
)
from runs.run_based import (
    RUN_BASED_TARGET,
    RunBasedSpec,
    run_based_cluster_create,
    run_based_cluster_release,
)
from runs.runconfig import EnvironmentSpec, RunConfig
from studio.units import human_bytes

log = logging.getLogger(__name__)

EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,249}")
ENVIRONMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
# Statuses in which the run's process may exist on its target.
ACTIVE_STATUSES = (
    RunStatus.STARTING,
    RunStatus.RUNNING,
    RunStatus.CANCEL_REQUESTED,
    RunStatus.NOT_RESPONDING,
    RunStatus.FINALIZING,
)
STDERR_TAIL_LINES = 20
# How a skipped metric record shows on the run's timeline, and how many times at most.
METRIC_WARNING_PREFIX = "Metric record skipped"
METRIC_WARNINGS_SHOWN = 20
# Every stdout line is matched against every pattern: both are bounded.
MAX_METRIC_PATTERNS = 20
MAX_METRIC_PATTERN_LENGTH = 1000
# The curated environment a run gets when neither the user nor a runconfig chose one.
DEFAULT_ENVIRONMENT = "trainyard-minimal-python"


class RunError(Exception):
    """A request that cannot be done as asked; the message says what to do instead."""


# --- experiments -------------------------------------------------------------------------


def experiment_name_problem(name: str) -> str:
    if not EXPERIMENT_NAME.fullmatch(name or ""):
        return (
            "An experiment name has 1–250 characters: letters, digits, dashes and underscores, "
            "starting with a letter or digit (e.g. mnist-baseline)."
        )
    return ""


def experiment_create(*, workspace, name: str, user, description: str = "") -> Experiment:
    problem = experiment_name_problem(name)
    if problem:
        raise RunError(problem)
    try:
        with transaction.atomic():
            return Experiment.objects.create(
                workspace=workspace, name=name, description=description, created_by=user
            )
    except IntegrityError:
        raise RunError(
            f"An experiment named {name} already exists in this workspace: open it, "
            "or choose another name."
        ) from None


def experiment_get_or_create(*, workspace, name: str, user) -> Experiment:
    existing = Experiment.objects.filter(workspace=workspace, name=name).first()
    return existing or experiment_create(workspace=workspace, name=name, user=user)


# --- environments ------------------------------------------------------------------------


def environment_create(
    *,
    workspace,
    name: str,
    kind: str,
    description: str = "",
    interpreter_path: str = "",
    pip_requirements: str = "",
    conda_yaml: str = "",
    docker_image: str = "",
    docker_gpus: bool = False,
) -> Environment:
    """A new environment, or a new version of an existing name."""
    if not ENVIRONMENT_NAME.fullmatch(name or ""):
        raise RunError(
            "An environment name has letters, digits, dots, dashes and underscores, starting "
            "with a letter or digit (e.g. sklearn-1.5)."
        )
    if kind == EnvironmentKind.CURATED:
        raise RunError(
            "Curated environments come with Trainyard; create a user- or system-managed one."
        )
    if kind == EnvironmentKind.SYSTEM_MANAGED and not (
        pip_requirements.strip() or conda_yaml.strip()
    ):
        raise RunError(
            "A system-managed environment is built from a pip requirements list or a conda "
            "environment file: fill in one of them (or choose user-managed)."
        )
    if pip_requirements.strip() and conda_yaml.strip():
        raise RunError("Give either pip requirements or a conda file, not both.")
    if docker_gpus and not docker_image.strip():
        raise RunError(
            "GPUs are given to the run's Docker container: name a Docker base image too (a "
            "GPU one, e.g. nvidia/cuda:12.4.1-runtime-ubuntu22.04 with Python)."
        )
    with transaction.atomic():
        latest = Environment.objects.filter(workspace=workspace, name=name).aggregate(
            v=Max("version")
        )["v"]
        return Environment.objects.create(
            workspace=workspace,
            name=name,
            version=(latest or 0) + 1,
            kind=kind,
            description=description,
            interpreter_path=interpreter_path.strip(),
            pip_requirements=pip_requirements,
            conda_yaml=conda_yaml,
            docker_image=docker_image.strip(),
            docker_gpus=docker_gpus,
        )


def environment_from_runconfig(*, workspace, spec) -> Environment:
    """The workspace environment a runconfig's `environment:` describes, created if new."""
    kind = (
        EnvironmentKind.USER_MANAGED
        if spec.user_managed or not spec.conda_yaml
        else (EnvironmentKind.SYSTEM_MANAGED)
    )
    candidate = Environment(
        kind=kind,
        interpreter_path=spec.interpreter_path if kind == EnvironmentKind.USER_MANAGED else "",
        conda_yaml=spec.conda_yaml,
        docker_image=spec.docker_image,
    )
    for env in Environment.objects.filter(
        Q(workspace=workspace) | Q(workspace__isnull=True),
        docker_image=spec.docker_image,
        docker_gpus=spec.docker_gpus,
    ):
        if env.definition_hash == candidate.definition_hash:
            return env
    name = spec.name or f"runconfig-{candidate.definition_hash[:8]}"
    if not ENVIRONMENT_NAME.fullmatch(name):
        name = f"runconfig-{candidate.definition_hash[:8]}"
    return environment_create(
        workspace=workspace,
        name=name,
        kind=kind,
        description="Created from a runconfig file.",
        interpreter_path=candidate.interpreter_path,
        conda_yaml=spec.conda_yaml,
        docker_image=spec.docker_image,
        docker_gpus=spec.docker_gpus,
    )


# --- snapshots ---------------------------------------------------------------------------


def snapshot_create(*, workspace, root: Path) -> tuple[Snapshot, snapshots.Capture]:
    """Capture a folder: store new blobs, and the snapshot (reused when the tree is the same)."""
    return _snapshot_store(workspace=workspace, capture=snapshots.capture_dir(root))


def snapshot_from_upload(
    *,
    workspace,
    files: list[tuple[str, object]] | None = None,
    archive=None,
    git_files: dict[str, str] | None = None,
    executables: set[str] | None = None,
) -> tuple[Snapshot, snapshots.Capture]:
    """A snapshot of a folder chosen in the browser or sent with its manifest (with its .git/
    facts, and the paths of its executable files), or of an archive.

    A file not sent is named by its digest (a bare one, or a StoredFile from a signed
    plan): only a file the workspace holds may be left out."""
    if files and archive is not None:
        raise snapshots.SnapshotError(
            "Choose the source folder or upload it as an archive, not both."
        )
    if archive is None:
        files = _held_files(workspace, files or [])
        capture = snapshots.capture_upload(files, git_files=git_files, executables=executables)
        held = {s.sha256: s.size for _, s in files if isinstance(s, snapshots.StoredFile)}
        return _snapshot_store(workspace=workspace, capture=capture, stored=held)
    with tempfile.TemporaryDirectory(prefix="snapshot-", dir=settings.DATA_DIR) as tmp:
        snapshots.extract_archive(archive, archive.name, Path(tmp))
        return snapshot_create(workspace=workspace, root=Path(tmp))


def _held_files(workspace, files: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """`files` with each bare digest the workspace holds as that StoredFile."""
    named = [source for _, source in files if isinstance(source, str)]
    if not named:
        return files
    sizes = selectors.snapshot_blob_sizes(workspace=workspace, hashes=named)
    held: list[tuple[str, object]] = []
    for path, source in files:
        if isinstance(source, str) and source in sizes:
            source = snapshots.StoredFile(source, sizes[source])
        held.append((path, source))
    return held


def _snapshot_store(
    *, workspace, capture: snapshots.Capture, stored: dict[str, int] | None = None
) -> tuple[Snapshot, snapshots.Capture]:
    if not capture.manifest:
        raise RunError(
            "The source folder has no files to snapshot (after .amlignore / .gitignore): "
            "choose the folder with your training script."
        )
    snapshot = snapshot_of_manifest(workspace=workspace, manifest=capture.manifest, stored=stored)
    return snapshot, capture


def snapshot_of_manifest(
    *, workspace, manifest: list[list], stored: dict[str, int] | None = None
) -> Snapshot:
    """The snapshot of exactly these files (their blobs are stored already), reused when the
    workspace has it; the workspace holds its files from now on.

    `stored` has the sizes of the files the workspace holds already, when they are known.
    """
    manifest = sorted(manifest, key=lambda entry: entry[0])
    if stored is None:
        hashes = [sha for _, sha, _, _ in manifest]
        stored = selectors.snapshot_blob_sizes(workspace=workspace, hashes=hashes)
    new = {sha: size for _, sha, size, _ in manifest if sha not in stored}
    digest, _ = snapshots.blob_store_bytes(snapshots.manifest_text(manifest))
    with transaction.atomic():
        SnapshotBlob.objects.bulk_create(
            [SnapshotBlob(workspace=workspace, sha256=sha, size=size) for sha, size in new.items()],
            ignore_conflicts=True,
        )
        snapshot, _ = Snapshot.objects.get_or_create(
            workspace=workspace,
            digest=digest,
            defaults={
                "file_count": len(manifest),
                "total_bytes": sum(size for _, _, size, _ in manifest),
            },
        )
    return snapshot


def snapshot_has(snapshot: Snapshot, path: str) -> bool:
    return any(entry[0] == path for entry in snapshot.manifest)


# --- submitting --------------------------------------------------------------------------


def parse_tags(text: str) -> dict[str, str]:
    """`key=value, other=thing` (or one per line) into a dict."""
    tags: dict[str, str] = {}
    for part in re.split(r"[,\n]", text or ""):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        if not key.strip():
            raise RunError(f"The tag {part!r} has no name: write tags as name=value.")
        tags[key.strip()] = value.strip()
    return tags


def parse_metric_patterns(text: str) -> list[str]:
    """One regular expression per line; each named group is a metric read from stdout."""
    patterns = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        if len(line) > MAX_METRIC_PATTERN_LENGTH:
            raise RunError(
                f"A metric pattern is at most {MAX_METRIC_PATTERN_LENGTH} characters: shorten "
                f"{line[:40]!r}…"
            )
        try:
            compiled = linear_regex.compile(line)
        except linear_regex.PatternError as exc:
            raise RunError(
                f"The metric pattern {line!r} is not a valid regular expression: {exc}."
            ) from None
        if not set(compiled.groupindex) - {"step"}:
            raise RunError(
                f"The metric pattern {line!r} has no named group: name the value's group after "
                r"the metric, e.g. loss=(?P<loss>[0-9.]+)."
            )
        patterns.append(line)
    if len(patterns) > MAX_METRIC_PATTERNS:
        raise RunError(
            f"A run takes at most {MAX_METRIC_PATTERNS} metric patterns: one pattern can read "
            "several metrics, one named group each."
        )
    return patterns


def run_submit(
    *,
    workspace,
    user,
    experiment: Experiment,
    target: ComputeTarget,
    snapshot: Snapshot,
    entry_script: str,
    environment: Environment,
    arguments: list[str] | None = None,
    node_count: int = 1,
    max_duration_seconds: int | None = None,
    tags: dict | None = None,
    metric_patterns: list[str] | None = None,
    display_name: str = "",
    framework: str = Framework.PYTHON,
    git: dict | None = None,
    parent: Run | None = None,
) -> Run:
    """Create the run (Queued) and start it once the transaction commits."""
    run_submit_check(
        workspace=workspace,
        user=user,
        experiment=experiment,
        target=target,
        snapshot=snapshot,
        entry_script=entry_script,
        environment=environment,
        node_count=node_count,
        metric_patterns=metric_patterns,
        framework=framework,
    )
    for _attempt in range(5):
        try:
            with transaction.atomic():
                number = (
                    Run.objects.filter(experiment=experiment).aggregate(n=Max("number"))["n"] or 0
                ) + 1
                run = Run.objects.create(
                    workspace=workspace,
                    experiment=experiment,
                    number=number,
                    display_name=display_name,
                    target=target,
                    target_name=target.name,
                    tags=tags or {},
                    submitted_by=user,
                    environment=environment,
                    snapshot=snapshot,
                    git=git or {},
                    entry_script=entry_script,
                    arguments=list(arguments or []),
                    framework=framework,
                    node_count=node_count,
                    max_duration_seconds=max_duration_seconds,
                    metric_patterns=list(metric_patterns or []),
                    parent=parent,
                )
                RunEvent.objects.create(run=run, status=RunStatus.NOT_STARTED)
                run_transition(
                    run.pk,
                    RunStatus.QUEUED,
                    allowed_from=[RunStatus.NOT_STARTED],
                    message=f"Submitted to {target.name}",
                )
                transaction.on_commit(partial(_enqueue_start, run.pk))
        except IntegrityError:
            continue
        run.refresh_from_db()
        return run
    raise RunError("Too many runs were submitted to this experiment at once: try again.")


def parents_advance(parents, *, children: str, advance, what: str) -> int:
    """Call `advance(pk)` for each parent run (a pipeline, a sweep) that is not over or has
    a child that is not; how many there were. One that fails is logged and tried again at
    the next pass, and does not stop the others."""
    unfinished = [status for status in RunStatus.values if status not in FINAL_STATUSES]
    ids = list(
        parents.filter(
            Q(run__status__in=unfinished) | Q(**{f"{children}__run__status__in": unfinished})
        )
        .values_list("pk", flat=True)
        .distinct()
    )
    for pk in ids:
        try:
            advance(pk)
        except Exception:
            log.exception("advancing %s %s failed; the next pass tries again", what, pk)
    return len(ids)


def run_submit_check(
    *,
    workspace,
    user,
    experiment: Experiment,
    target: ComputeTarget,
    snapshot: Snapshot,
    entry_script: str,
    environment: Environment,
    node_count: int = 1,
    metric_patterns: list[str] | None = None,
    framework: str = Framework.PYTHON,
) -> None:
    """RunError saying why a run submitted with these would not start, if it would not."""
    if experiment.workspace_id != workspace.pk or target.workspace_id != workspace.pk:
        raise RunError("The experiment and the compute target must belong to this workspace.")
    if environment.workspace_id not in (None, workspace.pk):
        raise RunError("That environment belongs to another workspace.")
    if target.kind not in RUNNABLE_KINDS:
        raise RunError(
            f"{target.name} is a {target.get_kind_display()} target, which runs pipeline steps, "
            "not script runs: choose the local target, a VM, a compute cluster or an HDInsight "
            "/ Spark target."
        )
    if target.state != ComputeState.SUCCEEDED and target.kind != ComputeKind.CLUSTER:
        raise RunError(f"{target.name} is {target.state}: wait until it is ready, or fix it.")
    if target.kind == ComputeKind.LOCAL and (problem := local_target_problem(user)):
        raise FieldError("target", problem)
    _require_framework(framework, target, environment)
    if not snapshot_has(snapshot, entry_script):
        scripts = [e[0] for e in snapshot.manifest if e[0].endswith(".py")][:10]
        listed = ", ".join(scripts) if scripts else "none"
        raise RunError(
            f"The entry script {entry_script} is not in the source folder. Python files in it: "
            f"{listed}."
        )
    _require_nodes(node_count, target)
    if target.kind == ComputeKind.CLUSTER and environment.docker_image:
        raise RunError(
            "Cluster nodes run the environment's Python directly: choose an environment "
            "without a Docker image for a compute cluster."
        )
    if environment.docker_image and environment.conda_yaml.strip():
        raise RunError("An environment with a Docker image can use pip requirements, not conda.")
    if environment.docker_gpus and not (target.facts or {}).get("gpus"):
        raise FieldError(
            "environment",
            f"{environment} gives its container the target's GPUs, but {target.name} has no "
            "GPU that its last check found (nvidia-smi): choose a VM with NVIDIA GPUs (check it "
            "again after installing the driver), or an environment without GPUs.",
        )
    for pattern in metric_patterns or []:
        parse_metric_patterns(pattern)


def _require_nodes(node_count: int, target: ComputeTarget) -> None:
    """A multi-node run needs a compute cluster that may grow to that many nodes."""
    if node_count < 1:
        raise FieldError("node_count", "The node count is at least 1.")
    if node_count == 1:
        return
    if target.kind != ComputeKind.CLUSTER:
        raise FieldError(
            "node_count",
            f"{target.name} is one machine: runs on more than one node need a compute cluster. "
            "Choose a cluster, or a node count of 1.",
        )
    max_nodes = int(target.config.get("max_nodes", 0))
    if node_count > max_nodes:
        raise FieldError(
            "node_count",
            f"{target.name} has at most {max_nodes} node(s), so a run on {node_count} nodes would "
            "never start: lower the node count, or raise the cluster's maximum nodes.",
        )


def _require_framework(framework: str, target: ComputeTarget, environment: Environment) -> None:
    """PySpark jobs go to HDInsight / Spark head nodes, and those run only PySpark jobs."""
    if framework not in Framework.values:
        raise FieldError("framework", f"Choose the framework Python or PySpark, not {framework}.")
    is_spark = target.kind == ComputeKind.HDINSIGHT
    if framework == Framework.PYSPARK and not is_spark:
        raise FieldError(
            "framework",
            f"PySpark jobs run with spark-submit on an HDInsight / Spark target, and {target.name} "
            f"is a {target.get_kind_display()}: choose an HDInsight / Spark target, or the "
            "framework Python.",
        )
    if is_spark and framework != Framework.PYSPARK:
        raise FieldError(
            "framework",
            f"{target.name} is an HDInsight / Spark target: its runs are PySpark jobs submitted "
            "with spark-submit. Choose the framework PySpark.",
        )
    if is_spark and environment.docker_image:
        raise FieldError(
            "environment",
            "PySpark jobs run in the head node's Spark, not in Docker: choose an environment "
            "without a Docker image.",
        )


def _enqueue_start(run_id: int) -> None:
    from runs.tasks import start_run

    start_run.delay(run_id)


def run_start_soon(*, run_id: int) -> None:
    """Try to start a queued run now (a node it waits for may be free)."""
    transaction.on_commit(partial(_enqueue_start, run_id))


# --- status changes ----------------------------------------------------------------------


def run_transition(run_id: int, status: str, *, allowed_from, message: str = "", **fields) -> bool:
    """Move the run to `status` if it is in one of `allowed_from`; record it on the timeline."""
    now = timezone.now()
    updates = {"status": status, **fields}
    if status in FINAL_STATUSES:
        updates.setdefault("ended_at", now)
        updates.setdefault("lease_owner", "")
    with transaction.atomic():
        changed = Run.objects.filter(pk=run_id, status__in=list(allowed_from)).update(**updates)
        if changed:
            RunEvent.objects.create(run_id=run_id, status=status, message=message, at=now)
            transaction.on_commit(lambda: live.notify_status(run_id, status))
    return bool(changed)


def run_status(run_id: int) -> str | None:
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first()


def launch_spec(run: Run) -> LaunchSpec:
    env = run.environment
    target = run.target
    assert env is not None and run.snapshot is not None and target is not None
    if env.kind == EnvironmentKind.SYSTEM_MANAGED:
        env_kind = "conda" if env.conda_yaml.strip() else "pip"
    else:
        env_kind = ""
    return LaunchSpec(
        run_id=run.pk,
        manifest=run.snapshot.manifest,
        manifest_file=snapshots.manifest_text(run.snapshot.manifest),
        local_blob=snapshots.blob_path,
        entry_script=run.entry_script,
        arguments=list(run.arguments),
        env_kind=env_kind,
        env_name=str(env),
        env_hash=env.definition_hash,
        interpreter=env.interpreter_path or "python3",
        pip_requirements=env.pip_requirements,
        conda_yaml=env.conda_yaml,
        conda=(target.facts or {}).get("conda") or "conda",
        docker_image=env.docker_image,
        docker_gpus=env.docker_gpus,
        instance=settings.TRAINYARD_INSTANCE_ID,
        step=_step_settings(run),
    )


def _step_settings(run: Run) -> dict:
    """A pipeline step's settings for its cloud service ({} for a run that is no step).

    Read through the run's own relation: the pipelines layer sits above this one.
    """
    try:
        return dict(run.pipeline_step.settings or {})
    except ObjectDoesNotExist:
        return {}


def run_start(*, run_id: int, again: bool = True) -> None:
    """Claim a queued run, get it a node, upload what the target lacks, launch it detached.

    While the run waits (no node yet, target unreachable) it stays Queued, and
    its timeline gets an entry only when the reason changes: the dispatcher
    retries every few seconds.
    """
    now = timezone.now()
    claim = f"start:{uuid.uuid4().hex}"
    claimed = (
        Run.objects.filter(pk=run_id, status=RunStatus.QUEUED)
        .filter(Q(lease_owner="") | Q(lease_expires_at__lt=now))
        .update(
            lease_owner=claim,
            lease_expires_at=now + timedelta(seconds=settings.RUN_START_TIMEOUT_SECONDS),
        )
    )
    if not claimed:
        return
    run = Run.objects.select_related("target", "environment", "snapshot").get(pk=run_id)
    target = run.target
    if target is None:
        run_transition(
            run_id,
            RunStatus.FAILED,
            allowed_from=[RunStatus.QUEUED],
            error="The compute target was detached before the run started.",
        )
        return
    if target.kind == ComputeKind.LOCAL and (problem := local_target_problem(run.submitted_by)):
        run_transition(
            run_id,
            RunStatus.FAILED,
            allowed_from=[RunStatus.QUEUED],
            error=problem,
            message=problem,
        )
        return
    nodes: list = []
    try:
        if target.kind == ComputeKind.CLUSTER:
            from compute.scheduler import cluster_counts, cluster_wait_reason, node_request

            nodes = node_request(target=target, run_id=run_id, count=run.node_count) or []
            if not nodes:
                wanted = "a node" if run.node_count == 1 else f"{run.node_count} nodes"
                _still_queued(
                    run, f"Waiting for {wanted} of {target.name}: {cluster_wait_reason(target)}"
                )
                # A node freed while this attempt held the run found it taken: look once more.
                if again and cluster_counts(target).idle >= run.node_count:
                    run_start(run_id=run_id, again=False)
                return
        backends = [backend_for(target, node=node) for node in nodes] or [backend_for(target)]
        for backend in backends:
            backend.ensure_root()
        envs = _rank_environments(nodes, backends[0])
    except BackendError as exc:
        _release_after_failed_start(run_id, nodes)
        if exc.unreachable:
            _still_queued(run, f"Target unreachable, retrying: {exc.message}")
        else:
            run_transition(
                run_id,
                RunStatus.FAILED,
                allowed_from=[RunStatus.QUEUED],
                error=exc.message,
                message=exc.message,
            )
        return
    if not run_transition(
        run_id,
        RunStatus.PREPARING,
        allowed_from=[RunStatus.QUEUED],
        status_reason="",
        lease_owner="",
        node_name=nodes[0].name if nodes else "",
    ):
        # Canceled while it was being claimed.
        _release_after_failed_start(run_id, nodes)
        return
    launched: list[Handle] = []
    try:
        specs = [replace(launch_spec(run), env=env) for env in envs]
        handles: list[Handle] = []
        for rank, (backend, spec) in enumerate(zip(backends, specs, strict=True)):
            handle = replace(
                backend.prepare(spec),
                node_id=nodes[rank].pk if nodes else None,
                # Where this attempt's output starts in storage: a requeued run goes on after
                # what its earlier attempt printed. Per stream: (target offset, stored offset).
                log_offsets={
                    s: (0, logstore.size(run_id, ranks.stream_name(rank, s))) for s in LOG_STREAMS
                },
            )
            handles.append(handle)
        if not run_transition(
            run_id,
            RunStatus.STARTING,
            allowed_from=[RunStatus.PREPARING],
            message=_uploaded_message(handles),
            handle=ranks.joined(handles).as_dict(),
        ):
            _stopped_before_launch(run_id)
            return
        for backend, spec, handle in zip(backends, specs, handles, strict=True):
            launched.append(backend.launch(spec, handle))
        # Stored whatever the status is now, so a cancel that came meanwhile can reach it.
        Run.objects.filter(pk=run_id).update(handle=ranks.joined(launched).as_dict())
    except BackendError as exc:
        _stop_ranks(target, launched)
        _release_after_failed_start(run_id, nodes)
        if exc.unreachable:
            _back_to_queue(run_id, f"Target unreachable, retrying: {exc.message}")
        else:
            run_transition(
                run_id,
                RunStatus.FAILED,
                allowed_from=[RunStatus.PREPARING, RunStatus.STARTING, RunStatus.CANCEL_REQUESTED],
                error=exc.message,
                message=exc.message,
            )


def _rank_environments(nodes: list, driver_backend: Backend) -> list[dict[str, str]]:
    """Each rank's environment: none for a one-node run."""
    if len(nodes) < 2:
        return [{}]
    from compute.scheduler import node_address

    try:
        address = node_address(nodes[0])
    except Exception as exc:
        # Docker's and the engine's errors: the driver node cannot be looked at now.
        raise BackendError(
            f"Cannot find the address of node {nodes[0].name}: {exc}", unreachable=True
        ) from None
    return ranks.environments(len(nodes), address, driver_backend.free_port())


def _uploaded_message(handles: list[Handle]) -> str:
    uploaded = sum(h.uploaded_files for h in handles)
    uploaded_bytes = sum(h.uploaded_bytes for h in handles)
    reused = sum(h.reused_files for h in handles)
    moved = f"{uploaded} changed file(s) uploaded"
    if uploaded_bytes:
        moved += f" ({human_bytes(uploaded_bytes)})"
    moved += f", {reused} already on the target"
    if len(handles) > 1:
        moved += f", over {len(handles)} nodes"
    return moved


def _stop_ranks(target: ComputeTarget, handles: list[Handle]) -> None:
    """Stop what runs of these ranks, as far as their nodes can be reached."""
    for handle in handles:
        try:
            backend_for(target, handle=handle).cancel(handle, settings.RUN_CANCEL_GRACE_SECONDS)
        except BackendError as exc:
            log.warning("could not stop a rank of a run: %s", exc.message)


def _still_queued(run: Run, reason: str) -> None:
    """Record why a queued run waits (on the timeline when the reason is new); let go of it."""
    with transaction.atomic():
        changed = (
            Run.objects.filter(pk=run.pk, status=RunStatus.QUEUED)
            .exclude(status_reason=reason)
            .update(status_reason=reason)
        )
        if changed:
            RunEvent.objects.create(run_id=run.pk, status=RunStatus.QUEUED, message=reason)
            transaction.on_commit(lambda: live.notify_status(run.pk, RunStatus.QUEUED))
        Run.objects.filter(pk=run.pk, lease_owner__startswith="start:").update(lease_owner="")


def _release_after_failed_start(run_id: int, nodes: list) -> None:
    if nodes:
        run_release_node(run_id=run_id)


def _back_to_queue(run_id: int, reason: str) -> None:
    if not run_transition(
        run_id,
        RunStatus.QUEUED,
        allowed_from=[RunStatus.PREPARING, RunStatus.STARTING],
        message=reason,
        status_reason=reason,
        handle=None,
    ):
        _stopped_before_launch(run_id)


def _stopped_before_launch(run_id: int) -> None:
    """A cancel arrived while the run was being prepared: nothing runs yet, so it is done."""
    if run_transition(
        run_id,
        RunStatus.CANCELED,
        allowed_from=[RunStatus.CANCEL_REQUESTED],
        message="Canceled before the run started",
    ):
        run_release_node(run_id=run_id)


def run_release_node(*, run_id: int) -> None:
    """The run is done with its nodes: they become idle, and a run-based cluster goes."""
    from compute.scheduler import node_release

    node_release(run_id=run_id)
    run = Run.objects.select_related("target", "submitted_by").filter(pk=run_id).first()
    if run is not None:
        run_based_cluster_release(run=run)


def run_cancel(*, run: Run, user=None, reason: str = "") -> bool:
    """Ask for the run to stop: at once if nothing runs yet, else through the run monitor."""
    why = reason or (f"Canceled by {user.username}" if user is not None else "Canceled")
    if run_transition(
        run.pk,
        RunStatus.CANCELED,
        allowed_from=[RunStatus.NOT_STARTED, RunStatus.QUEUED],
        message=why,
        cancel_reason=why,
    ):
        run_release_node(run_id=run.pk)
        return True
    return run_transition(
        run.pk,
        RunStatus.CANCEL_REQUESTED,
        allowed_from=[
            RunStatus.PREPARING,
            RunStatus.STARTING,
            RunStatus.RUNNING,
            RunStatus.NOT_RESPONDING,
        ],
        message=why,
        cancel_reason=why,
    )


def run_requeue(*, run_id: int, reason: str) -> bool:
    """Put a run whose node was preempted back in the queue, to start again on another node.

    A run already Finalizing counts too: the monitor may have seen its processes die with
    the node before the autoscaler saw the node go.
    """
    before = _ranks_of(run_id)
    requeued = run_transition(
        run_id,
        RunStatus.QUEUED,
        allowed_from=[
            RunStatus.STARTING,
            RunStatus.RUNNING,
            RunStatus.NOT_RESPONDING,
            RunStatus.FINALIZING,
        ],
        message=f"Requeued: {reason}",
        status_reason=f"Requeued: {reason}",
        handle=None,
        lease_owner="",
        node_name="",
        metrics_file_offset=0,
    )
    if requeued:
        _stop_other_ranks(run_id, before)
        transaction.on_commit(lambda: _enqueue_start(run_id))
    return requeued


def run_fail(*, run_id: int, reason: str) -> bool:
    before = _ranks_of(run_id)
    failed = run_transition(
        run_id, RunStatus.FAILED, allowed_from=ACTIVE_STATUSES, message=reason, error=reason
    )
    if failed:
        _stop_other_ranks(run_id, before)
        run_release_node(run_id=run_id)
    return failed


def _ranks_of(run_id: int) -> tuple[ComputeTarget | None, list[Handle]]:
    run = Run.objects.select_related("target").filter(pk=run_id).first()
    if run is None:
        return None, []
    return run.target, ranks.handles(run)


def _stop_other_ranks(run_id: int, before: tuple[ComputeTarget | None, list[Handle]]) -> None:
    """A multi-node run that lost one node stops on the others and lets them go."""
    target, handles = before
    if target is None or len(handles) < 2:
        return
    _stop_ranks(target, [h for h in handles if h.launched])
    run_release_node(run_id=run_id)


def runs_dispatch() -> int:
    """Start queued runs again (a node may be free, a target back) and rescue stuck ones."""
    now = timezone.now()
    queued = list(Run.objects.filter(status=RunStatus.QUEUED).values_list("pk", flat=True))
    # A node request outlives its run only by accident (the run deleted, a worker killed);
    # left there it would keep its place in the cluster's line for ever.
    waiting = Run.objects.filter(status=RunStatus.QUEUED).values("pk")
    NodeRequest.objects.exclude(run_id__in=waiting).delete()
    for run_id in queued:
        _enqueue_start(run_id)
    stale = now - timedelta(seconds=settings.RUN_START_TIMEOUT_SECONDS)
    for run in Run.objects.filter(
        status__in=[RunStatus.PREPARING, RunStatus.STARTING], handle__isnull=True
    ):
        last = run.events.order_by("-at").first()
        if last is not None and last.at < stale:
            _back_to_queue(run.pk, "The worker starting the run stopped; trying again")
    for run in Run.objects.filter(status=RunStatus.CANCEL_REQUESTED, handle__isnull=True):
        last = run.events.order_by("-at").first()
        if last is not None and last.at < stale:
            _stopped_before_launch(run.pk)
    return len(queued)


# --- what the run monitor records --------------------------------------------------------


def metrics_record(
    *,
    run: Run,
    records: list[dict],
    file_offset: int | None = None,
    stdout_offset: int | None = None,
    skipped: list[str] | None = None,
) -> None:
    """Store metric values and tags, and how far their sources were read, together.

    A record that cannot be stored is skipped, and said so on the run's timeline with
    the problems the reader met (`skipped`), so that the offsets always advance.
    """
    skipped = list(skipped or [])
    with transaction.atomic():
        steps: dict[str, int] = {}
        rows = []
        tags: dict[str, str] = {}
        for record in records:
            try:
                if "tag" in record:
                    key, text = metric_records.tag(record)
                    tags[key] = text
                    continue
                name, value, step = metric_records.metric(record)
                if step is None:
                    if name not in steps:
                        last = Metric.objects.filter(run=run, name=name).aggregate(s=Max("step"))[
                            "s"
                        ]
                        steps[name] = -1 if last is None else last
                    step = metric_records.checked_step(steps[name] + 1, name)
                steps[name] = max(step, steps.get(name, -1))
            except metric_records.Skipped as exc:
                skipped.append(str(exc))
                continue
            rows.append(Metric(run=run, name=name, step=step, value=value))
        Metric.objects.bulk_create(rows)
        updates: dict = {}
        if file_offset is not None:
            updates["metrics_file_offset"] = file_offset
        if stdout_offset is not None:
            updates["metrics_stdout_offset"] = stdout_offset
        if tags:
            current = Run.objects.get(pk=run.pk).tags or {}
            merged = {**current, **tags}
            if len(merged) > metric_records.MAX_TAGS:
                skipped.append(f"a run has at most {metric_records.MAX_TAGS} tags")
                merged = {**current, **{k: v for k, v in tags.items() if k in current}}
            updates["tags"] = merged
        if updates:
            Run.objects.filter(pk=run.pk).update(**updates)
        if skipped:
            _metrics_warn(run.pk, skipped)


def _metrics_warn(run_id: int, skipped: list[str]) -> None:
    """One timeline entry per skipped record, the first METRIC_WARNINGS_SHOWN of a run."""
    shown = RunEvent.objects.filter(
        run_id=run_id, message__startswith=METRIC_WARNING_PREFIX
    ).count()
    status = Run.objects.filter(pk=run_id).values_list("status", flat=True).get()
    for reason in skipped[: max(0, METRIC_WARNINGS_SHOWN - shown)]:
        shown += 1
        last = " Further skipped records are not listed." if shown == METRIC_WARNINGS_SHOWN else ""
        message = f"{METRIC_WARNING_PREFIX}: {reason}.{last}"
        RunEvent.objects.create(run_id=run_id, status=status, message=message)
    log.warning("run %s: %d metric record(s) skipped: %s", run_id, len(skipped), skipped[0])


@dataclass
class Collected:
    """What collecting a run's outputs kept, and what it left out (one line each, why)."""

    files: int = 0
    left_out: list[str] = dc_field(default_factory=list)

    def add(self, other: Collected) -> None:
        self.files += other.files
        self.left_out += other.left_out

    def summary(self) -> str:
        text = f"{self.files} output file(s) collected"
        if self.left_out:
            shown = "; ".join(self.left_out[:LEFT_OUT_SHOWN])
            more = len(self.left_out) - LEFT_OUT_SHOWN
            text += f"; {len(self.left_out)} left out: {shown}" + (
                f"; and {more} more" if more > 0 else ""
            )
        return text


# The files left out of a run's outputs that its timeline names (the rest are counted).
LEFT_OUT_SHOWN = 5


def outputs_record(*, run: Run, tar, node_folder: str = "") -> Collected:
    """Keep the files of a tar of ./outputs and ./logs (a file object, read once from start
    to end; empty when the run wrote neither) as the run's files, straight into blobs.

    Only regular files under a name `snapshots.output_path` accepts are kept: links,
    devices and names that would leave outputs/ or logs/ are left out, each with why.
    Another node's files of a multi-node run go under its folder (outputs/node-1/...).
    """
    collected = Collected()
    if not tar.read(1):
        return collected
    tar.seek(0)
    with tarfile.open(fileobj=tar, mode="r|") as archive:
        for member in archive:
            if member.isdir():
                continue
            name = snapshots.shown_name(member.name)
            if member.issym() or member.islnk():
                target = snapshots.shown_name(member.linkname)
                collected.left_out.append(f"{name} (a link to {target}: links are not kept)")
                continue
            if not member.isfile():
                collected.left_out.append(f"{name} (not a regular file)")
                continue
            try:
                path = snapshots.output_path(member.name)
            except snapshots.SnapshotError as exc:
                collected.left_out.append(f"{name} ({exc})")
                continue
            if node_folder:
                path = PurePosixPath(path.parts[0], node_folder, *path.parts[1:])
            src = archive.extractfile(member)
            if src is None:
                continue
            with src:
                sha, _ = snapshots.blob_store_stream(src)
            RunFile.objects.update_or_create(
                run=run, path=str(path), defaults={"sha256": sha, "size": member.size}
            )
            collected.files += 1
    return collected


def stderr_tail(run_id: int) -> str:
    size = logstore.size(run_id, "stderr")
    data, _ = logstore.read(run_id, "stderr", max(0, size - 16384), 16384)
    lines = data.decode(errors="replace").splitlines()
    return "\n".join(lines[-STDERR_TAIL_LINES:])


def run_arguments_text(run: Run) -> str:
    return shlex.join(run.arguments)


# --- submitting from a form, the API or a runconfig --------------------------------------


class FieldError(RunError):
    """A RunError that belongs to one submit field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class SubmitRequest:
    """The submit fields as the form, the API and the runconfig give them."""

    experiment: str = ""
    # Empty (target, environment, node count): the runconfig's, else local,
    # DEFAULT_ENVIRONMENT and one node.
    target: str = ""
    entry_script: str = ""
    arguments: list[str] = dc_field(default_factory=list)
    environment: Environment | None = None
    environment_spec: EnvironmentSpec | None = None
    node_count: int | None = None
    max_duration_seconds: int | None = None
    tags: dict = dc_field(default_factory=dict)
    metric_patterns: list[str] = dc_field(default_factory=list)
    display_name: str = ""
    # Empty: the runconfig's, else PySpark on HDInsight / Spark targets and Python elsewhere.
    framework: str = ""
    # With the target "amlcompute": the cluster to create for this run alone.
    run_based: RunBasedSpec | None = None

    def apply_runconfig(self, config: RunConfig) -> None:
        """Fill what the user left empty from an `az ml` runconfig file."""
        self.entry_script = self.entry_script or config.script
        self.arguments = self.arguments or config.arguments
        self.target = self.target or config.target
        self.framework = self.framework or config.framework
        if self.max_duration_seconds is None:
            self.max_duration_seconds = config.max_duration_seconds or None
        if self.node_count is None:
            self.node_count = config.node_count
        if self.environment is None and config.environment is not None:
            self.environment_spec = config.environment
        if self.run_based is None:
            self.run_based = config.run_based


def run_submit_upload(
    *,
    workspace,
    user,
    request: SubmitRequest,
    files=None,
    archive=None,
    git_files=None,
    executables=None,
) -> Run:
    """Snapshot the uploaded folder or archive and submit it as `request` describes."""
    resolved = submit_upload_resolve(
        workspace=workspace,
        user=user,
        request=request,
        files=files,
        archive=archive,
        git_files=git_files,
        executables=executables,
    )
    target = resolved.pop("target")
    if target is not None:
        return _submit_resolved(target=target, **resolved)
    assert request.run_based is not None
    with transaction.atomic():
        try:
            target = run_based_cluster_create(
                workspace=workspace,
                user=user,
                spec=request.run_based,
                node_count=request.node_count or 1,
            )
        except ClusterError as exc:
            raise FieldError("target", f"The run-based cluster cannot be created: {exc}") from None
        return _submit_resolved(target=target, **resolved)


def submit_upload_resolve(
    *,
    workspace,
    user,
    request: SubmitRequest,
    files=None,
    archive=None,
    git_files=None,
    executables=None,
) -> dict:
    """The experiment, target, snapshot and environment the submit fields name, the upload
    snapshotted: FieldError for the first field that names none. The target is None for a
    run-based cluster, created only when the run is submitted."""
    name = request.experiment.strip()
    if not name:
        raise FieldError("experiment", "Name the experiment this run belongs to.")
    problem = experiment_name_problem(name)
    if problem:
        raise FieldError("experiment", problem)
    target_name = request.target or LOCAL_TARGET_NAME
    target = ComputeTarget.objects.filter(workspace=workspace, name=target_name).first()
    run_based = target is None and target_name == RUN_BASED_TARGET
    if run_based and (request.run_based is None or not request.run_based.vm_size):
        raise FieldError(
            "target",
            "A run-based cluster (target amlcompute) needs a VM size: give it in the "
            "runconfig's amlcompute: vmSize, or choose an existing target.",
        )
    if target is None and not run_based:
        raise FieldError(
            "target",
            f"This workspace has no compute target {target_name!r}: choose one of its "
            "targets (see Compute).",
        )
    if not request.entry_script:
        raise FieldError("entry_script", "Say which script to run, e.g. train.py.")
    if not files and archive is None:
        raise FieldError(
            "source_folder", "Choose the source folder (or upload it as a .zip or .tar.gz)."
        )
    environment = request.environment
    if environment is None and request.environment_spec is not None:
        environment = environment_from_runconfig(workspace=workspace, spec=request.environment_spec)
    if environment is None:
        environment = _default_environment()
    if environment is None:
        raise FieldError("environment", "Choose the environment the script runs in.")
    try:
        snapshot, capture = snapshot_from_upload(
            workspace=workspace,
            files=files,
            archive=archive,
            git_files=git_files,
            executables=executables,
        )
    except snapshots.SnapshotError as exc:
        raise FieldError("source_folder", str(exc)) from None
    if not snapshot_has(snapshot, request.entry_script):
        scripts = [e[0] for e in snapshot.manifest if e[0].endswith(".py")][:10]
        raise FieldError(
            "entry_script",
            f"{request.entry_script} is not in the source folder. Python files in it: "
            f"{', '.join(scripts) or 'none'}.",
        )
    experiment = experiment_get_or_create(workspace=workspace, name=name, user=user)
    return {
        "workspace": workspace,
        "user": user,
        "request": request,
        "experiment": experiment,
        "target": target,
        "snapshot": snapshot,
        "git": capture.git,
        "environment": environment,
    }


def _default_environment() -> Environment | None:
    return (
        Environment.objects.filter(workspace__isnull=True, name=DEFAULT_ENVIRONMENT)
        .order_by("-version")
        .first()
    )


def _submit_resolved(
    *, workspace, user, request: SubmitRequest, experiment, target, snapshot, git, environment
) -> Run:
    """Submit once the experiment, target, snapshot and environment are known."""
    from compute.backends import CLOUD_BACKENDS

    if target.kind in CLOUD_BACKENDS:
        # Databricks, Data Lake and Batch run pipeline steps only, as in the studio.
        from pipelines.services import PipelineError, pipeline_single_step

        try:
            return pipeline_single_step(
                workspace=workspace,
                user=user,
                experiment=experiment,
                target=target,
                snapshot=snapshot,
                entry_script=request.entry_script,
                arguments=request.arguments,
                display_name=request.display_name,
                tags=request.tags,
                git=git,
            )
        except PipelineError as exc:
            raise FieldError(exc.field or "target", str(exc)) from None
    return run_submit(
        workspace=workspace,
        user=user,
        experiment=experiment,
        target=target,
        snapshot=snapshot,
        entry_script=request.entry_script,
        environment=environment,
        arguments=request.arguments,
        node_count=request.node_count or 1,
        max_duration_seconds=request.max_duration_seconds,
        tags=request.tags,
        metric_patterns=request.metric_patterns,
        display_name=request.display_name,
        framework=request.framework
        or (Framework.PYSPARK if target.kind == ComputeKind.HDINSIGHT else Framework.PYTHON),
        git=git,
    )
