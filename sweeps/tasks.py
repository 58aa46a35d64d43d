from celery import shared_task

from sweeps import services


@shared_task
def sweep_advance_task(sweep_id: int) -> None:
    services.sweep_advance(sweep_id=sweep_id)


@shared_task
def sweeps_advance() -> None:
    services.sweeps_advance()
