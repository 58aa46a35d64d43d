"""Submitting runs: checking what a run needs, from a form, the API or a runconfig."""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Protocol

from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from compute.backends import CLOUD_BACKENDS, RUNNABLE_KINDS
from compute.models import (
    LOCAL_TARGET_NAME,
    ComputeKind,
    ComputeState,
    ComputeTarget,
)
from compute.sandbox import local_target_problem
from runs import linear_regex
from runs.models import (
    Environment,
    Experiment,
    Framework,
    Run,
    RunEvent,
    RunStatus,
    Snapshot,
)
from runs.numbers import run_numbers_take
from runs.run_based import (
    RUN_BASED_TARGET,
    RunBasedSpec,
    run_based_cluster_create,
)
from runs.runconfig import EnvironmentSpec, RunConfig
from runs.services.environments import DEFAULT_ENVIRONMENT, environment_from_runconfig
from runs.services.experiments import experiment_get_or_create, experiment_name_problem
from runs.services.lifecycle import run_start_soon, run_transition
from runs.services.snapshots import snapshot_from_upload, snapshot_has
from runs.snapshots.capture import SnapshotError
from studio.errors import ServiceError
from studio.models import Workspace

# Every stdout line is matched against every pattern: both are bounded.
MAX_METRIC_PATTERNS = 20
MAX_METRIC_PATTERN_LENGTH = 1000


def parse_tags(text: str) -> dict[str, str]:
    """`key=value, other=thing` (or one per line) into a dict."""
    tags: dict[str, str] = {}
    for part in re.split(r"[,\n]", text or ""):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        if not key.strip():
            raise ServiceError(f"The tag {part!r} has no name: write tags as name=value.")
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
            raise ServiceError(
                f"A metric pattern is at most {MAX_METRIC_PATTERN_LENGTH} characters: shorten "
                f"{line[:40]!r}…"
            )
        try:
            compiled = linear_regex.compile(line)
        except linear_regex.PatternError as exc:
            raise ServiceError(
                f"The metric pattern {line!r} is not a valid regular expression: {exc}."
            ) from None
        if not set(compiled.groupindex) - {"step"}:
            raise ServiceError(
                f"The metric pattern {line!r} has no named group: name the value's group after "
                r"the metric, e.g. loss=(?P<loss>[0-9.]+)."
            )
        patterns.append(line)
    if len(patterns) > MAX_METRIC_PATTERNS:
        raise ServiceError(
            f"A run takes at most {MAX_METRIC_PATTERNS} metric patterns: one pattern can read "
            "several metrics, one named group each."
        )
    return patterns


def run_submit(
    *,
    workspace: Workspace,
    user: User | None,
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

    def create(number: int) -> Run:
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
        run_start_soon(run_id=run.pk)
        return run

    run = run_numbers_take(experiment=experiment, create=create)
    run.refresh_from_db()
    return run


def run_submit_check(
    *,
    workspace: Workspace,
    user: User | None,
    experiment: Experiment,
    target: ComputeTarget,
    snapshot: Snapshot,
    entry_script: str,
    environment: Environment,
    node_count: int = 1,
    metric_patterns: list[str] | None = None,
    framework: str = Framework.PYTHON,
) -> None:
    """ServiceError saying why a run submitted with these would not start, if it would not."""
    if experiment.workspace_id != workspace.pk or target.workspace_id != workspace.pk:
        raise ServiceError("The experiment and the compute target must belong to this workspace.")
    if environment.workspace_id not in (None, workspace.pk):
        raise ServiceError("That environment belongs to another workspace.")
    if target.kind not in RUNNABLE_KINDS:
        raise ServiceError(
            f"{target.name} is a {target.get_kind_display()} target, which runs pipeline steps, "
            "not script runs: choose the local target, a VM, a compute cluster or an HDInsight "
            "/ Spark target."
        )
    if target.state != ComputeState.SUCCEEDED and target.kind != ComputeKind.CLUSTER:
        raise ServiceError(f"{target.name} is {target.state}: wait until it is ready, or fix it.")
    if target.kind == ComputeKind.LOCAL and (problem := local_target_problem(user)):
        raise ServiceError(problem, field="target")
    _require_framework(framework, target, environment)
    if not snapshot_has(snapshot, entry_script):
        scripts = [e[0] for e in snapshot.manifest if e[0].endswith(".py")][:10]
        listed = ", ".join(scripts) if scripts else "none"
        raise ServiceError(
            f"The entry script {entry_script} is not in the source folder. Python files in it: "
            f"{listed}."
        )
    _require_nodes(node_count, target)
    if target.kind == ComputeKind.CLUSTER and environment.docker_image:
        raise ServiceError(
            "Cluster nodes run the environment's Python directly: choose an environment "
            "without a Docker image for a compute cluster."
        )
    if environment.docker_image and environment.conda_yaml.strip():
        raise ServiceError(
            "An environment with a Docker image can use pip requirements, not conda."
        )
    if environment.docker_gpus and not (target.facts or {}).get("gpus"):
        raise ServiceError(
            f"{environment} gives its container the target's GPUs, but {target.name} has no "
            "GPU that its last check found (nvidia-smi): choose a VM with NVIDIA GPUs (check it "
            "again after installing the driver), or an environment without GPUs.",
            field="environment",
        )
    for pattern in metric_patterns or []:
        parse_metric_patterns(pattern)


def _require_nodes(node_count: int, target: ComputeTarget) -> None:
    """A multi-node run needs a compute cluster that may grow to that many nodes."""
    if node_count < 1:
        raise ServiceError("The node count is at least 1.", field="node_count")
    if node_count == 1:
        return
    if target.kind != ComputeKind.CLUSTER:
        raise ServiceError(
            f"{target.name} is one machine: runs on more than one node need a compute cluster. "
            "Choose a cluster, or a node count of 1.",
            field="node_count",
        )
    max_nodes = int(target.config.get("max_nodes", 0))
    if node_count > max_nodes:
        raise ServiceError(
            f"{target.name} has at most {max_nodes} node(s), so a run on {node_count} nodes would "
            "never start: lower the node count, or raise the cluster's maximum nodes.",
            field="node_count",
        )


def _require_framework(framework: str, target: ComputeTarget, environment: Environment) -> None:
    """PySpark jobs go to HDInsight / Spark head nodes, and those run only PySpark jobs."""
    if framework not in Framework.values:
        raise ServiceError(
            f"Choose the framework Python or PySpark, not {framework}.", field="framework"
        )
    is_spark = target.kind == ComputeKind.HDINSIGHT
    if framework == Framework.PYSPARK and not is_spark:
        raise ServiceError(
            f"PySpark jobs run with spark-submit on an HDInsight / Spark target, and {target.name} "
            f"is a {target.get_kind_display()}: choose an HDInsight / Spark target, or the "
            "framework Python.",
            field="framework",
        )
    if is_spark and framework != Framework.PYSPARK:
        raise ServiceError(
            f"{target.name} is an HDInsight / Spark target: its runs are PySpark jobs submitted "
            "with spark-submit. Choose the framework PySpark.",
            field="framework",
        )
    if is_spark and environment.docker_image:
        raise ServiceError(
            "PySpark jobs run in the head node's Spark, not in Docker: choose an environment "
            "without a Docker image.",
            field="environment",
        )


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


class SingleStepSubmit(Protocol):
    """Submits a script to a target that runs pipeline steps only, as a one-step pipeline;
    ServiceError (with its field) for what the user can change."""

    def __call__(
        self,
        *,
        workspace: Workspace,
        user: User,
        experiment: Experiment,
        target: ComputeTarget,
        snapshot: Snapshot,
        entry_script: str,
        arguments: list[str],
        display_name: str,
        tags: dict,
        git: dict,
    ) -> Run: ...


# Databricks, Data Lake and Batch targets run pipeline steps only, as in the studio: a script
# submitted to one becomes a one-step pipeline. The pipelines app sits above runs, so it
# registers how (single_step_submit_register) when it is ready.
_single_step: list[SingleStepSubmit] = []


def single_step_submit_register(submit: SingleStepSubmit) -> None:
    _single_step[:] = [submit]


def _single_step_submit(**fields: Any) -> Run:
    if not _single_step:
        raise ServiceError(
            f"{fields['target'].name} runs pipeline steps only: submit a pipeline to it.",
            field="target",
        )
    return _single_step[0](**fields)


def run_submit_upload(
    *,
    workspace: Workspace,
    user: User,
    request: SubmitRequest,
    files: list[tuple[str, object]] | None = None,
    archive: UploadedFile | None = None,
    git_files: dict[str, str] | None = None,
    executables: set[str] | None = None,
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
    if resolved.target is not None:
        return _submit_resolved(
            workspace=workspace,
            user=user,
            request=request,
            resolved=resolved,
            target=resolved.target,
        )
    assert request.run_based is not None
    with transaction.atomic():
        try:
            target = run_based_cluster_create(
                workspace=workspace,
                user=user,
                spec=request.run_based,
                node_count=request.node_count or 1,
            )
        except ServiceError as exc:
            raise ServiceError(
                f"The run-based cluster cannot be created: {exc}", field="target"
            ) from None
        return _submit_resolved(
            workspace=workspace, user=user, request=request, resolved=resolved, target=target
        )


@dataclass(frozen=True)
class SubmitResolved:
    """The experiment, target, snapshot (with its git facts) and environment a submit names.

    The target is None for a run-based cluster, created only when the run is submitted.
    """

    experiment: Experiment
    target: ComputeTarget | None
    snapshot: Snapshot
    git: dict
    environment: Environment


def submit_upload_resolve(
    *,
    workspace: Workspace,
    user: User,
    request: SubmitRequest,
    files: list[tuple[str, object]] | None = None,
    archive: UploadedFile | None = None,
    git_files: dict[str, str] | None = None,
    executables: set[str] | None = None,
) -> SubmitResolved:
    """The experiment, target, snapshot and environment the submit fields name, the upload
    snapshotted: ServiceError for the first field that names none. The target is None for a
    run-based cluster, created only when the run is submitted."""
    name = request.experiment.strip()
    if not name:
        raise ServiceError("Name the experiment this run belongs to.", field="experiment")
    problem = experiment_name_problem(name)
    if problem:
        raise ServiceError(problem, field="experiment")
    target_name = request.target or LOCAL_TARGET_NAME
    target = ComputeTarget.objects.filter(workspace=workspace, name=target_name).first()
    run_based = target is None and target_name == RUN_BASED_TARGET
    if run_based and (request.run_based is None or not request.run_based.vm_size):
        raise ServiceError(
            "A run-based cluster (target amlcompute) needs a VM size: give it in the "
            "runconfig's amlcompute: vmSize, or choose an existing target.",
            field="target",
        )
    if target is None and not run_based:
        raise ServiceError(
            f"This workspace has no compute target {target_name!r}: choose one of its "
            "targets (see Compute).",
            field="target",
        )
    if not request.entry_script:
        raise ServiceError("Say which script to run, e.g. train.py.", field="entry_script")
    if not files and archive is None:
        raise ServiceError(
            "Choose the source folder (or upload it as a .zip or .tar.gz).", field="source_folder"
        )
    environment = request.environment
    if environment is None and request.environment_spec is not None:
        environment = environment_from_runconfig(workspace=workspace, spec=request.environment_spec)
    if environment is None:
        environment = _default_environment()
    if environment is None:
        raise ServiceError("Choose the environment the script runs in.", field="environment")
    try:
        snapshot, capture = snapshot_from_upload(
            workspace=workspace,
            files=files,
            archive=archive,
            git_files=git_files,
            executables=executables,
        )
    except SnapshotError as exc:
        raise ServiceError(str(exc), field="source_folder") from None
    if not snapshot_has(snapshot, request.entry_script):
        scripts = [e[0] for e in snapshot.manifest if e[0].endswith(".py")][:10]
        raise ServiceError(
            f"{request.entry_script} is not in the source folder. Python files in it: "
            f"{', '.join(scripts) or 'none'}.",
            field="entry_script",
        )
    experiment = experiment_get_or_create(workspace=workspace, name=name, user=user)
    return SubmitResolved(
        experiment=experiment,
        target=target,
        snapshot=snapshot,
        git=capture.git,
        environment=environment,
    )


def _default_environment() -> Environment | None:
    return (
        Environment.objects.filter(workspace__isnull=True, name=DEFAULT_ENVIRONMENT)
        .order_by("-version")
        .first()
    )


def _submit_resolved(
    *,
    workspace: Workspace,
    user: User,
    request: SubmitRequest,
    resolved: SubmitResolved,
    target: ComputeTarget,
) -> Run:
    """Submit once the experiment, target, snapshot and environment are known."""
    if target.kind in CLOUD_BACKENDS:
        return _single_step_submit(
            workspace=workspace,
            user=user,
            experiment=resolved.experiment,
            target=target,
            snapshot=resolved.snapshot,
            entry_script=request.entry_script,
            arguments=request.arguments,
            display_name=request.display_name,
            tags=request.tags,
            git=resolved.git,
        )
    return run_submit(
        workspace=workspace,
        user=user,
        experiment=resolved.experiment,
        target=target,
        snapshot=resolved.snapshot,
        entry_script=request.entry_script,
        environment=resolved.environment,
        arguments=request.arguments,
        node_count=request.node_count or 1,
        max_duration_seconds=request.max_duration_seconds,
        tags=request.tags,
        metric_patterns=request.metric_patterns,
        display_name=request.display_name,
        framework=request.framework
        or (Framework.PYSPARK if target.kind == ComputeKind.HDINSIGHT else Framework.PYTHON),
        git=resolved.git,
    )
