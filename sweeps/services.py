"""Hyperparameter sweeps: a parent run whose children are script runs with sampled arguments.

Submitting stores the snapshot and creates the parent (NotStarted), which holds
what every child runs: the snapshot, entry script, arguments, target and
environment. `sweep_advance` (called on submit, by a Celery beat task and after
a cancel) moves the sweep on, as `pipeline_advance` does for pipelines: it
stops the running children the early termination policy finds behind (through
`run_cancel`, so the child's timeline says why), submits new children with
`run_submit` while fewer than max_concurrent_runs run and fewer than
max_total_runs were drawn, stops them all once max_duration_minutes have
passed, and ends the parent when every child has ended. Once submitted, a
child is an ordinary run that the run machinery starts and follows.
"""

from __future__ import annotations

import logging
import secrets
import shlex
from datetime import timedelta

from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from compute.models import ComputeKind
from runs.models import Framework, Run, RunEvent, RunStatus
from runs.numbers import run_numbers_take
from runs.parents import ParentKind, parent_advance_soon, parent_children_stop, parents_advance
from runs.services.lifecycle import run_cancel, run_transition
from runs.services.submit import SubmitRequest, run_submit, run_submit_check, submit_upload_resolve
from studio.errors import ServiceError
from studio.models import Workspace
from sweeps import selectors
from sweeps.definition import DefinitionError, SweepSpec, parse_sweep
from sweeps.models import Sweep, SweepChild
from sweeps.policies import best_of, early_stops
from sweeps.sampling import Trial, sample

log = logging.getLogger(__name__)

MAX_DEFINITION_BYTES = 64 * 1024

SWEEP = ParentKind(
    model=Sweep,
    noun="sweep",
    children="children",
    child_noun="child run",
    children_noun="child runs",
    advance_task="sweeps.tasks.sweep_advance_task",
)


# --- submitting ---------------------------------------------------------------------------


def sweep_submit(
    *,
    workspace: Workspace,
    user: User,
    request: SubmitRequest,
    definition: str,
    files: list[tuple[str, object]] | None = None,
    archive: UploadedFile | None = None,
    git_files: dict[str, str] | None = None,
    executables: set[str] | None = None,
    seed: int | None = None,
) -> Run:
    """Submit the sweep an hdconfig.yml describes over the uploaded source folder.

    The ServiceError names the field to fix: `hyperdrive_config` for the hdconfig file.
    """
    try:
        spec = parse_sweep(definition)
    except DefinitionError as exc:
        raise ServiceError(str(exc), field="hyperdrive_config") from None
    sampled = {p.name for p in spec.parameters}
    repeated = next((a for a in request.arguments if a in sampled), None)
    if repeated:
        raise ServiceError(
            f"{repeated} is sampled by the sweep: leave it out of the arguments (each child gets "
            "its own value).",
            field="arguments",
        )
    resolved = submit_upload_resolve(
        workspace=workspace,
        user=user,
        request=request,
        files=files,
        archive=archive,
        git_files=git_files,
        executables=executables,
    )
    target = resolved.target
    if target is None:
        raise ServiceError(
            "A sweep runs its children on an existing compute target: choose one (a run-based "
            "cluster is made for one run).",
            field="target",
        )
    framework = request.framework or (
        Framework.PYSPARK if target.kind == ComputeKind.HDINSIGHT else Framework.PYTHON
    )
    run_submit_check(
        workspace=workspace,
        user=user,
        experiment=resolved.experiment,
        target=target,
        snapshot=resolved.snapshot,
        entry_script=request.entry_script,
        environment=resolved.environment,
        framework=framework,
    )
    fields = {
        "workspace": workspace,
        "experiment": resolved.experiment,
        "display_name": request.display_name or f"sweep of {request.entry_script}",
        "submitted_by": user,
        "target": target,
        "target_name": target.name,
        "environment": resolved.environment,
        "snapshot": resolved.snapshot,
        "git": resolved.git,
        "entry_script": request.entry_script,
        "arguments": list(request.arguments),
        "framework": framework,
        "tags": request.tags,
    }
    drawn_with = secrets.randbelow(2**31) if seed is None else seed

    def create(number: int) -> Run:
        parent = Run.objects.create(number=number, **fields)
        RunEvent.objects.create(
            run=parent,
            status=RunStatus.NOT_STARTED,
            message=f"Sweep of {spec.max_total_runs} run(s) by {spec.sampling} sampling "
            f"submitted to {target.name}",
        )
        sweep = Sweep.objects.create(run=parent, definition=definition, seed=drawn_with)
        parent_advance_soon(kind=SWEEP, parent_id=sweep.pk)
        return parent

    return run_numbers_take(experiment=resolved.experiment, create=create)


def child_arguments(parent: Run, hyperparameters: dict) -> list[str]:
    """The child's script arguments: the sweep's own, then each sampled `--name value`."""
    sampled = [part for name, value in hyperparameters.items() for part in (name, str(value))]
    return [*parent.arguments, *sampled]


# --- moving a sweep on --------------------------------------------------------------------


def sweeps_advance() -> int:
    """Advance every sweep that is not over yet; how many were looked at."""
    return parents_advance(kind=SWEEP, advance=lambda pk: sweep_advance(sweep_id=pk))


def sweep_advance(*, sweep_id: int) -> None:
    """Stop the children that fall behind, draw new ones up to the limits, end the parent."""
    sweep = Sweep.objects.select_related("run").get(pk=sweep_id)
    parent = sweep.run
    children = list(sweep.children.select_related("run"))
    if parent.status in (RunStatus.CANCEL_REQUESTED, RunStatus.CANCELED):
        _stop_children(parent, children, "The sweep was canceled")
        return
    if parent.is_final:
        return
    spec = parse_sweep(sweep.definition)
    series = selectors.primary_series(sweep, spec.primary_metric_name)
    _stop_early(spec, children, series)
    time_up = _time_up(parent, spec)
    if time_up:
        _stop_children(parent, children, time_up)
    else:
        try:
            _draw_children(sweep, spec, children, series)
        except ServiceError as exc:
            reason = f"Child {len(children) + 1} could not be submitted: {exc}"
            run_transition(
                parent.pk,
                RunStatus.FAILED,
                allowed_from=[RunStatus.NOT_STARTED, RunStatus.RUNNING],
                message=reason,
                error=reason,
            )
            _stop_children(parent, children, "The sweep failed")
            return
    children = list(sweep.children.select_related("run"))
    if all(c.run.is_final for c in children) and (time_up or len(children) >= spec.max_total_runs):
        _finish(sweep, spec, children)


def _stop_early(spec: SweepSpec, children: list[SweepChild], series: dict) -> None:
    running = [c.run_id for c in children if c.run.status == RunStatus.RUNNING]
    stops = early_stops(
        spec.policy,
        goal=spec.primary_metric_goal,
        metric=spec.primary_metric_name,
        series=series,
        running=running,
    )
    for child in children:
        if child.run_id in stops:
            run_cancel(run=child.run, reason=stops[child.run_id])


def _time_up(parent: Run, spec: SweepSpec) -> str:
    if spec.max_duration_minutes is None or parent.started_at is None:
        return ""
    if timezone.now() < parent.started_at + timedelta(minutes=spec.max_duration_minutes):
        return ""
    return f"The sweep reached its max duration of {spec.max_duration_minutes} minute(s)"


def _draw_children(sweep: Sweep, spec: SweepSpec, children: list[SweepChild], series: dict) -> None:
    parent = sweep.run
    running = [c for c in children if not c.run.is_final]
    while len(running) < spec.max_concurrent_runs and len(children) < spec.max_total_runs:
        index = len(children)
        hyperparameters = sample(
            spec, index=index, seed=sweep.seed, trials=_trials(spec, children, series)
        )
        try:
            with transaction.atomic():
                child = SweepChild.objects.create(
                    sweep=sweep,
                    index=index,
                    hyperparameters=hyperparameters,
                    run=_submit_child(parent, hyperparameters),
                )
        except IntegrityError:
            # Another advance of this sweep drew child `index` first.
            return
        children.append(child)
        running.append(child)
        if parent.status == RunStatus.NOT_STARTED:
            run_transition(
                parent.pk,
                RunStatus.RUNNING,
                allowed_from=[RunStatus.NOT_STARTED],
                message="Started its first child run",
                started_at=timezone.now(),
            )
            parent.status = RunStatus.RUNNING


def _submit_child(parent: Run, hyperparameters: dict) -> Run:
    assert parent.target is not None and parent.snapshot is not None
    assert parent.environment is not None
    arguments = child_arguments(parent, hyperparameters)
    return run_submit(
        workspace=parent.workspace,
        user=parent.submitted_by,
        experiment=parent.experiment,
        target=parent.target,
        snapshot=parent.snapshot,
        git=parent.git,
        entry_script=parent.entry_script,
        environment=parent.environment,
        arguments=arguments,
        tags=parent.tags,
        display_name=shlex.join(arguments[len(parent.arguments) :])[:255],
        framework=parent.framework,
        parent=parent,
    )


def _trials(spec: SweepSpec, children: list[SweepChild], series: dict) -> list[Trial]:
    """What bayesian sampling learns from: each child's best primary metric once it ended."""
    if spec.sampling != "bayesian":
        return []
    trials = []
    for child in children:
        values = series.get(child.run_id, [])
        completed = child.run.status == RunStatus.COMPLETED and bool(values)
        value = best_of(values, spec.primary_metric_goal) if completed else None
        trials.append(Trial(child.hyperparameters, value, child.run.is_final))
    return trials


def _stop_children(parent: Run, children: list[SweepChild], reason: str) -> None:
    runs = [child.run for child in children]
    parent_children_stop(kind=SWEEP, parent=parent, children=runs, reason=reason)


def _finish(sweep: Sweep, spec: SweepSpec, children: list[SweepChild]) -> None:
    parent = sweep.run
    statuses = [c.run.status for c in children]
    if children and all(status == RunStatus.FAILED for status in statuses):
        first = children[0].run.error or "see its page"
        reason = f"All {len(children)} child run(s) failed; the first: {first}"
        run_transition(
            parent.pk,
            RunStatus.FAILED,
            allowed_from=[RunStatus.NOT_STARTED, RunStatus.RUNNING],
            message=reason,
            error=reason,
        )
        return
    counts = ", ".join(
        f"{statuses.count(status)} {status.lower()}"
        for status in (RunStatus.COMPLETED, RunStatus.CANCELED, RunStatus.FAILED)
        if status in statuses
    )
    message = f"All {len(children)} child run(s) ended: {counts}"
    best = selectors.best_child(selectors.sweep_children(sweep, spec))
    if best is not None:
        message += (
            f". Best: #{best.child.run.number} ({best.child.run.display_name}) with "
            f"{spec.primary_metric_name} {best.best:.6g}"
        )
    run_transition(
        parent.pk,
        RunStatus.COMPLETED,
        allowed_from=[RunStatus.NOT_STARTED, RunStatus.RUNNING],
        message=message,
    )
