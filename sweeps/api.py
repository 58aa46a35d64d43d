"""Sweeps over the JSON API: submit an hdconfig.yml with a source folder, follow its children.

`POST /api/v1/sweeps` takes multipart form data: the HyperDrive config file
(`hyperdrive_config`), the source folder as a .zip or .tar.gz (`snapshot`, or its
`manifest` with the missing `files`, as for runs), and
the run fields every child shares: `experiment`, `target`, `entry_script`,
optionally `arguments`, `environment` and `tags`, and an `az ml` runconfig file
(`runconfig`) that fills the fields left out. Each child is also a run of
its own, under /api/v1/runs/{id} (logs, metrics, files).
"""

from __future__ import annotations

import shlex
from datetime import datetime

from ninja import File, Form, Router, Schema, Status
from ninja.errors import HttpError
from ninja.files import UploadedFile

from runs.api import environment_named, submit_source
from runs.parents import ParentOut, parent_api_get, parent_cancel, parent_list, parent_out_fields
from runs.runconfig import parse_runconfig
from runs.services.submit import SubmitRequest, parse_tags
from studio import safeyaml
from studio.api_auth import Limit, Offset, api_membership
from studio.models import Role
from sweeps import selectors, services
from sweeps.models import Sweep
from sweeps.services import SWEEP

router: Router = Router(tags=["sweeps"])


class ChildOut(Schema):
    run_id: int
    number: int
    index: int
    hyperparameters: dict
    arguments: list[str]
    status: str
    cancel_reason: str
    error: str
    primary_metric: float | None
    best: bool
    started_at: datetime | None
    ended_at: datetime | None


class SweepOut(ParentOut):
    target: str
    entry_script: str
    sampling: str
    seed: int
    primary_metric_name: str
    primary_metric_goal: str
    max_total_runs: int
    max_concurrent_runs: int
    best_child: int | None
    children: list[ChildOut]


def sweep_out(sweep: Sweep) -> SweepOut:
    fields = parent_out_fields(SWEEP, sweep)
    run = sweep.run
    spec = selectors.sweep_spec(sweep)
    rows = selectors.sweep_children(sweep, spec)
    best = selectors.best_child(rows)
    return SweepOut(
        **fields,
        target=run.target_name,
        entry_script=run.entry_script,
        sampling=spec.sampling,
        seed=sweep.seed,
        primary_metric_name=spec.primary_metric_name,
        primary_metric_goal=spec.primary_metric_goal,
        max_total_runs=spec.max_total_runs,
        max_concurrent_runs=spec.max_concurrent_runs,
        best_child=best.child.run_id if best else None,
        children=[
            ChildOut(
                run_id=row.child.run_id,
                number=row.child.run.number,
                index=row.child.index,
                hyperparameters=row.child.hyperparameters,
                arguments=row.child.run.arguments,
                status=row.child.run.status,
                cancel_reason=row.child.run.cancel_reason,
                error=row.child.run.error,
                primary_metric=row.best,
                best=row.is_best,
                started_at=row.child.run.started_at,
                ended_at=row.child.run.ended_at,
            )
            for row in rows
        ],
    )


@router.post("/sweeps", response={201: SweepOut})
def sweeps_submit(
    request,
    workspace: str | None = None,
    experiment: str = Form(""),
    target: str = Form(""),
    entry_script: str = Form(""),
    arguments: str = Form(""),
    environment: str = Form(""),
    tags: str = Form(""),
    hyperdrive_config: UploadedFile = File(...),  # noqa: B008 - how ninja declares an upload
    snapshot: UploadedFile | None = File(None),  # noqa: B008
    manifest: str = Form(""),
    files: list[UploadedFile] | None = File(None),  # noqa: B008
    runconfig: UploadedFile | None = File(None),  # noqa: B008
):
    """Submit a sweep: the hdconfig.yml in `hyperdrive_config`, the source folder as a .zip or
    .tar.gz in `snapshot` (or as its `manifest` with only the `files` the workspace lacks, which
    POST /api/v1/snapshots/missing names, as POST /api/v1/runs takes them), optionally a
    runconfig in `runconfig`."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    ws = membership.workspace
    source = submit_source(snapshot, manifest, files)
    if (hyperdrive_config.size or 0) > services.MAX_DEFINITION_BYTES:
        raise HttpError(400, "hyperdrive_config: an hdconfig file is a small YAML file.")
    try:
        definition = hyperdrive_config.read().decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "hyperdrive_config: this is not a text (YAML) file.") from None
    try:
        submit = SubmitRequest(
            experiment=experiment,
            target=target,
            entry_script=entry_script.strip(),
            arguments=shlex.split(arguments),
            environment=environment_named(ws, environment) if environment else None,
            tags=parse_tags(tags),
        )
        if runconfig is not None:
            submit.apply_runconfig(
                parse_runconfig(runconfig.read(safeyaml.MAX_BYTES + 1).decode(errors="replace"))
            )
    except ValueError as exc:
        raise HttpError(400, f"arguments: {exc}") from None
    run = services.sweep_submit(
        workspace=ws, user=request.user, request=submit, definition=definition, **source
    )
    return Status(201, sweep_out(run.sweep))


@router.get("/sweeps", response=list[SweepOut])
def sweeps_list(request, workspace: str | None = None, limit: Limit = 20, offset: Offset = 0):
    membership = api_membership(request, workspace)
    sweeps = parent_list(kind=SWEEP, workspace=membership.workspace)
    return [sweep_out(s) for s in sweeps[offset : offset + limit]]


@router.get("/sweeps/{run_id}", response=SweepOut)
def sweeps_get(request, run_id: int, workspace: str | None = None):
    """The sweep with its children: their hyperparameters, status and primary metric."""
    membership = api_membership(request, workspace)
    return sweep_out(parent_api_get(kind=SWEEP, workspace=membership.workspace, run_id=run_id))


@router.post("/sweeps/{run_id}/cancel", response=SweepOut)
def sweeps_cancel(request, run_id: int, workspace: str | None = None):
    """Cancel the sweep: running children are stopped, no more are drawn."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    sweep = parent_api_get(kind=SWEEP, workspace=membership.workspace, run_id=run_id)
    parent_cancel(kind=SWEEP, parent=sweep, user=request.user)
    return sweep_out(sweep)
