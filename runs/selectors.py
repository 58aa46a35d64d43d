from django.db.models import Count, OuterRef, Q, Subquery

from runs.models import Environment, Experiment, Run


def run_list(*, workspace, experiment=None):
    runs = Run.objects.filter(workspace=workspace).select_related(
        "experiment", "submitted_by", "target"
    )
    if experiment is not None:
        runs = runs.filter(experiment=experiment)
    return runs


def experiment_list(*, workspace):
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


def environment_list(*, workspace):
    return Environment.objects.filter(Q(workspace=workspace) | Q(workspace__isnull=True))


def run_status_for_user(*, user, run_id: int) -> str | None:
    """The run's status if `user` is a member of its workspace, else None."""
    if not user.is_authenticated:
        return None
    return (
        Run.objects.filter(pk=run_id, workspace__memberships__user=user)
        .values_list("status", flat=True)
        .first()
    )
