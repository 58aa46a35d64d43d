from pipelines.models import Pipeline, PipelineStep


def step_settings(run_id: int) -> dict:
    """The service settings of the pipeline step run `run_id` ({} for a run that is no step)."""
    settings = PipelineStep.objects.filter(run_id=run_id).values_list("settings", flat=True)
    return dict(settings.first() or {})


def pipeline_steps(pipeline: Pipeline) -> list[PipelineStep]:
    return list(pipeline.steps.select_related("run", "run__target"))
