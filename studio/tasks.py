"""Queueing a Celery task from a service."""

import logging

from celery import signature
from django.db import transaction
from kombu.exceptions import OperationalError

from studio.errors import ServiceError

log = logging.getLogger(__name__)

QUEUE_DOWN = (
    "Trainyard's task queue (Redis) is not answering, so this could not be started. "
    "Try again in a minute; if it goes on, see /healthz."
)


def task_enqueue(name: str, *args: object, redispatched: bool = True) -> None:
    """Queue the task `name` (its dotted Celery name) with `args` once the transaction commits.

    The task goes by its name, so a service never imports the tasks module that imports
    the services; each app's tasks module is loaded when Django starts (its AppConfig.ready),
    so the name resolves in every process and tests run the task eagerly.

    While Redis is away the task cannot be queued. A `redispatched` task is one a periodic
    task does too (runs_dispatch starts queued runs, the advance tasks move pipelines and
    sweeps on, the autoscaler scales clusters): the request succeeds, and the work is done
    once Redis is back. Any other task answers a ServiceError (503) that says to try again.
    """

    def send() -> None:
        try:
            signature(name, args=args).delay()
        except OperationalError as exc:
            if not redispatched:
                raise ServiceError(QUEUE_DOWN, code="queue_unavailable", status=503) from exc
            log.warning("task %s%r not queued, the beat does it later: %s", name, args, exc)

    transaction.on_commit(send)
