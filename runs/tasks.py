from celery import shared_task

from runs.services import lifecycle


@shared_task
def start_run(run_id: int) -> None:
    lifecycle.run_start(run_id=run_id)


@shared_task
def runs_dispatch() -> None:
    lifecycle.runs_dispatch()
