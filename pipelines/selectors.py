from pipelines.models import Pipeline, PipelineStep


def step_settings(run_id: int) -> dict:
    """The service settings of the pipeline step run `run_id` ({} for a run that is no step)."""
    settings = PipelineStep.objects.filter(run_id=run_id).values_list("settings", flat=True)
    return dict(settings.first() or {})


def pipeline_get(*, workspace, run_id: int) -> Pipeline:
    # By the run's own key (run__pk, not the run_id column): an id too big for the database
    # is then simply not found, instead of an overflow error.
    return Pipeline.objects.select_related(
        "run", "run__experiment", "run__submitted_by", "run__snapshot"
    ).get(run__workspace=workspace, run__pk=run_id)


def pipeline_steps(pipeline: Pipeline) -> list[PipelineStep]:
    return list(pipeline.steps.select_related("run", "run__target"))


def pipeline_list(*, workspace):
    return (
        Pipeline.objects.filter(run__workspace=workspace)
        .select_related("run", "run__experiment", "run__submitted_by")
        .order_by("-run__created_at")
    )
