"""What the run monitor records of a run: metrics, tags, outputs and its stderr tail."""

from __future__ import annotations

import logging
import shlex
import tarfile
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import PurePosixPath
from typing import BinaryIO

from django.db import transaction
from django.db.models import Max

from runs import metric_records
from runs.logs import store as logstore
from runs.models import (
    Metric,
    Run,
    RunEvent,
    RunFile,
)
from runs.snapshots.archives import output_path, shown_name
from runs.snapshots.capture import SnapshotError
from studio.blobs import blob_store_stream

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 20
# How a skipped metric record shows on the run's timeline, and how many times at most.
METRIC_WARNING_PREFIX = "Metric record skipped"
METRIC_WARNINGS_SHOWN = 20


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


def outputs_record(*, run: Run, tar: BinaryIO, node_folder: str = "") -> Collected:
    """Keep the files of a tar of ./outputs and ./logs (a file object, read once from start
    to end; empty when the run wrote neither) as the run's files, straight into blobs.

    Only regular files under a name `output_path` accepts are kept: links,
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
            name = shown_name(member.name)
            if member.issym() or member.islnk():
                target = shown_name(member.linkname)
                collected.left_out.append(f"{name} (a link to {target}: links are not kept)")
                continue
            if not member.isfile():
                collected.left_out.append(f"{name} (not a regular file)")
                continue
            try:
                path = output_path(member.name)
            except SnapshotError as exc:
                collected.left_out.append(f"{name} ({exc})")
                continue
            if node_folder:
                path = PurePosixPath(path.parts[0], node_folder, *path.parts[1:])
            src = archive.extractfile(member)
            if src is None:
                continue
            with src:
                sha, _ = blob_store_stream(src)
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
