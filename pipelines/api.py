"""Pipelines over the JSON API: submit a YAML definition, follow its steps, cancel.

`POST /api/v1/pipelines` takes multipart form data: the definition file
(`definition`), the source folder as a .zip or .tar.gz (`snapshot`), and
optionally `experiment` and `tags`. Each step is also a run of its own, under
/api/v1/runs/{id} (logs, metrics, files).
"""

from __future__ import annotations

from datetime import datetime

from django.urls import reverse
from ninja import File, Form, Router, Schema, Status
from ninja.errors import HttpError
from ninja.files import UploadedFile

from pipelines import selectors, services
from pipelines.models import Pipeline
from runs.services.submit import parse_tags
from studio.api import Limit, Offset, api_membership
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


class PipelineOut(Schema):
    id: int
    name: str
    experiment: str
    number: int
    status: str
    error: str
    submitted_by: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    definition: str
    steps: list[StepOut]
    url: str


def pipeline_out(pipeline: Pipeline) -> PipelineOut:
    run = pipeline.run
    run.refresh_from_db()
    return PipelineOut(
        id=run.pk,
        name=pipeline.name,
        experiment=run.experiment.name,
        number=run.number,
        status=run.status,
        error=run.error,
        submitted_by=run.submitted_by.username if run.submitted_by else None,
        created_at=run.created_at,
        started_at=run.started_at,
        ended_at=run.ended_at,
        definition=pipeline.definition,
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
        url=reverse("pipeline_detail", args=[run.workspace.slug, run.pk]),
    )


def _pipeline(request, workspace: str | None, run_id: int, role: str = Role.READER) -> Pipeline:
    membership = api_membership(request, workspace, role)
    try:
        return selectors.pipeline_get(workspace=membership.workspace, run_id=run_id)
    except Pipeline.DoesNotExist as exc:
        raise HttpError(404, "No such pipeline") from exc


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
        run = services.pipeline_submit(
            workspace=membership.workspace,
            user=request.user,
            definition=text,
            experiment=experiment,
            archive=snapshot,
            tags=parse_tags(tags),
        )
    except services.PipelineError as exc:
        raise HttpError(400, f"{exc.field}: {exc}" if exc.field else str(exc)) from None
    except ServiceError as exc:
        raise HttpError(400, f"tags: {exc}") from None
    return Status(201, pipeline_out(run.pipeline))


@router.get("/pipelines", response=list[PipelineOut])
def pipelines_list(request, workspace: str | None = None, limit: Limit = 20, offset: Offset = 0):
    membership = api_membership(request, workspace)
    pipelines = selectors.pipeline_list(workspace=membership.workspace)[offset : offset + limit]
    return [pipeline_out(p) for p in pipelines]


@router.get("/pipelines/{run_id}", response=PipelineOut)
def pipelines_get(request, run_id: int, workspace: str | None = None):
    return pipeline_out(_pipeline(request, workspace, run_id))


@router.post("/pipelines/{run_id}/cancel", response=PipelineOut)
def pipelines_cancel(request, run_id: int, workspace: str | None = None):
    """Cancel the pipeline: running steps are stopped, waiting steps never start."""
    pipeline = _pipeline(request, workspace, run_id, Role.CONTRIBUTOR)
    services.pipeline_cancel(pipeline=pipeline, user=request.user)
    return pipeline_out(pipeline)
