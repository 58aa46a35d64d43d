from celery import shared_task

from pipelines import services


@shared_task
def pipeline_advance_task(pipeline_id: int) -> None:
    services.pipeline_advance(pipeline_id=pipeline_id)


@shared_task
def pipelines_advance() -> None:
    services.pipelines_advance()
