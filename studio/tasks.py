"""Queueing a Celery task from a service."""

from celery import signature
from django.db import transaction


def task_enqueue(name: str, *args: object) -> None:
    """Queue the task `name` (its dotted Celery name) with `args` once the transaction commits.

    The task goes by its name, so a service never imports the tasks module that imports
    the services; each app's tasks module is loaded when Django starts (its AppConfig.ready),
    so the name resolves in every process and tests run the task eagerly."""
    transaction.on_commit(signature(name, args=args).delay)
