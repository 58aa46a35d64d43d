"""Runs and experiments over the JSON API: submit, list, inspect, cancel, metrics, files.

`POST /api/v1/runs` takes the submit form's fields as multipart form data
with the source folder as a .zip or .tar.gz (`snapshot`) and, optionally, an
`az ml` runconfig file (`runconfig`) that fills the fields left out. Instead of
the archive, a client may send the folder's `manifest` and only the `files` the
workspace does not hold yet from its earlier snapshots (`POST
/api/v1/snapshots/missing` names them), as the submit page does.
"""

from __future__ import annotations

import shlex
from datetime import datetime
from typing import Annotated
from urllib.parse import unquote

from django.conf import settings
from django.db.models import Q
from django.http import FileResponse, Http404
from django.urls import reverse
from ninja import Body, File, Form, Router, Schema, Status
from ninja.errors import HttpError
from ninja.files import UploadedFile
from pydantic import Field, TypeAdapter, ValidationError

from compute.backends.batch import linked_file
from runs import selectors
from runs.models import Environment, Run
from runs.runconfig import parse_runconfig
from runs.services.experiments import experiment_create
from runs.services.lifecycle import run_cancel
from runs.services.submit import SubmitRequest, parse_metric_patterns, parse_tags, run_submit_upload
from runs.snapshots.capture import SnapshotError, relative_name
from runs.views import snapshot_zip_response
from studio import safeyaml
from studio.api_auth import Limit, Offset, api_membership
from studio.blobs import SHA256, blob_path
from studio.models import Role

router: Router = Router(tags=["runs"])


class RunEventOut(Schema):
    status: str
    at: datetime
    message: str


class RunOut(Schema):
    id: int
    experiment: str
    number: int
    status: str
    status_reason: str
    target: str
    node: str
    node_count: int
    entry_script: str
    arguments: list[str]
    framework: str
    environment: str
    exit_code: int | None
    error: str
    stderr_tail: str
    tags: dict
    submitted_by: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    timeline: list[RunEventOut]
    # A sweep's parent run: GET /api/v1/sweeps/{id} lists its children.
    is_sweep: bool
    url: str


class MetricPointOut(Schema):
    step: int
    value: float


class MetricOut(Schema):
    name: str
    points: list[MetricPointOut]


class RunFileOut(Schema):
    path: str
    size: int
    sha256: str
    url: str


class SnapshotFileOut(Schema):
    path: str
    size: int
    sha256: str
    executable: bool


class ExperimentOut(Schema):
    name: str
    description: str
    run_count: int
    latest_status: str | None


class ExperimentIn(Schema):
    name: str
    description: str = ""


Sha256 = Annotated[str, Field(pattern=rf"^{SHA256.pattern}$")]


class ManifestEntry(Schema):
    path: str
    sha256: Sha256
    size: int = Field(ge=0)
    # Unix permission bits, e.g. 0o644 (420): the executable bits are kept.
    mode: int = 0o644


MANIFEST = TypeAdapter(list[ManifestEntry])


def run_out(run: Run) -> RunOut:
    return RunOut(
        id=run.pk,
        experiment=run.experiment.name,
        number=run.number,
        status=run.status,
        status_reason=run.status_reason,
        target=run.target_name,
        node=run.node_name,
        node_count=run.node_count,
        entry_script=run.entry_script,
        arguments=run.arguments,
        framework=run.framework,
        environment=str(run.environment) if run.environment else "",
        exit_code=run.exit_code,
        error=run.error,
        stderr_tail=run.stderr_tail,
        tags=run.tags,
        submitted_by=run.submitted_by.username if run.submitted_by else None,
        created_at=run.created_at,
        started_at=run.started_at,
        ended_at=run.ended_at,
        timeline=[
            RunEventOut(status=e.status, at=e.at, message=e.message) for e in run.events.all()
        ],
        is_sweep=hasattr(run, "sweep"),
        url=reverse("run_detail", args=[run.workspace.slug, run.pk]),
    )


def visible_run(request, run_id: int, role: str = Role.READER) -> Run:
    run = (
        Run.objects.select_related(
            "workspace", "experiment", "submitted_by", "environment", "sweep"
        )
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise HttpError(404, "No such run")
    api_membership(request, run.workspace.slug, role)
    return run


def environment_named(workspace, name: str) -> Environment:
    """`name` (its latest version) or `name:version`, of the workspace or curated."""
    base, _, version = name.partition(":")
    envs = Environment.objects.filter(
        Q(workspace=workspace) | Q(workspace__isnull=True), name=base
    ).order_by("-version")
    if version:
        envs = envs.filter(version=int(version) if version.isdigit() else -1)
    env = envs.first()
    if env is None:
        raise HttpError(
            400, f"No environment {name!r}: see the Environments page for the names you can use."
        )
    return env


def submit_source(
    snapshot: UploadedFile | None, manifest: str, files: list[UploadedFile] | None
) -> dict:
    """The source folder of a submit, as the service takes it: an archive, or the manifest's
    paths each with its uploaded file or, for a file not sent, its stored digest."""
    if snapshot is not None and manifest:
        raise HttpError(
            400, "Send the source folder as `snapshot` or as `manifest` and `files`, not both."
        )
    if snapshot is not None:
        return {"archive": snapshot}
    if not manifest:
        raise HttpError(
            400,
            "snapshot: send the source folder as a .zip or .tar.gz in `snapshot`, or its "
            "`manifest` with the `files` POST /api/v1/snapshots/missing names.",
        )
    entries = manifest_entries(manifest)
    sent = {unquote(f.name or ""): f for f in files or []}
    stray = sorted(set(sent) - {entry.path for entry in entries})
    if stray:
        raise HttpError(
            400,
            f"files: {stray[0]} is not in the manifest: name each file by its path in the "
            "manifest, percent-encoded (src%2Ftrain.py), as multipart keeps no folders.",
        )
    return {
        "files": [(entry.path, sent.get(entry.path, entry.sha256)) for entry in entries],
        "executables": {entry.path for entry in entries if entry.mode & 0o111},
    }


def manifest_entries(manifest: str) -> list[ManifestEntry]:
    try:
        entries = MANIFEST.validate_json(manifest)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise HttpError(
            400,
            f"manifest: {where + ': ' if where else ''}{error['msg']}. Send a JSON list of "
            '{"path", "sha256", "size", "mode"}, one per file of the folder.',
        ) from None
    for entry in entries:
        try:
            clean = relative_name(entry.path)
        except SnapshotError:
            clean = ""
        if clean != entry.path:
            raise HttpError(
                400,
                f"manifest: {entry.path!r} is not a path inside the source folder: give paths "
                "relative to the folder, without a leading / or .. (e.g. src/train.py).",
            )
    return entries


@router.post("/snapshots/missing", response=list[str], tags=["snapshots"])
def snapshots_missing(
    request,
    digests: list[Sha256] = Body(...),  # noqa: B008 - how ninja declares a body
    workspace: str | None = None,
):
    """Of a JSON list of SHA-256 hex digests (a source folder's files), those the workspace
    does not hold (in its earlier snapshots): the only files a submit with a `manifest` has to
    send. At most
    DATA_UPLOAD_MAX_NUMBER_FILES digests, the most files one submit can send."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    if len(digests) > settings.DATA_UPLOAD_MAX_NUMBER_FILES:
        raise HttpError(
            400,
            f"Ask about at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} digests at a time: "
            "split the list, or leave more of the folder out with .amlignore.",
        )
    return selectors.snapshot_blobs_missing(workspace=membership.workspace, hashes=digests)


@router.post("/runs", response={201: RunOut})
def runs_submit(
    request,
    workspace: str | None = None,
    experiment: str = Form(""),
    target: str = Form(""),
    entry_script: str = Form(""),
    arguments: str = Form(""),
    environment: str = Form(""),
    node_count: int | None = Form(None),
    max_duration_seconds: int | None = Form(None),
    tags: str = Form(""),
    metric_patterns: str = Form(""),
    display_name: str = Form(""),
    framework: str = Form(""),
    snapshot: UploadedFile | None = File(None),  # noqa: B008 - how ninja declares an upload
    manifest: str = Form(""),
    files: list[UploadedFile] | None = File(None),  # noqa: B008
    runconfig: UploadedFile | None = File(None),  # noqa: B008
):
    """Submit a run: the source folder as a .zip or .tar.gz in `snapshot`, or as its
    `manifest` (a JSON list of {"path", "sha256", "size", "mode"}, one per file) with the
    `files` the workspace lacks (POST /api/v1/snapshots/missing), each named by its manifest
    path, percent-encoded. A file left out is the file of that sha256 the workspace holds; 400
    names a file that is neither sent nor held, a path outside the folder, or a folder over
    the snapshot limit."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    ws = membership.workspace
    source = submit_source(snapshot, manifest, files)
    try:
        submit = SubmitRequest(
            experiment=experiment,
            target=target,
            entry_script=entry_script.strip(),
            arguments=shlex.split(arguments),
            environment=environment_named(ws, environment) if environment else None,
            node_count=node_count,
            max_duration_seconds=max_duration_seconds,
            tags=parse_tags(tags),
            metric_patterns=parse_metric_patterns(metric_patterns),
            display_name=display_name,
            framework=framework,
        )
        if runconfig is not None:
            submit.apply_runconfig(
                parse_runconfig(runconfig.read(safeyaml.MAX_BYTES + 1).decode(errors="replace"))
            )
        run = run_submit_upload(workspace=ws, user=request.user, request=submit, **source)
    except ValueError as exc:
        raise HttpError(400, f"arguments: {exc}") from None
    return Status(
        201, run_out(Run.objects.select_related("workspace", "experiment").get(pk=run.pk))
    )


@router.get("/runs", response=list[RunOut])
def runs_list(
    request,
    workspace: str | None = None,
    experiment: str = "",
    status: str = "",
    limit: Limit = 50,
    offset: Offset = 0,
):
    """Runs of a workspace, newest first; `experiment` and `status` filter them."""
    membership = api_membership(request, workspace)
    runs = selectors.run_list(workspace=membership.workspace, filters={"status": status})
    if experiment:
        runs = runs.filter(experiment__name=experiment)
    runs = runs.select_related("workspace", "environment", "sweep").prefetch_related("events")
    return [run_out(run) for run in runs[offset : offset + limit]]


@router.get("/runs/{run_id}", response=RunOut)
def runs_get(request, run_id: int):
    """A run's status, timeline, exit code and error."""
    return run_out(visible_run(request, run_id))


@router.post("/runs/{run_id}/cancel", response=RunOut)
def runs_cancel(request, run_id: int):
    """Ask the run to stop (SIGTERM, grace period, SIGKILL); it ends Canceled."""
    run = visible_run(request, run_id, Role.CONTRIBUTOR)
    if not run_cancel(run=run, user=request.user):
        raise HttpError(409, f"The run is {run.status}: there is nothing to cancel.")
    run.refresh_from_db()
    return run_out(run)


@router.get("/runs/{run_id}/metrics", response=list[MetricOut])
def runs_metrics(request, run_id: int):
    """Every metric the run logged, as (step, value) series."""
    run = visible_run(request, run_id)
    return [
        MetricOut(name=name, points=[MetricPointOut(step=s, value=v) for s, v in points])
        for name, points in selectors.metric_series(run).items()
    ]


@router.get("/runs/{run_id}/files", response=list[RunFileOut])
def runs_files(request, run_id: int):
    """The files the run wrote to ./outputs and ./logs, with download links."""
    run = visible_run(request, run_id)
    return [
        RunFileOut(
            path=f.path,
            size=f.size,
            sha256=f.sha256,
            url=reverse("run_file", args=[run.workspace.slug, run.pk, f.path]),
        )
        for f in run.files.all()
    ]


@router.get("/runs/{run_id}/snapshot", response=list[SnapshotFileOut], tags=["snapshots"])
def runs_snapshot(request, run_id: int, limit: Limit = 100, offset: Offset = 0):
    """The files of the source folder the run was submitted with, by path; the whole folder
    is GET /api/v1/runs/{id}/snapshot.zip."""
    run = visible_run(request, run_id)
    entries = selectors.snapshot_entries(run.snapshot)
    return [SnapshotFileOut(**entry) for entry in entries[offset : offset + limit]]


@router.get("/runs/{run_id}/snapshot.zip", tags=["snapshots"])
def runs_snapshot_zip(request, run_id: int):
    """The run's source folder as a .zip (executable bits kept), as the run page offers it."""
    run = visible_run(request, run_id)
    try:
        return snapshot_zip_response(run)
    except Http404 as exc:
        raise HttpError(404, str(exc)) from None


@router.get("/experiments", response=list[ExperimentOut], tags=["experiments"])
def experiments_list(request, workspace: str | None = None):
    membership = api_membership(request, workspace)
    return [
        ExperimentOut(
            name=e.name,
            description=e.description,
            run_count=e.run_count,
            latest_status=e.latest_status,
        )
        for e in selectors.experiment_list(workspace=membership.workspace)
    ]


@router.post("/experiments", response={201: ExperimentOut}, tags=["experiments"])
def experiments_create(request, payload: ExperimentIn, workspace: str | None = None):
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    experiment = experiment_create(
        workspace=membership.workspace,
        name=payload.name,
        description=payload.description,
        user=request.user,
    )
    return Status(
        201,
        ExperimentOut(
            name=experiment.name,
            description=experiment.description,
            run_count=0,
            latest_status=None,
        ),
    )


@router.get("/runs/{run_id}/files/{path:path}")
def runs_file_download(request, run_id: int, path: str):
    """One output or log file of the run, as stored."""
    run = visible_run(request, run_id)
    run_file = run.files.filter(path=path).first()
    if run_file is None:
        raise HttpError(404, "This run has no such file")
    try:
        handle = blob_path(run_file.sha256).open("rb")
    except FileNotFoundError:
        raise HttpError(404, "The file's content is no longer stored") from None
    return FileResponse(handle, as_attachment=True, filename=path.rsplit("/", 1)[-1])


# Batch nodes download a step's files without signing in: the signed link is their key.
@router.get("/batch-files/{link}", auth=None, url_name="batch_file", include_in_schema=False)
def batch_file(request, link: str):
    """A run's file, for the Batch node whose task was given this link."""
    sha = linked_file(link)
    if sha is None:
        raise HttpError(
            403,
            "This link to a run's file has expired or was not made by Trainyard: submit the "
            "step again (links last BATCH_FILE_LINK_HOURS).",
        )
    try:
        return FileResponse(blob_path(sha).open("rb"))
    except FileNotFoundError:
        raise HttpError(404, "The file is no longer stored: submit the step again.") from None
