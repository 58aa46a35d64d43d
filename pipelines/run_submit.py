"""A script submitted as a run to a target that runs pipeline steps only: a one-step pipeline."""

from django.contrib.auth.models import User

from compute.models import ComputeTarget
from pipelines.services import PipelineError, pipeline_single_step
from runs.models import Experiment, Run, Snapshot
from studio.errors import ServiceError
from studio.models import Workspace


def single_step_submit(
    *,
    workspace: Workspace,
    user: User,
    experiment: Experiment,
    target: ComputeTarget,
    snapshot: Snapshot,
    entry_script: str,
    arguments: list[str],
    display_name: str,
    tags: dict,
    git: dict,
) -> Run:
    try:
        return pipeline_single_step(
            workspace=workspace,
            user=user,
            experiment=experiment,
            target=target,
            snapshot=snapshot,
            entry_script=entry_script,
            arguments=arguments,
            display_name=display_name,
            tags=tags,
            git=git,
        )
    except PipelineError as exc:
        raise ServiceError(str(exc), field=exc.field or "target") from None
