"""How the run monitor ends a run whose processes are done: keep every rank's outputs,
give the run its final status and why, and clean up after it on the target.

The monitor (runs/monitor.py) decides when a run ends and reads its last output; this
module does what follows, with each rank's backend and handle.
"""

from __future__ import annotations

import logging
import tempfile

from django.conf import settings

from compute.backends import Backend, BackendError, Handle, Poll
from runs import ranks
from runs.logs import store as logstore
from runs.models import Run, RunStatus
from runs.services.lifecycle import run_release_node, run_transition
from runs.services.records import Collected, outputs_record, stderr_tail
from runs.snapshots.archives import output_path, shown_name
from runs.snapshots.capture import SnapshotError

log = logging.getLogger(__name__)

# Each process of a run: its rank, its backend and its handle.
RankBackends = list[tuple[int, Backend, Handle]]


def refused(name: str) -> str:
    """Why a file a target or service reports is not kept among the run's outputs, as the
    run's timeline lists it ("" when it is kept)."""
    try:
        output_path(name)
    except SnapshotError as exc:
        return f"{shown_name(name)} ({exc})"
    return ""


def outputs_collect(run: Run, rank_backends: RankBackends) -> Collected:
    """Keep every rank's ./outputs and ./logs (another rank's under its node's folder).

    Each rank's tar passes through a temporary file, never through memory whole: a
    run's outputs can be gigabytes.
    """
    collected = Collected()
    for rank, backend, handle in rank_backends:
        with tempfile.TemporaryFile(dir=settings.DATA_DIR, prefix="collect-") as tar:
            left_out = backend.collect(handle, tar, refused)
            tar.seek(0)
            collected.add(outputs_record(run=run, tar=tar, node_folder=ranks.source(rank)))
            collected.left_out += left_out
    if collected.left_out:
        log.warning("run %s: %s", run.pk, collected.summary())
    return collected


def run_conclude(run: Run, poll: Poll, collected: Collected, count: int) -> None:
    """Move a Finalizing run to Completed or Failed, saying why, from the poll that ended it
    (on a multi-node run of `count` ranks, the poll of the rank that ended it)."""
    where = ranks.where(poll.rank, count)
    tail = stderr_tail(run.pk)
    summary = collected.summary()
    if poll.state == "lost":
        reason = (
            f"The run's process disappeared from {run.target_name}{where} without an exit "
            "code (was the machine restarted, or the process killed from outside?)"
        )
        run_transition(
            run.pk,
            RunStatus.FAILED,
            allowed_from=[RunStatus.FINALIZING],
            error=reason,
            message=reason,
            stderr_tail=tail,
        )
    elif not poll.started:
        stream = ranks.stream_name(poll.rank, "prepare")
        prepare = logstore.read(run.pk, stream, max(0, logstore.size(run.pk, stream) - 4096))
        last = prepare[0].decode(errors="replace").strip().splitlines()[-5:]
        reason = f"Preparing the run failed{where} (exit code {poll.exit_code}): " + " / ".join(
            last
        )
        run_transition(
            run.pk,
            RunStatus.FAILED,
            allowed_from=[RunStatus.FINALIZING],
            error=reason,
            message=reason,
            exit_code=poll.exit_code,
            stderr_tail=tail,
        )
    elif poll.exit_code == 0:
        run_transition(
            run.pk,
            RunStatus.COMPLETED,
            allowed_from=[RunStatus.FINALIZING],
            message=summary,
            exit_code=0,
            stderr_tail=tail,
        )
    else:
        reason = f"The script exited with code {poll.exit_code}{where}"
        run_transition(
            run.pk,
            RunStatus.FAILED,
            allowed_from=[RunStatus.FINALIZING],
            message=f"{reason}; {summary}",
            error=reason,
            exit_code=poll.exit_code,
            stderr_tail=tail,
        )


def run_cleanup(run: Run, rank_backends: RankBackends) -> None:
    """Remove the run's directories, then let go of its nodes."""
    for _, backend, handle in rank_backends:
        try:
            backend.cleanup(handle)
        except BackendError as exc:
            log.warning("run %s: work directory not removed: %s", run.pk, exc)
    run_release_node(run_id=run.pk)
