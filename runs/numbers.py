"""Run numbers: each experiment numbers its runs 1, 2, 3… in the order they were submitted.

The next number is read from the experiment's highest; two submits that read it at once
both try to take it, and the database's unique (experiment, number) turns one of them away.
`run_numbers_take` creates the runs again, with the numbers that are free by then.

It sits below the run services and the parent-run layer (runs.parents) that both take
numbers, so that neither has to import the other for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import IntegrityError, transaction
from django.db.models import Max

from runs.models import Experiment, Run
from studio.errors import ServiceError

T = TypeVar("T")

# Submits that lose this many races in a row are told to try again.
ATTEMPTS = 5


def run_numbers_take(*, experiment: Experiment, create: Callable[[int], T]) -> T:
    """Call `create(first)` in a transaction, `first` being the experiment's next free run
    number (a parent that also creates its children numbers them first + 1, first + 2…);
    again with fresh numbers when a concurrent submit took them. What `create` asks of
    `transaction.on_commit` runs only for the attempt that commits."""
    for _attempt in range(ATTEMPTS):
        try:
            with transaction.atomic():
                highest = Run.objects.filter(experiment=experiment).aggregate(n=Max("number"))
                return create((highest["n"] or 0) + 1)
        except IntegrityError:
            continue
    raise ServiceError("Too many runs were submitted to this experiment at once: try again.")
