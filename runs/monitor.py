"""The run monitor: a long-lived process beside the web server and the Celery worker.

It leases active runs (a lease column with an expiry, so when a monitor dies
another one takes its runs over), and follows each leased run in its own
thread: every MONITOR_POLL_SECONDS it reads the run's status and new output
from the target in one round trip, stores the bytes with `runs.logs.store`
(masked, at their offsets), wakes live viewers, records metrics, enforces
cancel and max duration, and at the end moves the run through Finalizing
(outputs, logs, metrics; runs/finalize.py) to Completed, Failed or Canceled.

Storage is the truth: a monitor that starts (or takes a run over) continues
from the stored offsets, so nothing is lost or stored twice.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from compute.backends import LOG_STREAMS, Backend, BackendError, Handle, Poll, backend_for
from compute.selectors import workspace_secrets
from compute.targets.reachability import (
    target_mark_reachable,
    target_mark_unreachable,
    unreachable_limit_words,
    unreachable_too_long,
)
from runs import finalize, linear_regex, metric_records, ranks
from runs.logs import live
from runs.logs import store as logstore
from runs.models import Run, RunStatus
from runs.services.lifecycle import (
    ACTIVE_STATUSES,
    run_cancel,
    run_fail,
    run_reason_change,
    run_transition,
)
from runs.services.records import metrics_record, stderr_tail
from studio.disk import DISK_FULL_ADVICE, disk_full
from studio.health import monitor_heartbeat, redis_client
from studio.secrets import redact_bytes

log = logging.getLogger(__name__)

# Statuses the monitor follows (a run must also have been launched: handle.pgid on a
# machine, handle.job on a cloud service).
FOLLOWED = ACTIVE_STATUSES
STDOUT_SCAN_LIMIT = 4 * 1024 * 1024
# The end of a read that is not a whole line waits this long for the rest of it (at
# most this many bytes of it), so a secret split across two reads is still masked
# whole. What is held back depends on line breaks and time alone, never on the
# secrets: holding back a prefix of a secret would tell the run it guessed right.
PARTIAL_LINE_HOLD_SECONDS = 1.0
PARTIAL_LINE_HOLD_BYTES = 8192
# How often a run whose machine does not answer is tried again: each try is a new
# connection attempt, which need not hit an absent VM several times a second.
AWAY_POLL_SECONDS = 2.0
# The run's status reason while what the monitor read of it cannot be stored.
STORAGE_FULL_REASON = (
    "The run's output and files are not stored yet: "
    + DISK_FULL_ADVICE
    + ". They wait on the target and are stored as soon as there is room."
)


class Monitor:
    def __init__(self, *, owner: str | None = None, poll_seconds: float | None = None) -> None:
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.poll_seconds = settings.MONITOR_POLL_SECONDS if poll_seconds is None else poll_seconds
        self.stopping = threading.Event()
        self.followers: dict[int, threading.Thread] = {}
        self._last_renew = 0.0
        # What each pass saw of this monitor's runs (pk → status, target, handle), read in
        # one query, so a follower re-reads its run only when one of them changed.
        self.leased: dict[int, tuple] = {}

    def stop(self, *_args) -> None:
        self.stopping.set()

    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        client = redis_client(timeout=2.0)
        log.info("run monitor %s started", self.owner)
        next_beat = 0.0
        clock = threading.Event()
        while not self.stopping.is_set():
            now = timezone.now().timestamp()
            if now >= next_beat:
                try:
                    monitor_heartbeat(client)
                except Exception as exc:
                    log.warning("monitor heartbeat failed: %s", exc)
                next_beat = now + settings.MONITOR_HEARTBEAT_SECONDS
            self.tick_safely()
            # New runs are claimed on the next pass: as often as runs are polled.
            clock.wait(min(0.5, self.poll_seconds))
        self.shutdown()
        log.info("run monitor %s stopped", self.owner)

    def tick_safely(self) -> None:
        try:
            self.tick()
        except Exception:
            log.exception("run monitor pass failed")
            close_old_connections()

    def tick(self) -> None:
        """Renew this monitor's leases, claim runs nobody follows, start their followers."""
        now = timezone.now()
        expires = now + timedelta(seconds=settings.MONITOR_LEASE_SECONDS)
        if now.timestamp() - self._last_renew >= settings.MONITOR_LEASE_SECONDS / 3:
            Run.objects.filter(lease_owner=self.owner, status__in=FOLLOWED).update(
                lease_expires_at=expires
            )
            self._last_renew = now.timestamp()
        for run_id, thread in list(self.followers.items()):
            if not thread.is_alive():
                del self.followers[run_id]
        free = Q(lease_owner="") | Q(lease_expires_at__lt=now) | Q(lease_owner=self.owner)
        candidates = (
            Run.objects.filter(status__in=FOLLOWED)
            .filter(Q(handle__has_key="pgid") | Q(handle__has_key="job"))
            .filter(free)
            .values_list("pk", flat=True)
        )
        for run_id in candidates:
            if run_id in self.followers:
                continue
            claimed = (
                Run.objects.filter(pk=run_id)
                .filter(free)
                .update(lease_owner=self.owner, lease_expires_at=expires)
            )
            if claimed:
                thread = threading.Thread(
                    target=self.follow, args=(run_id,), name=f"run-{run_id}", daemon=True
                )
                self.followers[run_id] = thread
                thread.start()
        self.leased = {
            pk: (status, target_id, handle)
            for pk, status, target_id, handle in Run.objects.filter(
                lease_owner=self.owner
            ).values_list("pk", "status", "target_id", "handle")
        }

    def shutdown(self) -> None:
        """Stop following and hand the runs back at once, so another monitor need not wait."""
        self.stopping.set()
        for thread in list(self.followers.values()):
            thread.join(timeout=30)
        Run.objects.filter(lease_owner=self.owner).update(lease_owner="", lease_expires_at=None)

    # --- one run ---------------------------------------------------------------------

    def follow(self, run_id: int) -> None:
        follower = RunFollower(run_id, self)
        try:
            while not self.stopping.is_set():
                if not follower.step():
                    return
                if follower.away is not None:
                    self.stopping.wait(max(self.poll_seconds, AWAY_POLL_SECONDS))
                elif not follower.more:
                    self.stopping.wait(self.poll_seconds)
        except Exception:
            log.exception("following run %s failed; another pass will pick it up", run_id)
            Run.objects.filter(pk=run_id, lease_owner=self.owner).update(lease_owner="")
        finally:
            connection.close()


class RunFollower:
    def __init__(self, run_id: int, monitor: Monitor) -> None:
        self.run_id = run_id
        self.monitor = monitor
        # One backend per rank of the run (one for a one-node run), rank 0 first.
        self.backends: list[Backend] = []
        self.attempt: str | None = None
        self.more = False
        self.patterns: list = []
        # Problems met outside record_metrics, reported on the run with its next records.
        self.skipped: list[str] = []
        # Per source, whether the last read ended inside a line too long to read: the
        # next read starts with its rest, which is skipped too.
        self.partial = {"metrics": False, "stdout": False}
        # What to mask in the run's output: its own workspace's secrets, nothing else.
        self.secrets: frozenset[str] = frozenset()
        # The run as the last plain poll left it: this thread alone writes its offsets and
        # handle, and anything another process changes shows in the monitor's pass.
        self.cached: Run | None = None
        # Per log stream, the unfinished line at the end of the last read, and since when
        # that line has been kept back.
        self.held: dict[str, tuple[bytes, float]] = {}
        # Draining a run that ended: every byte read is the last of its stream.
        self.ending = False
        # (since when, why) the run's machine has not answered, as this follower marked it:
        # the target's row is written only when that changes.
        self.away: tuple | None = None
        # Whether the last step found no room to store what it read.
        self.storage_full = False

    def load(self) -> Run | None:
        run = self.cached
        self.cached = None
        if run is not None and self.monitor.leased.get(self.run_id) == (
            run.status,
            run.target_id,
            run.handle,
        ):
            return run
        return Run.objects.select_related("target").filter(pk=self.run_id).first()

    def step(self) -> bool:
        """One look at the run; False when this monitor is done with it.

        What cannot be stored for want of space is not recorded as read either: the
        run says so, and the next look reads it again from the target.
        """
        try:
            return self.look()
        except OSError as exc:
            if not disk_full(exc):
                raise
            self.storage_stopped(exc)
            return True

    def storage_stopped(self, exc: OSError) -> None:
        self.more = False
        self.cached = None
        if self.storage_full:
            return
        self.storage_full = True
        log.warning("run %s: its output is not stored: %s", self.run_id, exc)
        try:
            run_reason_change(run_id=self.run_id, was="", reason=STORAGE_FULL_REASON)
        except DatabaseError as db_exc:  # SQLite in the same full DATA_DIR
            log.warning("run %s: the full disk is not noted on the run: %s", self.run_id, db_exc)

    def storage_resumed(self, run: Run) -> None:
        """Say on the run that what waited is stored (a new monitor knows from its reason)."""
        if not self.storage_full and run.status_reason != STORAGE_FULL_REASON:
            return
        self.storage_full = False
        run.status_reason = ""
        if run_reason_change(
            run_id=run.pk,
            was=STORAGE_FULL_REASON,
            reason="",
            message="There is room in DATA_DIR again: the output that waited is stored",
        ):
            log.info("run %s: its output is stored again", run.pk)

    def look(self) -> bool:
        self.more = False
        run = self.load()
        if run is None or run.lease_owner != self.monitor.owner or run.status not in FOLLOWED:
            return False
        if run.target is None:
            run_fail(run_id=run.pk, reason="The compute target was detached.")
            return False
        handles = ranks.handles(run)
        attempt = handles[0].attempt if handles else None
        if not self.backends or attempt != self.attempt:
            self.attempt = attempt
            self.secrets = workspace_secrets(workspace_id=run.workspace_id)
            try:
                self.backends = [backend_for(run.target, handle=handle) for handle in handles]
            except BackendError as exc:
                run_fail(run_id=run.pk, reason=exc.message)
                return False
            self.patterns = []
            for text in run.metric_patterns:
                try:
                    self.patterns.append(linear_regex.compile(text))
                except linear_regex.PatternError as exc:
                    self.skipped.append(f"the metric pattern {text!r} is not used: {exc}")
        if run.status == RunStatus.CANCEL_REQUESTED:
            return self.cancel(run)
        if run.status == RunStatus.FINALIZING:
            return self.finish(run, None)
        if self.over_time(run):
            return True
        try:
            poll = self.read(run)
        except BackendError as exc:
            if not exc.unreachable:
                run_fail(run_id=run.pk, reason=exc.message)
                return False
            if self.away_too_long(run, exc.message):
                return False
            if run_transition(
                run.pk,
                RunStatus.NOT_RESPONDING,
                allowed_from=[RunStatus.STARTING, RunStatus.RUNNING],
                message=exc.message,
                status_reason=exc.message,
            ):
                log.warning("run %s not responding: %s", run.pk, exc.message)
            return True
        self.answered(run)
        if run.status == RunStatus.NOT_RESPONDING:
            run_transition(
                run.pk,
                RunStatus.RUNNING if poll.started else RunStatus.STARTING,
                allowed_from=[RunStatus.NOT_RESPONDING],
                message="The target answers again",
                status_reason="",
            )
        elif run.status == RunStatus.STARTING and poll.started:
            run_transition(
                run.pk,
                RunStatus.RUNNING,
                allowed_from=[RunStatus.STARTING],
                started_at=timezone.now(),
            )
        elif poll.state not in ("exited", "lost"):
            self.cached = run
        if poll.state in ("exited", "lost"):
            return self.finish(run, poll)
        return True

    def away_too_long(self, run: Run, reason: str) -> bool:
        """Mark the run's machine Unreachable; fail the run once it stayed away past the limit."""
        target = run.target
        if target is None or not target.is_ssh:
            return False
        if self.away is None or self.away[1] != reason:
            self.away = target_mark_unreachable(target_id=target.pk, reason=reason)
        since, shown = self.away
        if not unreachable_too_long(since):
            return False
        return run_fail(
            run_id=run.pk,
            reason=f"The target {target.name} has not answered for "
            f"{unreachable_limit_words()} (since {timezone.localtime(since):%H:%M}): {shown} "
            "The run's processes may still be running on it.",
        )

    def answered(self, run: Run) -> None:
        """The run's machine answered: clear its Unreachable mark, if it has one."""
        target = run.target
        if target is not None and (self.away is not None or target.unreachable_since is not None):
            target_mark_reachable(target_id=target.pk)
            target.unreachable_since = None
            self.away = None

    def each_rank(self, run: Run) -> finalize.RankBackends:
        """(rank, its backend, its handle) for every process of the run."""
        handles = ranks.handles(run)
        return [
            (rank, backend, handle)
            for rank, (backend, handle) in enumerate(zip(self.backends, handles, strict=True))
        ]

    def over_time(self, run: Run) -> bool:
        limit = run.max_duration_seconds
        if not limit or run.started_at is None:
            return False
        if timezone.now() - run.started_at <= timedelta(seconds=limit):
            return False
        run_cancel(run=run, reason=f"Stopped after the maximum run duration of {limit} s")
        return True

    # --- reading ---------------------------------------------------------------------

    def offsets(self, run: Run, rank: int, handle: Handle) -> dict[str, int]:
        """Where to read on the target: how far storage has this attempt's files."""
        result = {}
        for stream in LOG_STREAMS:
            name = ranks.stream_name(rank, stream)
            read = logstore.source_read(run.pk, name, handle.attempt)
            if read is None:
                # Nothing stored from this attempt yet: it starts where the handle says.
                target_at, stored_at = handle.log_offsets.get(stream, (0, 0))
                read = target_at + max(0, logstore.size(run.pk, name) - stored_at)
            result[stream] = read
        # Metrics come from the driver.
        result["metrics"] = run.metrics_file_offset if rank == 0 else 1 << 62
        return result

    def read(self, run: Run) -> Poll:
        """One poll of every rank: store and announce new output; the run's state."""
        polls = []
        for rank, backend, handle in self.each_rank(run):
            offsets = self.offsets(run, rank, handle)
            poll = backend.poll(handle, offsets)
            poll.rank = rank
            for stream in LOG_STREAMS:
                data = poll.chunks.get(stream, b"")
                if data:
                    self.store(run, rank, stream, data, offsets[stream], handle)
                if len(data) >= 1 << 20:
                    self.more = True
            polls.append(poll)
            if rank == 0:
                metrics_offset = offsets["metrics"]
        if not self.ending:  # the last output waits for the files: finish() tells
            self.storage_resumed(run)
        self.record_metrics(run, metrics_offset, polls[0].chunks.get("metrics", b""), final=False)
        return ranks.combined(polls)

    def store(
        self, run: Run, rank: int, stream: str, data: bytes, target_at: int, handle: Handle
    ) -> None:
        """Store new output masked, unless another follower of the run stored it first."""
        name = ranks.stream_name(rank, stream)
        line_end = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        held = min(len(data) - line_end, PARTIAL_LINE_HOLD_BYTES)
        before, since = self.held.get(name, (b"", 0.0))
        now = time.monotonic()
        # A read starts where the held bytes begin: with no line break in it, the line
        # held back last time has only grown.
        if not (before and line_end == 0 and data.startswith(before)):
            since = now
        if held and (self.ending or now - since >= PARTIAL_LINE_HOLD_SECONDS):
            # The run is over, or the line stayed unfinished for a while: it is output.
            held = 0
        if held:
            self.held[name] = (data[len(data) - held :], since)
        else:
            self.held.pop(name, None)
        data = data[: len(data) - held]
        if not data:
            return
        masked = redact_bytes(data, self.secrets)
        stored_at = logstore.append_from_source(
            run.pk,
            name,
            masked,
            source=handle.attempt,
            read_from=target_at,
            read_to=target_at + len(data),
        )
        if stored_at is not None:
            live.notify_log(run.pk, name, stored_at, masked)

    def record_metrics(self, run: Run, file_offset: int, chunk: bytes, *, final: bool) -> None:
        records: list[dict] = []
        skipped, self.skipped = self.skipped, []
        new_file_offset = None
        complete = chunk[: chunk.rfind(b"\n") + 1]
        if not complete and len(chunk) > metric_records.MAX_LINE_BYTES:
            # A line longer than any record: skip what there is, and the rest when it comes.
            complete = chunk
        if complete:
            at = file_offset
            for index, line in enumerate(complete.split(b"\n")):
                if line.strip() and not (index == 0 and self.partial["metrics"]):
                    problem = metric_records.file_line_read(line, records)
                    if problem:
                        skipped.append(f"the metrics file line at byte {at} {problem}")
                at += len(line) + 1
            self.partial["metrics"] = not complete.endswith(b"\n")
            new_file_offset = file_offset + len(complete)
        new_stdout_offset = None
        if self.patterns:
            start = run.metrics_stdout_offset
            stored, _ = logstore.read(run.pk, "stdout", start, STDOUT_SCAN_LIMIT)
            usable = stored if final else stored[: stored.rfind(b"\n") + 1]
            if not usable and len(stored) >= STDOUT_SCAN_LIMIT:
                usable = stored
            if usable:
                self.match_stdout(usable, records, skipped)
                new_stdout_offset = start + len(usable)
        if records or skipped or new_file_offset is not None or new_stdout_offset is not None:
            metrics_record(
                run=run,
                records=records,
                file_offset=new_file_offset,
                stdout_offset=new_stdout_offset,
                skipped=skipped,
            )
            if new_file_offset is not None:
                run.metrics_file_offset = new_file_offset
            if new_stdout_offset is not None:
                run.metrics_stdout_offset = new_stdout_offset

    def match_stdout(self, usable: bytes, records: list[dict], skipped: list[str]) -> None:
        """Records the metric patterns find in whole lines of stdout."""
        lines = usable.split(b"\n")
        if usable.endswith(b"\n"):
            lines.pop()
        if self.partial["stdout"]:
            lines = lines[1:]
        self.partial["stdout"] = not usable.endswith(b"\n")
        metric_records.stdout_lines_match(lines, self.patterns, records, skipped)

    def drain(self, run: Run):
        """Read until the target has nothing more to give; returns the last poll."""
        self.ending = True
        for _ in range(1000):
            run.refresh_from_db(fields=["handle", "metrics_file_offset", "metrics_stdout_offset"])
            poll = self.read(run)
            if not any(poll.chunks.values()):
                self.record_metrics(run, run.metrics_file_offset, b"", final=True)
                return poll
        return poll

    # --- ending ----------------------------------------------------------------------

    def finish(self, run: Run, poll: Poll | None) -> bool:
        run_transition(
            run.pk,
            RunStatus.FINALIZING,
            allowed_from=[RunStatus.STARTING, RunStatus.RUNNING, RunStatus.NOT_RESPONDING],
            message="Collecting outputs, logs and metrics",
        )
        try:
            if len(self.backends) > 1:
                # One rank ended the run: the others stop too.
                self.stop_ranks(run)
            drained = self.drain(run)
            collected = finalize.outputs_collect(run, self.each_rank(run))
            self.storage_resumed(run)
        except BackendError as exc:
            if exc.unreachable:
                if self.away_too_long(run, exc.message):
                    return False
                Run.objects.filter(pk=run.pk).update(status_reason=exc.message)
                return True
            run_fail(run_id=run.pk, reason=exc.message)
            return False
        if poll is None or len(self.backends) == 1:
            poll = drained
        finalize.run_conclude(run, poll, collected, len(self.backends))
        finalize.run_cleanup(run, self.each_rank(run))
        return False

    def cancel(self, run: Run) -> bool:
        try:
            left = self.stop_ranks(run)
        except BackendError as exc:
            if exc.unreachable and self.away_too_long(run, exc.message):
                return False
            Run.objects.filter(pk=run.pk).update(status_reason=f"Cancel pending: {exc.message}")
            return True
        if left:
            Run.objects.filter(pk=run.pk).update(
                status_reason=f"{left} process(es) of the run still running after SIGKILL; "
                "trying again"
            )
            return True
        left_out = ""
        try:
            self.drain(run)
            collected = finalize.outputs_collect(run, self.each_rank(run))
            self.storage_resumed(run)
            if collected.left_out:
                left_out = f"; {collected.summary()}"
        except BackendError as exc:
            log.warning("run %s: outputs of the canceled run not collected: %s", run.pk, exc)
        run_transition(
            run.pk,
            RunStatus.CANCELED,
            allowed_from=[RunStatus.CANCEL_REQUESTED],
            message=f"{run.cancel_reason or 'Canceled'}; no process of the run is left on "
            f"{run.target_name}{left_out}",
            status_reason="",
            stderr_tail=stderr_tail(run.pk),
        )
        finalize.run_cleanup(run, self.each_rank(run))
        return False

    def stop_ranks(self, run: Run) -> int:
        """SIGTERM, grace, SIGKILL on every rank; the processes left (0: all gone)."""
        grace = settings.RUN_CANCEL_GRACE_SECONDS
        return sum(backend.cancel(handle, grace) for _, backend, handle in self.each_rank(run))
