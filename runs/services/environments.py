"""Environments: new ones and new versions, and those a runconfig describes."""

from __future__ import annotations

import re

from django.db import transaction
from django.db.models import Max, Q

from runs.models import (
    Environment,
    EnvironmentKind,
)
from runs.runconfig import EnvironmentSpec
from studio.errors import ServiceError
from studio.models import Workspace

ENVIRONMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
# The curated environment a run gets when neither the user nor a runconfig chose one.
DEFAULT_ENVIRONMENT = "trainyard-minimal-python"


def environment_create(
    *,
    workspace: Workspace,
    name: str,
    kind: str,
    description: str = "",
    interpreter_path: str = "",
    pip_requirements: str = "",
    conda_yaml: str = "",
    docker_image: str = "",
    docker_gpus: bool = False,
) -> Environment:
    """A new environment, or a new version of an existing name."""
    if not ENVIRONMENT_NAME.fullmatch(name or ""):
        raise ServiceError(
            "An environment name has letters, digits, dots, dashes and underscores, starting "
            "with a letter or digit (e.g. sklearn-1.5)."
        )
    if kind == EnvironmentKind.CURATED:
        raise ServiceError(
            "Curated environments come with Trainyard; create a user- or system-managed one."
        )
    if kind == EnvironmentKind.SYSTEM_MANAGED and not (
        pip_requirements.strip() or conda_yaml.strip()
    ):
        raise ServiceError(
            "A system-managed environment is built from a pip requirements list or a conda "
            "environment file: fill in one of them (or choose user-managed)."
        )
    if pip_requirements.strip() and conda_yaml.strip():
        raise ServiceError("Give either pip requirements or a conda file, not both.")
    if docker_gpus and not docker_image.strip():
        raise ServiceError(
            "GPUs are given to the run's Docker container: name a Docker base image too (a "
            "GPU one, e.g. nvidia/cuda:12.4.1-runtime-ubuntu22.04 with Python)."
        )
    with transaction.atomic():
        latest = Environment.objects.filter(workspace=workspace, name=name).aggregate(
            v=Max("version")
        )["v"]
        return Environment.objects.create(
            workspace=workspace,
            name=name,
            version=(latest or 0) + 1,
            kind=kind,
            description=description,
            interpreter_path=interpreter_path.strip(),
            pip_requirements=pip_requirements,
            conda_yaml=conda_yaml,
            docker_image=docker_image.strip(),
            docker_gpus=docker_gpus,
        )


def environment_from_runconfig(*, workspace: Workspace, spec: EnvironmentSpec) -> Environment:
    """The workspace environment a runconfig's `environment:` describes, created if new."""
    kind = (
        EnvironmentKind.USER_MANAGED
        if spec.user_managed or not spec.conda_yaml
        else (EnvironmentKind.SYSTEM_MANAGED)
    )
    candidate = Environment(
        kind=kind,
        interpreter_path=spec.interpreter_path if kind == EnvironmentKind.USER_MANAGED else "",
        conda_yaml=spec.conda_yaml,
        docker_image=spec.docker_image,
    )
    for env in Environment.objects.filter(
        Q(workspace=workspace) | Q(workspace__isnull=True),
        docker_image=spec.docker_image,
        docker_gpus=spec.docker_gpus,
    ):
        if env.definition_hash == candidate.definition_hash:
            return env
    name = spec.name or f"runconfig-{candidate.definition_hash[:8]}"
    if not ENVIRONMENT_NAME.fullmatch(name):
        name = f"runconfig-{candidate.definition_hash[:8]}"
    return environment_create(
        workspace=workspace,
        name=name,
        kind=kind,
        description="Created from a runconfig file.",
        interpreter_path=candidate.interpreter_path,
        conda_yaml=spec.conda_yaml,
        docker_image=spec.docker_image,
        docker_gpus=spec.docker_gpus,
    )
