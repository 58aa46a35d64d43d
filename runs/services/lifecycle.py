"""How a run moves through its statuses: starting, canceling, requeueing, failing.

A run moves through its statuses only by `run_transition`, a conditional
update that also records the step on the run's timeline and tells live
viewers. Starting a run (`run_start`) is a short Celery task: it uploads what
the target lacks and launches the run detached; the run monitor follows it
from there (runs/monitor.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compute.backends import LOG_STREAMS, Backend, BackendError, Handle, LaunchSpec, backend_for
from compute.cluster.scheduler import (
    cluster_counts,
    cluster_wait_reason,
    node_address,
    node_release,
    node_request,
)
from compute.models import (
    ComputeKind,
    ComputeTarget,
    NodeRequest,
)
from compute.sandbox import local_target_problem
from compute.targets.reachability import (
    target_mark_reachable,
    target_mark_unreachable,
    unreachable_limit_words,
    unreachable_too_long,
)
from runs import ranks
from runs.logs import live
from runs.logs import store as logstore
from runs.models import (
    FINAL_STATUSES,
    EnvironmentKind,
    Run,
    RunEvent,
    RunStatus,
)
from runs.run_based import (
    run_based_cluster_release,
)
from runs.snapshots.capture import manifest_text
from studio.blobs import blob_path
from studio.tasks import task_enqueue
from studio.units import human_bytes

log = logging.getLogger(__name__)

# Statuses in which the run's process may exist on its target.
ACTIVE_STATUSES = (
    RunStatus.STARTING,
    RunStatus.RUNNING,
    RunStatus.CANCEL_REQUESTED,
    RunStatus.NOT_RESPONDING,
    RunStatus.FINALIZING,
)


def run_start_soon(*, run_id: int) -> None:
    """Try to start a queued run now (a node it waits for may be free)."""
    task_enqueue("runs.tasks.start_run", run_id)


def run_transition(
    run_id: int, status: str, *, allowed_from: Iterable[str], message: str = "", **fields: Any
) -> bool:
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


def run_reason_change(*, run_id: int, was: str, reason: str, message: str = "") -> bool:
    """Set the run's status reason if it still is `was`; say so on its timeline (`message`,
    or the new reason)."""
    with transaction.atomic():
        status = run_status(run_id)
        changed = Run.objects.filter(pk=run_id, status_reason=was).update(status_reason=reason)
        if not changed or status is None:
            return False
        RunEvent.objects.create(run_id=run_id, status=status, message=message or reason)
        transaction.on_commit(lambda: live.notify_status(run_id, status))
    return True


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
        manifest_file=manifest_text(run.snapshot.manifest),
        local_blob=blob_path,
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


def run_start(*, run_id: int) -> None:
    """Claim a queued run, get it a node, upload what the target lacks, launch it detached.

    While the run waits (no node yet, target unreachable) it stays Queued, and
    its timeline gets an entry only when the reason changes: the dispatcher
    retries every few seconds.
    """
    if not _start_claim(run_id):
        return
    run = Run.objects.select_related("target", "environment", "snapshot").get(pk=run_id)
    target = _start_target(run)
    if target is None:
        return
    nodes = _cluster_nodes(run, target) if target.kind == ComputeKind.CLUSTER else []
    if nodes is None:
        return
    connected = _start_connect(run, target, nodes)
    if connected is None:
        return
    backends, envs = connected
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
    _start_launch(run, target, nodes, backends, envs)


def _start_claim(run_id: int) -> bool:
    """Take the queued run for this start attempt, unless another attempt holds it."""
    now = timezone.now()
    return bool(
        Run.objects.filter(pk=run_id, status=RunStatus.QUEUED)
        .filter(Q(lease_owner="") | Q(lease_expires_at__lt=now))
        .update(
            lease_owner=f"start:{uuid.uuid4().hex}",
            lease_expires_at=now + timedelta(seconds=settings.RUN_START_TIMEOUT_SECONDS),
        )
    )


def _start_target(run: Run) -> ComputeTarget | None:
    """The target the run starts on; None when it cannot start there (the run has failed)."""
    target = run.target
    if target is None:
        run_transition(
            run.pk,
            RunStatus.FAILED,
            allowed_from=[RunStatus.QUEUED],
            error="The compute target was detached before the run started.",
        )
        return None
    if target.kind == ComputeKind.LOCAL and (problem := local_target_problem(run.submitted_by)):
        run_transition(
            run.pk,
            RunStatus.FAILED,
            allowed_from=[RunStatus.QUEUED],
            error=problem,
            message=problem,
        )
        return None
    return target


def _cluster_nodes(run: Run, target: ComputeTarget) -> list | None:
    """The cluster nodes the run gets; None while it waits for them (it is let go then).

    A node freed while this attempt held the run found it taken, so once the run is let
    go it looks once more when the cluster has enough idle nodes.
    """
    nodes = node_request(target=target, run_id=run.pk, count=run.node_count)
    if nodes:
        return nodes
    _cluster_wait(run, target)
    if cluster_counts(target).idle < run.node_count or not _start_claim(run.pk):
        return None
    nodes = node_request(target=target, run_id=run.pk, count=run.node_count)
    if nodes:
        return nodes
    _cluster_wait(run, target)
    return None


def _cluster_wait(run: Run, target: ComputeTarget) -> None:
    wanted = "a node" if run.node_count == 1 else f"{run.node_count} nodes"
    _still_queued(run, f"Waiting for {wanted} of {target.name}: {cluster_wait_reason(target)}")


def _start_connect(
    run: Run, target: ComputeTarget, nodes: list
) -> tuple[list, list[dict[str, str]]] | None:
    """A backend per rank, its root folder made, and each rank's environment; None when
    the target cannot be reached (the run waits) or refuses (the run has failed)."""
    try:
        backends = [backend_for(target, node=node) for node in nodes] or [backend_for(target)]
        for backend in backends:
            backend.ensure_root()
        if target.unreachable_since is not None:
            target_mark_reachable(target_id=target.pk)
        return backends, _rank_environments(nodes, backends[0])
    except BackendError as exc:
        _release_after_failed_start(run.pk, nodes)
        if exc.unreachable:
            _still_queued(run, _unreachable_wait(target, exc.message))
        else:
            run_transition(
                run.pk,
                RunStatus.FAILED,
                allowed_from=[RunStatus.QUEUED],
                error=exc.message,
                message=exc.message,
            )
        return None


def _unreachable_wait(target: ComputeTarget, message: str) -> str:
    """Why a queued run waits for a target that does not answer.

    A queued run has not started anywhere, so it keeps waiting for its machine however
    long that stays away (what a batch queue does); past the limit it says so.
    """
    if not target.is_ssh:
        return f"Target unreachable, retrying: {message}"
    since, _ = target_mark_unreachable(target_id=target.pk, reason=message)
    if not unreachable_too_long(since):
        return f"Target unreachable, retrying: {message}"
    return (
        f"Target unreachable for more than {unreachable_limit_words()} "
        f"(since {timezone.localtime(since):%H:%M}), still waiting: the run starts when "
        f"{target.name} answers again; cancel it to stop waiting. {message}"
    )


def _start_launch(
    run: Run, target: ComputeTarget, nodes: list, backends: list, envs: list[dict[str, str]]
) -> None:
    """Upload what each rank's target lacks, then launch every rank detached."""
    run_id = run.pk
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
    node_release(run_id=run_id)
    run = Run.objects.select_related("target", "submitted_by").filter(pk=run_id).first()
    if run is not None:
        run_based_cluster_release(run=run)


def run_cancel(*, run: Run, user: User | None = None, reason: str = "") -> bool:
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
        task_enqueue("runs.tasks.start_run", run_id)
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
        task_enqueue("runs.tasks.start_run", run_id)
    stale = now - timedelta(seconds=settings.RUN_START_TIMEOUT_SECONDS)
    # Not launched: no handle yet (Preparing), or one with the upload done but no process
    # (Starting). A launched run has its process id or cloud job, and the monitor has it.
    unlaunched = Q(handle__isnull=True) | ~(Q(handle__has_key="pgid") | Q(handle__has_key="job"))
    for run in Run.objects.filter(unlaunched, status__in=[RunStatus.PREPARING, RunStatus.STARTING]):
        last = run.events.order_by("-at").first()
        if last is not None and last.at < stale:
            _back_to_queue(run.pk, "The worker starting the run stopped; trying again")
    for run in Run.objects.filter(unlaunched, status=RunStatus.CANCEL_REQUESTED):
        last = run.events.order_by("-at").first()
        if last is not None and last.at < stale:
            _stopped_before_launch(run.pk)
    return len(queued)
