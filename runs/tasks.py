from celery import shared_task

from runs import services


@shared_task
def start_run(run_id: int) -> None:
    services.run_start(run_id=run_id)


@shared_task
def runs_dispatch() -> None:
    services.runs_dispatch()
