"""Pipelines over the JSON API: submit a YAML definition, follow its steps, cancel.

`POST /api/v1/pipelines` takes multipart form data: the definition file
(`definition`), the source folder as a .zip or .tar.gz (`snapshot`), and
optionally `experiment` and `tags`. Each step is also a run of its own, under
/api/v1/runs/{id} (logs, metrics, files).
"""

from __future__ import annotations

from datetime import datetime

from ninja import File, Form, Router, Schema, Status
from ninja.errors import HttpError
from ninja.files import UploadedFile

from pipelines import selectors, services
from pipelines.models import Pipeline
from pipelines.services import PIPELINE
from runs.parents import ParentOut, parent_api_get, parent_cancel, parent_list, parent_out_fields
from runs.services.submit import parse_tags
from studio.api_auth import Limit, Offset, api_membership
from studio.errors import ServiceError
from studio.models import Role

router: Router = Router(tags=["pipelines"])


class StepOut(Schema):
    name: str
    type: str
    run_id: int
    number: int
    compute: str
    status: str
    error: str
    depends_on: list[str]
    inputs: list[str]
    outputs: list[str]
    started_at: datetime | None
    ended_at: datetime | None


class PipelineOut(ParentOut):
    name: str
    steps: list[StepOut]


def pipeline_out(pipeline: Pipeline) -> PipelineOut:
    return PipelineOut(
        **parent_out_fields(PIPELINE, pipeline),
        name=pipeline.name,
        steps=[
            StepOut(
                name=step.name,
                type=step.step_type,
                run_id=step.run_id,
                number=step.run.number,
                compute=step.run.target_name,
                status=step.run.status,
                error=step.run.error,
                depends_on=step.depends_on,
                inputs=step.inputs,
                outputs=step.outputs,
                started_at=step.run.started_at,
                ended_at=step.run.ended_at,
            )
            for step in selectors.pipeline_steps(pipeline)
        ],
    )


@router.post("/pipelines", response={201: PipelineOut})
def pipelines_submit(
    request,
    workspace: str | None = None,
    experiment: str = Form(""),
    tags: str = Form(""),
    definition: UploadedFile = File(...),  # noqa: B008 - how ninja declares an upload
    snapshot: UploadedFile | None = File(None),  # noqa: B008
):
    """Submit a pipeline: its YAML definition in `definition`, the source folder with the
    steps' scripts as a .zip or .tar.gz in `snapshot`."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    if (definition.size or 0) > services.MAX_DEFINITION_BYTES:
        raise HttpError(400, "definition: a pipeline definition is a small YAML file.")
    try:
        text = definition.read().decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "definition: this is not a text (YAML) file.") from None
    try:
        tag_values = parse_tags(tags)
    except ServiceError as exc:
        raise HttpError(400, f"tags: {exc}") from None
    run = services.pipeline_submit(
        workspace=membership.workspace,
        user=request.user,
        definition=text,
        experiment=experiment,
        archive=snapshot,
        tags=tag_values,
    )
    return Status(201, pipeline_out(run.pipeline))


@router.get("/pipelines", response=list[PipelineOut])
def pipelines_list(request, workspace: str | None = None, limit: Limit = 20, offset: Offset = 0):
    membership = api_membership(request, workspace)
    pipelines = parent_list(kind=PIPELINE, workspace=membership.workspace)
    return [pipeline_out(p) for p in pipelines[offset : offset + limit]]


@router.get("/pipelines/{run_id}", response=PipelineOut)
def pipelines_get(request, run_id: int, workspace: str | None = None):
    membership = api_membership(request, workspace)
    pipeline = parent_api_get(kind=PIPELINE, workspace=membership.workspace, run_id=run_id)
    return pipeline_out(pipeline)


@router.post("/pipelines/{run_id}/cancel", response=PipelineOut)
def pipelines_cancel(request, run_id: int, workspace: str | None = None):
    """Cancel the pipeline: running steps are stopped, waiting steps never start."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    pipeline = parent_api_get(kind=PIPELINE, workspace=membership.workspace, run_id=run_id)
    parent_cancel(kind=PIPELINE, parent=pipeline, user=request.user)
    return pipeline_out(pipeline)
