"""Experiments: creating them, and the names they may have."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from runs.models import (
    Experiment,
)
from studio.errors import ServiceError
from studio.models import Workspace

EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,249}")


def experiment_name_problem(name: str) -> str:
    if not EXPERIMENT_NAME.fullmatch(name or ""):
        return (
            "An experiment name has 1–250 characters: letters, digits, dashes and underscores, "
            "starting with a letter or digit (e.g. mnist-baseline)."
        )
    return ""


def experiment_create(
    *, workspace: Workspace, name: str, user: User, description: str = ""
) -> Experiment:
    problem = experiment_name_problem(name)
    if problem:
        raise ServiceError(problem, field="name")
    try:
        with transaction.atomic():
            return Experiment.objects.create(
                workspace=workspace, name=name, description=description, created_by=user
            )
    except IntegrityError:
        raise ServiceError(
            f"An experiment named {name} already exists in this workspace: open it, "
            "or choose another name.",
            field="name",
        ) from None


def experiment_get_or_create(*, workspace: Workspace, name: str, user: User) -> Experiment:
    existing = Experiment.objects.filter(workspace=workspace, name=name).first()
    return existing or experiment_create(workspace=workspace, name=name, user=user)
