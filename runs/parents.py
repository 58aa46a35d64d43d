"""The parent-run layer that pipelines and sweeps share.

A pipeline and a sweep are each a parent Run with child runs, recorded by a model with a
one-to-one `run` (Pipeline, Sweep) and described here by a `ParentKind`. What differs (how
children are made and when) stays in the pipelines and sweeps apps; what is the same lives
here: finding a workspace's parents, canceling one, moving them on (`parent_advance_soon`
after a submit or cancel, `parents_advance` on the Celery beat, `parent_children_stop` once
a parent is canceled), their list, detail and cancel pages, and the JSON fields their API
answers share. Their run numbers come from runs.numbers, as every run's do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import ObjectDoesNotExist
from django.db import models
from django.db.models import Q, QuerySet
from django.http import Http404, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect
from ninja import Schema
from ninja.errors import HttpError

from runs.models import FINAL_STATUSES, Run, RunStatus
from runs.services.lifecycle import run_cancel, run_transition
from studio.access import workspace_view
from studio.models import Workspace
from studio.tasks import task_enqueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParentKind:
    """What the shared layer needs to know of one kind of parent run."""

    # The model with a one-to-one `run` (related name `noun`) and the rows of its children.
    model: type[models.Model]
    # How pages and messages name it: "pipeline", "sweep".
    noun: str
    # The related name of its child rows (each with a one-to-one `run`), and how they are
    # called: "step" / "steps", "child run" / "child runs".
    children: str
    child_noun: str
    children_noun: str
    # The name of the Celery task that advances one parent, given its id.
    advance_task: str

    @property
    def app(self) -> str:
        return self.model._meta.app_label


# --- reading -----------------------------------------------------------------------------


def parent_list(*, kind: ParentKind, workspace: Workspace) -> QuerySet[Any]:
    """The workspace's parents of this kind, newest first."""
    return (
        kind.model._default_manager.filter(run__workspace=workspace)
        .select_related("run", "run__experiment", "run__submitted_by")
        .order_by("-run__created_at")
    )


def parent_get(*, kind: ParentKind, workspace: Workspace, run_id: int) -> Any:
    """The workspace's parent whose run is `run_id`; ObjectDoesNotExist when it has none."""
    # By the run's own key (run__pk, not the run_id column): an id too big for the database
    # is then simply not found, instead of an overflow error.
    return kind.model._default_manager.select_related(
        "run", "run__experiment", "run__submitted_by", "run__snapshot", "run__environment"
    ).get(run__workspace=workspace, run__pk=run_id)


# --- moving parents on -------------------------------------------------------------------


def parent_advance_soon(*, kind: ParentKind, parent_id: int) -> None:
    """Advance the parent once the transaction commits, in a worker."""
    task_enqueue(kind.advance_task, parent_id)


def parent_cancel(*, kind: ParentKind, parent: Any, user: User) -> bool:
    """Cancel the parent run; its next advance stops its children and draws or starts no
    more. False when it had ended or its cancel was asked for already."""
    canceled = run_cancel(run=parent.run, user=user)
    if canceled:
        parent_advance_soon(kind=kind, parent_id=parent.pk)
    return canceled


def parent_children_stop(
    *, kind: ParentKind, parent: Run, children: list[Run], reason: str
) -> None:
    """Cancel the children still going, with `reason` on their timeline; a parent whose
    cancel was asked for is Canceled once every child has stopped."""
    for child in children:
        if not child.is_final:
            run_cancel(run=child, reason=reason)
    if parent.status != RunStatus.CANCEL_REQUESTED:
        return
    statuses = Run.objects.filter(parent=parent).values_list("status", flat=True)
    if all(status in FINAL_STATUSES for status in statuses):
        run_transition(
            parent.pk,
            RunStatus.CANCELED,
            allowed_from=[RunStatus.CANCEL_REQUESTED],
            message=f"Every {kind.child_noun} has stopped",
        )


def parents_advance(*, kind: ParentKind, advance: Callable[[int], None]) -> int:
    """Call `advance(pk)` for each parent of this kind that is not over or has a child that
    is not (a child that finished moves its parent on); how many there were. One that fails
    is logged and tried again at the next pass, and does not stop the others."""
    unfinished = [status for status in RunStatus.values if status not in FINAL_STATUSES]
    ids = list(
        kind.model._default_manager.filter(
            Q(run__status__in=unfinished) | Q(**{f"{kind.children}__run__status__in": unfinished})
        )
        .values_list("pk", flat=True)
        .distinct()
    )
    for pk in ids:
        try:
            advance(pk)
        except Exception:
            log.exception("advancing %s %s failed; the next pass tries again", kind.noun, pk)
    return len(ids)


# --- pages -------------------------------------------------------------------------------

View = Callable[..., HttpResponseBase]


def _parent_or_404(kind: ParentKind, request: Any, run_id: int) -> Any:
    try:
        return parent_get(kind=kind, workspace=request.workspace, run_id=run_id)
    except ObjectDoesNotExist as exc:
        raise Http404(f"No such {kind.noun}") from exc


def parent_list_view(kind: ParentKind) -> View:
    """The page listing the workspace's latest 100 parents of this kind."""

    @workspace_view()
    def view(request: Any) -> HttpResponse:
        parents = parent_list(kind=kind, workspace=request.workspace)[:100]
        template = f"{kind.app}/{kind.noun}_list.html"
        return render(request, template, {f"{kind.noun}s": parents})

    return view


def parent_detail_view(kind: ParentKind, context: Callable[[Any, Any], dict]) -> View:
    """The parent's page (its status part alone for htmx): `context(request, parent)` adds
    what the kind shows of its children to the parent, its run and whether it may be
    canceled."""

    @workspace_view()
    def view(request: Any, run_id: int) -> HttpResponse:
        parent = _parent_or_404(kind, request, run_id)
        run = parent.run
        data = {
            kind.noun: parent,
            "run": run,
            "can_cancel": request.membership.can_edit
            and run.status not in (*FINAL_STATUSES, RunStatus.CANCEL_REQUESTED),
            **context(request, parent),
        }
        part = f"_{kind.noun}_status" if request.htmx else f"{kind.noun}_detail"
        return render(request, f"{kind.app}/{part}.html", data)

    return view


def parent_cancel_view(kind: ParentKind) -> View:
    """POST: cancel the parent, say so and go back to its page."""

    @require_POST
    @workspace_view()
    def view(request: Any, run_id: int) -> HttpResponse:
        parent = _parent_or_404(kind, request, run_id)
        run = parent.run
        if parent_cancel(kind=kind, parent=parent, user=request.user):
            messages.success(
                request,
                f"Canceling {kind.noun} {run}: its {kind.children_noun} are being stopped.",
            )
        else:
            messages.warning(
                request, f"{kind.noun.capitalize()} {run} is {run.status}: nothing to cancel."
            )
        url = reverse(f"{kind.noun}_detail", args=[request.workspace.slug, parent.run_id])
        if request.htmx:
            return HttpResponseClientRedirect(url)
        return redirect(url)

    return view


# --- the JSON API ------------------------------------------------------------------------


class ParentOut(Schema):
    """What the API answers of every parent run; each kind adds its own fields."""

    id: int
    experiment: str
    number: int
    status: str
    error: str
    submitted_by: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    definition: str
    url: str


def parent_out_fields(kind: ParentKind, parent: Any) -> dict[str, Any]:
    """The ParentOut fields of `parent`, its run read again for its latest status."""
    run = parent.run
    run.refresh_from_db()
    return {
        "id": run.pk,
        "experiment": run.experiment.name,
        "number": run.number,
        "status": run.status,
        "error": run.error,
        "submitted_by": run.submitted_by.username if run.submitted_by else None,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "definition": parent.definition,
        "url": reverse(f"{kind.noun}_detail", args=[run.workspace.slug, run.pk]),
    }


def parent_api_get(*, kind: ParentKind, workspace: Workspace, run_id: int) -> Any:
    """`parent_get` for an endpoint: a 404 that names the kind when there is none."""
    try:
        return parent_get(kind=kind, workspace=workspace, run_id=run_id)
    except ObjectDoesNotExist as exc:
        raise HttpError(404, f"No such {kind.noun}") from exc
