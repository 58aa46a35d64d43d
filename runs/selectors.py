from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import connection
from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce, Now
from django.shortcuts import get_object_or_404

from compute.backends import CLOUD_BACKENDS, RUNNABLE_KINDS
from compute.models import ComputeTarget
from runs.models import Environment, Experiment, Metric, Run, RunEvent, Snapshot, SnapshotBlob
from studio.models import Workspace

# Digests looked up per query: below every database's limit on query parameters.
BLOB_LOOKUP_BATCH = 900

RUN_SORTS = {
    "number": "number",
    "-number": "-number",
    "status": "status",
    "-status": "-status",
    "target": "target_name",
    "-target": "-target_name",
    "submitted": "created_at",
    "-submitted": "-created_at",
    "duration": "duration_s",
    "-duration": "-duration_s",
}


def run_list(
    *,
    workspace: Workspace,
    experiment: Experiment | None = None,
    filters: dict[str, str] | None = None,
    sort: str = "",
) -> QuerySet[Run]:
    """Runs of a workspace (or experiment), filtered by status, target, tag or text, sorted."""
    runs = Run.objects.filter(workspace=workspace).select_related(
        "experiment", "submitted_by", "target"
    )
    if experiment is not None:
        runs = runs.filter(experiment=experiment)
    filters = filters or {}
    if filters.get("status"):
        runs = runs.filter(status=filters["status"])
    if filters.get("target"):
        runs = runs.filter(target_name=filters["target"])
    if filters.get("tag"):
        # The key is data, never part of a lookup: `tags__{key}` would let `x__regex`
        # run a user's regular expression in the database.
        key, _, value = filters["tag"].partition("=")
        runs = runs.filter(tags__has_key=key.strip())
        if value.strip():
            runs = runs.alias(tag_value=KeyTransform(key.strip(), "tags")).filter(
                tag_value=value.strip()
            )
    if filters.get("q"):
        text = filters["q"]
        runs = runs.filter(
            Q(display_name__icontains=text)
            | Q(experiment__name__icontains=text)
            | Q(entry_script__icontains=text)
        )
    if sort in RUN_SORTS:
        if "duration" in sort:
            runs = runs.annotate(
                duration_s=ExpressionWrapper(
                    Coalesce(F("ended_at"), Now()) - F("started_at"), output_field=DurationField()
                )
            )
        runs = runs.order_by(RUN_SORTS[sort], "-pk")
    return runs


def run_get(*, workspace: Workspace, run_id: int) -> Run:
    return get_object_or_404(
        Run.objects.select_related(
            "experiment", "submitted_by", "target", "environment", "snapshot"
        ),
        pk=run_id,
        workspace=workspace,
    )


def run_timeline(run: Run) -> list[RunEvent]:
    return list(run.events.all())


def metric_series(run: Run) -> dict[str, list[tuple[int, float]]]:
    """Each metric of the run as (step, value) points in step order."""
    series: dict[str, list[tuple[int, float]]] = {}
    for name, step, value in run.metrics.order_by("name", "step", "pk").values_list(
        "name", "step", "value"
    ):
        series.setdefault(name, []).append((step, value))
    return series


def metric_names(*, experiment: Experiment) -> list[str]:
    return list(
        Metric.objects.filter(run__experiment=experiment)
        .order_by("name")
        .values_list("name", flat=True)
        .distinct()
    )


def metric_compare(*, runs: Iterable[Run], name: str) -> dict[str, list[tuple[int, float]]]:
    """One metric across runs: run label → (step, value) points."""
    series: dict[str, list[tuple[int, float]]] = {}
    for run in runs:
        points = list(
            run.metrics.filter(name=name).order_by("step", "pk").values_list("step", "value")
        )
        if points:
            series[f"#{run.number}"] = points
    return series


def experiment_get(*, workspace: Workspace, name: str) -> Experiment:
    return get_object_or_404(Experiment, workspace=workspace, name=name)


def snapshot_entries(snapshot: Snapshot | None) -> list[dict]:
    if snapshot is None:
        return []
    return [
        {"path": path, "sha256": sha, "size": size, "executable": executable}
        for path, sha, size, executable in snapshot.manifest
    ]


def snapshot_entry(snapshot: Snapshot | None, path: str) -> dict | None:
    for entry in snapshot_entries(snapshot):
        if entry["path"] == path:
            return entry
    return None


def snapshot_blob_sizes(*, workspace: Workspace, hashes: list[str]) -> dict[str, int]:
    """The size of each of `hashes` the workspace's snapshots hold (its stored files).

    A submit asks about every file of its folder, often 10,000 of them: the query is
    written out because preparing each digest as an ORM lookup value costs more than
    the query itself.
    """
    unique = list(dict.fromkeys(hashes))
    table = connection.ops.quote_name(SnapshotBlob._meta.db_table)
    sizes: dict[str, int] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(unique), BLOB_LOOKUP_BATCH):
            batch = unique[start : start + BLOB_LOOKUP_BATCH]
            cursor.execute(
                f"SELECT sha256, size FROM {table} WHERE workspace_id = %s "  # noqa: S608 - our table; values are parameters  # nosec B608
                f"AND sha256 IN ({', '.join(['%s'] * len(batch))})",
                [workspace.pk, *batch],
            )
            sizes.update(cursor.fetchall())
    return sizes


def snapshot_blobs_missing(*, workspace: Workspace, hashes: list[str]) -> list[str]:
    """The digests of `hashes` the workspace holds no file for: the files a submit must send."""
    stored = snapshot_blob_sizes(workspace=workspace, hashes=hashes)
    return [sha for sha in hashes if sha not in stored]


def runnable_targets(*, workspace: Workspace) -> QuerySet[ComputeTarget]:
    return ComputeTarget.objects.filter(workspace=workspace, kind__in=RUNNABLE_KINDS)


def pipeline_step_targets(*, workspace: Workspace) -> QuerySet[ComputeTarget]:
    """Databricks, Data Lake and Batch targets: they run a submitted script as a pipeline step."""
    return ComputeTarget.objects.filter(workspace=workspace, kind__in=list(CLOUD_BACKENDS))


def experiment_list(*, workspace: Workspace) -> QuerySet[Any]:
    """The workspace's experiments, each with its run_count, latest_status and latest_at."""
    latest = Run.objects.filter(experiment=OuterRef("pk")).order_by("-created_at")
    return (
        Experiment.objects.filter(workspace=workspace)
        .annotate(
            run_count=Count("runs"),
            latest_status=Subquery(latest.values("status")[:1]),
            latest_at=Subquery(latest.values("created_at")[:1]),
        )
        .select_related("created_by")
    )


def environment_list(*, workspace: Workspace) -> QuerySet[Environment]:
    return Environment.objects.filter(Q(workspace=workspace) | Q(workspace__isnull=True))


def run_status_for_user(*, user: User | AnonymousUser, run_id: int) -> str | None:
    """The run's status if `user` is an active member of its workspace, else None."""
    if not user.is_authenticated:
        return None
    return (
        Run.objects.filter(
            pk=run_id,
            workspace__memberships__user=user,
            workspace__memberships__user__is_active=True,
        )
        .values_list("status", flat=True)
        .first()
    )
