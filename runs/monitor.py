"""The run monitor: a long-lived process beside the web server and the Celery worker.

It leases active runs (a lease column with an expiry, so when a monitor dies
another one takes its runs over), and follows each leased run in its own
thread: every MONITOR_POLL_SECONDS it reads the run's status and new output
from the target in one round trip, stores the bytes with `runs.logstore`
(masked, at their offsets), wakes live viewers, records metrics, enforces
cancel and max duration, and at the end moves the run through Finalizing
(outputs, logs, metrics) to Completed, Failed or Canceled.

Storage is the truth: a monitor that starts (or takes a run over) continues
from the stored offsets, so nothing is lost or stored twice.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import socket
import threading
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from compute.backends import LOG_STREAMS, BackendError, backend_for
from compute.backends.posix import PosixBackend
from runs import live, logstore, services
from runs.models import Run, RunStatus
from studio.health import monitor_heartbeat, redis_client
from studio.secrets import redact_bytes

log = logging.getLogger(__name__)

# Statuses the monitor follows (a run must also have been launched: handle.pgid on a
# machine, handle.job on a cloud service).
FOLLOWED = services.ACTIVE_STATUSES
STDOUT_SCAN_LIMIT = 4 * 1024 * 1024


def handle_of(run: Run) -> dict:
    """The handle of a launched run (the monitor follows no other)."""
    assert run.handle is not None
    return run.handle


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
                if not follower.more:
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
        self._backend: PosixBackend | None = None
        self.attempt = None
        self.more = False
        self.patterns: list[re.Pattern] = []
        # The run as the last plain poll left it: this thread alone writes its offsets and
        # handle, and anything another process changes shows in the monitor's pass.
        self.cached: Run | None = None

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
        """One look at the run; False when this monitor is done with it."""
        self.more = False
        run = self.load()
        if run is None or run.lease_owner != self.monitor.owner or run.status not in FOLLOWED:
            return False
        if run.target is None:
            services.run_fail(run_id=run.pk, reason="The compute target was detached.")
            return False
        attempt = (run.handle or {}).get("attempt")
        if self._backend is None or attempt != self.attempt:
            self.attempt = attempt
            try:
                self._backend = backend_for(run.target, handle=run.handle)
            except BackendError as exc:
                services.run_fail(run_id=run.pk, reason=exc.message)
                return False
            self.patterns = [re.compile(p) for p in run.metric_patterns]
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
                services.run_fail(run_id=run.pk, reason=exc.message)
                return False
            if services.run_transition(
                run.pk,
                RunStatus.NOT_RESPONDING,
                allowed_from=[RunStatus.STARTING, RunStatus.RUNNING],
                message=exc.message,
                status_reason=exc.message,
            ):
                log.warning("run %s not responding: %s", run.pk, exc.message)
            return True
        if run.status == RunStatus.NOT_RESPONDING:
            services.run_transition(
                run.pk,
                RunStatus.RUNNING if poll.started else RunStatus.STARTING,
                allowed_from=[RunStatus.NOT_RESPONDING],
                message="The target answers again",
                status_reason="",
            )
        elif run.status == RunStatus.STARTING and poll.started:
            services.run_transition(
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

    @property
    def backend(self) -> PosixBackend:
        assert self._backend is not None
        return self._backend

    def over_time(self, run: Run) -> bool:
        limit = run.max_duration_seconds
        if not limit or run.started_at is None:
            return False
        if timezone.now() - run.started_at <= timedelta(seconds=limit):
            return False
        services.run_cancel(run=run, reason=f"Stopped after the maximum run duration of {limit} s")
        return True

    # --- reading ---------------------------------------------------------------------

    def offsets(self, run: Run) -> dict[str, int]:
        """Where to read on the target: what is stored, mapped back through the handle."""
        handle = run.handle or {}
        result = {}
        for stream in LOG_STREAMS:
            target_at, stored_at = handle.get("log_offsets", {}).get(stream, [0, 0])
            result[stream] = target_at + max(0, logstore.size(run.pk, stream) - stored_at)
        result["metrics"] = run.metrics_file_offset
        return result

    def read(self, run: Run):
        offsets = self.offsets(run)
        poll = self.backend.poll(handle_of(run), offsets)
        handle_changed = False
        for stream in LOG_STREAMS:
            data = poll.chunks.get(stream, b"")
            if not data:
                continue
            stored_at = logstore.size(run.pk, stream)
            masked = redact_bytes(data)
            size = logstore.append(run.pk, stream, stored_at, masked)
            live.notify_log(run.pk, stream, stored_at, masked)
            if len(masked) != len(data):
                # Masking changed the length: remember where target and storage now meet.
                assert run.handle is not None
                run.handle["log_offsets"][stream] = [offsets[stream] + len(data), size]
                handle_changed = True
            if len(data) >= 1 << 20:
                self.more = True
        if handle_changed:
            Run.objects.filter(pk=run.pk).update(handle=run.handle)
        self.record_metrics(run, offsets["metrics"], poll.chunks.get("metrics", b""), final=False)
        return poll

    def record_metrics(self, run: Run, file_offset: int, chunk: bytes, *, final: bool) -> None:
        records: list[dict] = []
        new_file_offset = None
        complete = chunk[: chunk.rfind(b"\n") + 1]
        if complete:
            for line in complete.splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
            new_file_offset = file_offset + len(complete)
        new_stdout_offset = None
        if self.patterns:
            start = run.metrics_stdout_offset
            stored, _ = logstore.read(run.pk, "stdout", start, STDOUT_SCAN_LIMIT)
            usable = stored if final else stored[: stored.rfind(b"\n") + 1]
            if usable:
                for text in usable.decode(errors="replace").splitlines():
                    for pattern in self.patterns:
                        match = pattern.search(text)
                        if not match:
                            continue
                        groups = match.groupdict()
                        step = groups.pop("step", None)
                        for name, value in groups.items():
                            if value is None:
                                continue
                            record = {"metric": name, "value": value}
                            if step is not None and step.isdigit():
                                record["step"] = int(step)
                            records.append(record)
                new_stdout_offset = start + len(usable)
        if records or new_file_offset is not None or new_stdout_offset is not None:
            services.metrics_record(
                run=run,
                records=records,
                file_offset=new_file_offset,
                stdout_offset=new_stdout_offset,
            )
            if new_file_offset is not None:
                run.metrics_file_offset = new_file_offset
            if new_stdout_offset is not None:
                run.metrics_stdout_offset = new_stdout_offset

    def drain(self, run: Run):
        """Read until the target has nothing more to give; returns the last poll."""
        for _ in range(1000):
            run.refresh_from_db(fields=["handle", "metrics_file_offset", "metrics_stdout_offset"])
            poll = self.read(run)
            if not any(poll.chunks.values()):
                self.record_metrics(run, run.metrics_file_offset, b"", final=True)
                return poll
        return poll

    # --- ending ----------------------------------------------------------------------

    def finish(self, run: Run, poll) -> bool:
        services.run_transition(
            run.pk,
            RunStatus.FINALIZING,
            allowed_from=[RunStatus.STARTING, RunStatus.RUNNING, RunStatus.NOT_RESPONDING],
            message="Collecting outputs, logs and metrics",
        )
        try:
            poll = self.drain(run)
            files = services.outputs_record(run=run, tar_data=self.backend.collect(handle_of(run)))
        except BackendError as exc:
            if exc.unreachable:
                Run.objects.filter(pk=run.pk).update(status_reason=exc.message)
                return True
            services.run_fail(run_id=run.pk, reason=exc.message)
            return False
        tail = services.stderr_tail(run.pk)
        collected = f"{files} output file(s) collected"
        if poll.state == "lost":
            reason = (
                f"The run's process disappeared from {run.target_name} without an exit code "
                "(was the machine restarted, or the process killed from outside?)"
            )
            services.run_transition(
                run.pk,
                RunStatus.FAILED,
                allowed_from=[RunStatus.FINALIZING],
                error=reason,
                message=reason,
                stderr_tail=tail,
            )
        elif not poll.started:
            prepare = logstore.read(
                run.pk, "prepare", max(0, logstore.size(run.pk, "prepare") - 4096)
            )
            last = prepare[0].decode(errors="replace").strip().splitlines()[-5:]
            reason = f"Preparing the run failed (exit code {poll.exit_code}): " + " / ".join(last)
            services.run_transition(
                run.pk,
                RunStatus.FAILED,
                allowed_from=[RunStatus.FINALIZING],
                error=reason,
                message=reason,
                exit_code=poll.exit_code,
                stderr_tail=tail,
            )
        elif poll.exit_code == 0:
            services.run_transition(
                run.pk,
                RunStatus.COMPLETED,
                allowed_from=[RunStatus.FINALIZING],
                message=collected,
                exit_code=0,
                stderr_tail=tail,
            )
        else:
            reason = f"The script exited with code {poll.exit_code}"
            services.run_transition(
                run.pk,
                RunStatus.FAILED,
                allowed_from=[RunStatus.FINALIZING],
                message=f"{reason}; {collected}",
                error=reason,
                exit_code=poll.exit_code,
                stderr_tail=tail,
            )
        self.release(run)
        return False

    def cancel(self, run: Run) -> bool:
        try:
            left = self.backend.cancel(handle_of(run), settings.RUN_CANCEL_GRACE_SECONDS)
        except BackendError as exc:
            Run.objects.filter(pk=run.pk).update(status_reason=f"Cancel pending: {exc.message}")
            return True
        if left:
            Run.objects.filter(pk=run.pk).update(
                status_reason=f"{left} process(es) of the run still running after SIGKILL; "
                "trying again"
            )
            return True
        try:
            self.drain(run)
            services.outputs_record(run=run, tar_data=self.backend.collect(handle_of(run)))
        except BackendError as exc:
            log.warning("run %s: outputs of the canceled run not collected: %s", run.pk, exc)
        services.run_transition(
            run.pk,
            RunStatus.CANCELED,
            allowed_from=[RunStatus.CANCEL_REQUESTED],
            message=f"{run.cancel_reason or 'Canceled'}; no process of the run is left on "
            f"{run.target_name}",
            status_reason="",
            stderr_tail=services.stderr_tail(run.pk),
        )
        self.release(run)
        return False

    def release(self, run: Run) -> None:
        services.run_release_node(run_id=run.pk)
        try:
            self.backend.cleanup(handle_of(run))
        except BackendError as exc:
            log.warning("run %s: work directory not removed: %s", run.pk, exc)
