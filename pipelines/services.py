"""Pipelines: a parent run whose steps are child runs, each on its own compute target.

Submitting creates the parent (NotStarted) and one child run per step, all
NotStarted: a step waits there for the steps it depends on. `pipeline_advance`
(called on submit, by a Celery beat task and after a cancel) moves the
pipeline on: it starts each step whose dependencies have completed, with the
files they wrote to `outputs/<name>` copied into its snapshot as
`inputs/<name>`; it leaves unstarted (Canceled) the steps after a step that
failed; and it ends the parent when every step has ended. Once a step is
Queued the ordinary run machinery takes it: `run_start` launches it through
its target's backend and the run monitor follows it.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath

import yaml
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db.models import Q
from django.utils import timezone

from compute.cloud.clients import CloudError
from compute.cloud.services import cloud_client
from compute.models import ComputeKind, ComputeState, ComputeTarget
from compute.sandbox import local_target_problem
from pipelines.definition import (
    STEP_TYPES,
    TYPE_LABELS,
    TYPE_OF_KIND,
    DefinitionError,
    PipelineSpec,
    StepSpec,
    parse_pipeline,
)
from pipelines.models import Pipeline, PipelineStep
from runs.models import (
    FINAL_STATUSES,
    Environment,
    EnvironmentKind,
    Experiment,
    Run,
    RunEvent,
    RunFile,
    RunStatus,
    Snapshot,
)
from runs.numbers import run_numbers_take
from runs.parents import ParentKind, parent_advance_soon, parent_children_stop, parents_advance
from runs.services.environments import DEFAULT_ENVIRONMENT
from runs.services.experiments import experiment_get_or_create, experiment_name_problem
from runs.services.lifecycle import run_start_soon, run_transition
from runs.services.snapshots import snapshot_from_upload, snapshot_of_manifest
from runs.snapshots.capture import SnapshotError
from studio.errors import ServiceError
from studio.models import Workspace

log = logging.getLogger(__name__)

MAX_DEFINITION_BYTES = 256 * 1024

PIPELINE = ParentKind(
    model=Pipeline,
    noun="pipeline",
    children="steps",
    child_noun="step",
    children_noun="steps",
    advance_task="pipelines.tasks.pipeline_advance_task",
)

# The name runs.services catches a pipeline's ServiceError by, when it submits a script run
# to a Databricks, Data Lake or Batch target as a one-step pipeline.
PipelineError = ServiceError


# --- submitting ---------------------------------------------------------------------------


def pipeline_submit(
    *,
    workspace: Workspace,
    user: User,
    definition: str,
    experiment: str = "",
    files: list[tuple[str, object]] | None = None,
    archive: UploadedFile | None = None,
    git_files: dict[str, str] | None = None,
    tags: dict | None = None,
) -> Run:
    """Submit the pipeline a YAML definition describes, with the uploaded source folder (and
    the files of its .git/ that name its repository, branch and commit)."""
    try:
        spec = parse_pipeline(definition)
    except DefinitionError as exc:
        raise ServiceError(str(exc), field="definition") from None
    name = (experiment or spec.experiment).strip()
    if not name:
        raise ServiceError(
            "Name the experiment (here or as `experiment:` in the file).", field="experiment"
        )
    problem = experiment_name_problem(name)
    if problem:
        raise ServiceError(problem, field="experiment")
    snapshot, git = None, {}
    if files or archive is not None:
        try:
            snapshot, capture = snapshot_from_upload(
                workspace=workspace, files=files, archive=archive, git_files=git_files
            )
            git = capture.git
        except (SnapshotError, ServiceError) as exc:
            raise ServiceError(str(exc), field="source_folder") from None
    elif any(step.entry for step in spec.steps):
        needs = next(step for step in spec.steps if step.entry)
        raise ServiceError(
            f"Step ‘{needs.name}’ runs {needs.entry}: choose the source folder with the "
            "pipeline's scripts (or upload it as a .zip or .tar.gz).",
            field="source_folder",
        )
    experiment_obj = experiment_get_or_create(workspace=workspace, name=name, user=user)
    return _pipeline_create(
        workspace=workspace,
        user=user,
        experiment=experiment_obj,
        spec=spec,
        snapshot=snapshot,
        git=git,
        definition=definition,
        tags=tags or {},
    )


def pipeline_single_step(
    *,
    workspace: Workspace,
    user: User,
    experiment: Experiment,
    target: ComputeTarget,
    snapshot: Snapshot,
    entry_script: str,
    arguments: list[str] | None = None,
    display_name: str = "",
    tags: dict | None = None,
    git: dict | None = None,
) -> Run:
    """A script run submitted to a Databricks, Data Lake or Batch target: a one-step pipeline,
    as the studio offers those services only as pipeline steps."""
    step_type = TYPE_OF_KIND.get(target.kind)
    if step_type is None:
        raise ServiceError(f"{target.name} cannot run pipeline steps.", field="target")
    step: dict = {"name": "main", "type": step_type, "compute": target.name}
    if step_type == "databricks":
        if entry_script.endswith(".jar"):
            raise ServiceError(
                "A JAR step needs its main class: submit it as a pipeline file with "
                "`jar:` and `main_class:`.",
                field="entry_script",
            )
        step["python_script"] = entry_script
    else:
        step["script"] = entry_script
    if arguments and step_type != "datalake":
        step["arguments"] = list(arguments)
    document = {"name": display_name or entry_script, "steps": [step]}
    definition = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    try:
        spec = parse_pipeline(definition)
    except DefinitionError as exc:
        raise ServiceError(str(exc)) from None
    return _pipeline_create(
        workspace=workspace,
        user=user,
        experiment=experiment,
        spec=spec,
        snapshot=snapshot,
        git=git or {},
        definition=definition,
        tags=tags or {},
    )


def _pipeline_create(
    *,
    workspace: Workspace,
    user: User,
    experiment: Experiment,
    spec: PipelineSpec,
    snapshot: Snapshot | None,
    git: dict,
    definition: str,
    tags: dict,
) -> Run:
    producers = spec.producers
    prepared = [_prepare_step(workspace, user, step, snapshot) for step in spec.steps]

    def create(first: int) -> Run:
        parent = Run.objects.create(
            workspace=workspace,
            experiment=experiment,
            number=first,
            display_name=spec.name or "pipeline",
            submitted_by=user,
            snapshot=snapshot,
            git=git,
            tags=tags,
        )
        RunEvent.objects.create(
            run=parent,
            status=RunStatus.NOT_STARTED,
            message=f"Pipeline of {len(spec.steps)} step(s) submitted",
        )
        pipeline = Pipeline.objects.create(run=parent, name=spec.name, definition=definition)
        for position, (step, fields) in enumerate(zip(spec.steps, prepared, strict=True)):
            waits = step.depends_on(producers)
            child = Run.objects.create(
                workspace=workspace,
                experiment=experiment,
                number=first + 1 + position,
                parent=parent,
                display_name=step.name,
                submitted_by=user,
                tags=tags,
                git=git,
                entry_script=step.entry,
                arguments=step.arguments,
                max_duration_seconds=step.max_duration_seconds,
                **fields,
            )
            RunEvent.objects.create(
                run=child,
                status=RunStatus.NOT_STARTED,
                message=f"Waits for {', '.join(waits)}" if waits else "",
            )
            PipelineStep.objects.create(
                pipeline=pipeline,
                run=child,
                name=step.name,
                position=position,
                step_type=step.type,
                settings=step.settings,
                inputs=step.inputs,
                outputs=step.outputs,
                depends_on=waits,
            )
        parent_advance_soon(kind=PIPELINE, parent_id=pipeline.pk)
        return parent

    return run_numbers_take(experiment=experiment, create=create)


def _prepare_step(
    workspace: Workspace, user: User, step: StepSpec, snapshot: Snapshot | None
) -> dict:
    """The child run's fields for `step`: its target, environment and own snapshot."""
    where = f"Step ‘{step.name}’"
    target = ComputeTarget.objects.filter(workspace=workspace, name=step.compute).first()
    if target is None:
        raise ServiceError(
            f"{where}: this workspace has no compute target {step.compute!r}: attach it first "
            "(Compute → + New) or fix `compute:`.",
            field="definition",
        )
    if target.kind not in STEP_TYPES[step.type]:
        kinds = " or ".join(str(ComputeKind(k).label) for k in STEP_TYPES[step.type])
        suggestion = TYPE_OF_KIND.get(target.kind)
        raise ServiceError(
            f"{where} is a {TYPE_LABELS[step.type]} step, which runs on {kinds}, but "
            f"{target.name} is a {target.get_kind_display()}"
            + (f": use `type: {suggestion}` or another target." if suggestion else "."),
            field="definition",
        )
    if target.state != ComputeState.SUCCEEDED and target.kind != ComputeKind.CLUSTER:
        raise ServiceError(
            f"{where}: {target.name} is {target.state}: wait until it is ready, or fix it "
            "(see its page under Compute).",
            field="definition",
        )
    if target.kind == ComputeKind.LOCAL and (problem := local_target_problem(user)):
        raise ServiceError(f"{where}: {problem}", field="definition")
    if (
        step.type == "databricks"
        and not step.settings.get("cluster_id")
        and not step.settings.get("new_cluster")
        and not target.config.get("cluster_id")
    ):
        clusters = ", ".join(
            f"{c['cluster_name']} ({c['cluster_id']})" for c in target.facts.get("clusters", [])
        )
        raise ServiceError(
            f"{where}: {target.name} has no default cluster: give the step a cluster_id"
            + (f" (one of: {clusters})" if clusters else "")
            + " or a new_cluster with spark_version, node_type_id and num_workers.",
            field="definition",
        )
    _check_cluster_or_pool(target, step, where)
    manifest = _source_manifest(snapshot, step.source_directory) if snapshot else []
    if step.source_directory and not manifest:
        raise ServiceError(
            f"{where}: the source folder has no folder {step.source_directory}/ with files.",
            field="definition",
        )
    if step.entry and not any(entry[0] == step.entry for entry in manifest):
        listed = ", ".join(e[0] for e in manifest[:10]) or "none"
        raise ServiceError(
            f"{where} runs {step.entry}, which is not in the "
            + (f"folder {step.source_directory}/ of the " if step.source_directory else "")
            + f"source folder. Files in it: {listed}.",
            field="definition",
        )
    fields: dict = {
        "target": target,
        "target_name": target.name,
        "environment": _environment(workspace, step, where),
        "snapshot": snapshot_of_manifest(workspace=workspace, manifest=manifest),
    }
    if step.type == "pyspark":
        fields["framework"] = "PySpark"
    return fields


def _check_cluster_or_pool(target: ComputeTarget, step: StepSpec, where: str) -> None:
    """The Databricks cluster or Batch pool the step names must exist on the service now,
    not only when the step's turn comes. A service out of reach is left to the launch,
    which waits for it in the queue."""
    cluster_id = step.settings.get("cluster_id", "") if step.type == "databricks" else ""
    pool_id = step.settings.get("pool", "") if step.type == "batch" else ""
    if not cluster_id and not pool_id:
        return
    client = cloud_client(target)
    try:
        if cluster_id:
            client.check(cluster_id=cluster_id)
        else:
            client.check(pool_id=pool_id)
    except CloudError as exc:
        if exc.code != "unreachable":
            raise ServiceError(f"{where}: {exc.message}", field="definition") from None


def _environment(workspace: Workspace, step: StepSpec, where: str) -> Environment:
    name = step.environment or DEFAULT_ENVIRONMENT
    base, _, version = name.partition(":")
    envs = Environment.objects.filter(
        Q(workspace=workspace) | Q(workspace__isnull=True), name=base
    ).order_by("-version")
    if version:
        envs = envs.filter(version=int(version) if version.isdigit() else -1)
    env = envs.first()
    if env is None:
        raise ServiceError(
            f"{where}: no environment {name!r}: see the Environments page for the names to use.",
            field="definition",
        )
    if step.type == "pyspark" and env.kind == EnvironmentKind.SYSTEM_MANAGED:
        raise ServiceError(
            f"{where}: a PySpark step runs with the cluster's Python: choose a user-managed or "
            "curated environment.",
            field="definition",
        )
    return env


def _source_manifest(snapshot: Snapshot, folder: str) -> list[list]:
    if not folder:
        return [list(entry) for entry in snapshot.manifest]
    prefix = folder + "/"
    return [
        [entry[0][len(prefix) :], *entry[1:]]
        for entry in snapshot.manifest
        if entry[0].startswith(prefix)
    ]


# --- moving a pipeline on -----------------------------------------------------------------


def pipelines_advance() -> int:
    """Advance every pipeline that is not over yet; how many were looked at."""
    return parents_advance(kind=PIPELINE, advance=lambda pk: pipeline_advance(pipeline_id=pk))


def pipeline_advance(*, pipeline_id: int) -> None:
    """Start the steps whose inputs are ready, skip those after a failure, end the parent."""
    pipeline = Pipeline.objects.select_related("run").get(pk=pipeline_id)
    parent = pipeline.run
    steps = list(pipeline.steps.select_related("run"))
    if parent.status in (RunStatus.CANCEL_REQUESTED, RunStatus.CANCELED):
        parent_children_stop(
            kind=PIPELINE,
            parent=parent,
            children=[step.run for step in steps],
            reason="The pipeline was canceled",
        )
        return
    if parent.is_final:
        return
    by_name = {step.name: step for step in steps}
    changed = True
    while changed:
        changed = False
        for step in steps:
            if step.run.status != RunStatus.NOT_STARTED:
                continue
            deps = [by_name[name] for name in step.depends_on]
            broken = next(
                (d for d in deps if d.run.status in (RunStatus.FAILED, RunStatus.CANCELED)), None
            )
            if broken is not None:
                _skip(step, f"Not started: step ‘{broken.name}’ {broken.run.status.lower()}")
                changed = True
            elif all(d.run.status == RunStatus.COMPLETED for d in deps):
                _start(step, by_name)
                changed = True
    statuses = {step.name: step.run.status for step in steps}
    if parent.status == RunStatus.NOT_STARTED and any(
        status != RunStatus.NOT_STARTED for status in statuses.values()
    ):
        started = [s.name for s in steps if s.run.status != RunStatus.NOT_STARTED]
        run_transition(
            parent.pk,
            RunStatus.RUNNING,
            allowed_from=[RunStatus.NOT_STARTED],
            message=f"Started {', '.join(started)}",
            started_at=timezone.now(),
        )
    if all(status in FINAL_STATUSES for status in statuses.values()):
        _finish(parent, steps)


def _start(step: PipelineStep, by_name: dict[str, PipelineStep]) -> None:
    """Give the step its inputs and queue it; the run machinery starts it from there."""
    run = step.run
    try:
        snapshot, copied = _with_inputs(step, by_name)
    except ServiceError as exc:
        run_transition(
            run.pk,
            RunStatus.FAILED,
            allowed_from=[RunStatus.NOT_STARTED],
            message=str(exc),
            error=str(exc),
        )
        run.status = RunStatus.FAILED
        return
    message = f"Ready: {copied} input file(s) copied into inputs/" if step.inputs else "Ready"
    if run_transition(
        run.pk,
        RunStatus.QUEUED,
        allowed_from=[RunStatus.NOT_STARTED],
        message=message,
        snapshot=snapshot,
    ):
        run_start_soon(run_id=run.pk)
    run.refresh_from_db(fields=["status", "error"])


def _with_inputs(step: PipelineStep, by_name: dict[str, PipelineStep]) -> tuple[Snapshot, int]:
    """The step's snapshot with each input's files under inputs/<name>/."""
    run = step.run
    assert run.snapshot is not None  # every step run is created with its snapshot
    if not step.inputs:
        return run.snapshot, 0
    producers = {data: s for s in by_name.values() for data in s.outputs}
    manifest = [
        entry
        for entry in run.snapshot.manifest
        if not any(entry[0].startswith(f"inputs/{data}/") for data in step.inputs)
    ]
    copied = 0
    for data in step.inputs:
        producer = producers[data]
        prefix = f"outputs/{data}"
        files = RunFile.objects.filter(run=producer.run).filter(
            Q(path=prefix) | Q(path__startswith=prefix + "/")
        )
        if not files:
            written = list(
                RunFile.objects.filter(run=producer.run).values_list("path", flat=True)[:10]
            )
            raise ServiceError(
                f"Input {data} is missing: step ‘{producer.name}’ completed without writing "
                f"outputs/{data} (it wrote {', '.join(written) or 'no output files'}). Make it "
                f"write its {data} files under ./outputs/{data}/."
            )
        for f in files:
            rest = PurePosixPath(f.path).relative_to(prefix)
            path = f"inputs/{data}/{rest}" if str(rest) != "." else f"inputs/{data}"
            manifest.append([path, f.sha256, f.size, False])
            copied += 1
    return snapshot_of_manifest(workspace=run.workspace, manifest=manifest), copied


def _skip(step: PipelineStep, reason: str) -> None:
    run_transition(
        step.run.pk,
        RunStatus.CANCELED,
        allowed_from=[RunStatus.NOT_STARTED],
        message=reason,
        cancel_reason=reason,
    )
    step.run.status = RunStatus.CANCELED


def _finish(parent: Run, steps: list[PipelineStep]) -> None:
    failed = [s for s in steps if s.run.status == RunStatus.FAILED]
    canceled = [s for s in steps if s.run.status == RunStatus.CANCELED]
    if not failed and not canceled:
        run_transition(
            parent.pk,
            RunStatus.COMPLETED,
            allowed_from=[RunStatus.NOT_STARTED, RunStatus.RUNNING],
            message=f"All {len(steps)} step(s) completed",
        )
        return
    if failed:
        first = failed[0]
        reason = f"Step ‘{first.name}’ failed: {first.run.error or 'see its page'}"
        if canceled:
            reason += f". Not started: {', '.join(s.name for s in canceled)}"
        status = RunStatus.FAILED
    else:
        reason = f"Step(s) {', '.join(s.name for s in canceled)} were canceled"
        status = RunStatus.CANCELED
    run_transition(
        parent.pk,
        status,
        allowed_from=[RunStatus.NOT_STARTED, RunStatus.RUNNING],
        message=reason,
        error=reason if status == RunStatus.FAILED else "",
        cancel_reason=reason if status == RunStatus.CANCELED else "",
    )
