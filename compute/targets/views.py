"""Pages every kind of target shares: the list, the detail page, the terminal, detaching.

The detail page of each kind is its own view, handed in by compute.urls as
`detail_pages` (kind → view), so this module needs none of the kinds' views.
"""

from collections.abc import Callable
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from compute import selectors, terminal
from compute.models import ComputeKind, ComputeTarget
from compute.targets import services
from studio.access import workspace_view
from studio.errors import ServiceError
from studio.models import Role

DetailPage = Callable[..., HttpResponse]


def _target(request, name: str) -> ComputeTarget:
    try:
        return selectors.compute_get(workspace=request.workspace, name=name)
    except ComputeTarget.DoesNotExist as exc:
        raise Http404("No such compute target") from exc


@workspace_view()
def compute_list(request):
    targets = list(selectors.compute_list(workspace=request.workspace))
    context = {
        "targets": targets,
        "poll": any(t.is_busy for t in targets),
        "only_local": [t.kind for t in targets] == [ComputeKind.LOCAL],
    }
    template = "compute/_compute_table.html" if request.htmx else "compute/compute_list.html"
    return render(request, template, context)


@workspace_view()
def compute_detail(request, name: str, detail_pages: dict[str, DetailPage]):
    """The detail page of the target, the one of its kind."""
    target = _target(request, name)
    return detail_pages[target.kind](request, target)


def terminal_page(request, place: terminal.Place | None, socket_path: str, back_url: str):
    """The terminal page for `place` (404 when the user may not open it)."""
    if place is None:
        raise Http404("No such terminal")
    return render(
        request,
        "compute/terminal.html",
        {
            "place": place,
            "socket_path": socket_path,
            "back_url": back_url,
            "idle_minutes": settings.TERMINAL_IDLE_SECONDS // 60,
        },
    )


@workspace_view(role=Role.CONTRIBUTOR)
def compute_terminal(request, name: str):
    """A shell on the target (or on `?node=NAME` of a cluster); the websocket does the work."""
    slug, node = request.workspace.slug, request.GET.get("node", "")[:64]
    socket_path = f"/ws/w/{slug}/compute/{quote(name)}/terminal/"
    return terminal_page(
        request,
        terminal.target_place(request.user, slug, name, node),
        socket_path + (f"?{urlencode({'node': node})}" if node else ""),
        reverse("compute_detail", args=[slug, name]),
    )


@workspace_view(role=Role.CONTRIBUTOR)
def compute_detach(request, name: str):
    target = _target(request, name)
    if request.method == "POST":
        try:
            services.compute_detach(target=target, user=request.user)
        except ServiceError as exc:
            messages.error(request, exc.message)
            return redirect("compute_detail", slug=request.workspace.slug, name=target.name)
        messages.success(
            request,
            f"{target.name} was detached and its credentials deleted. "
            "Runs that used it keep their history.",
        )
        return redirect("compute_list", slug=request.workspace.slug)
    context = {
        "target": target,
        "run_count": target.runs.count(),
        "refusal": services.detach_refusal(target),
    }
    return render(request, "compute/compute_detach.html", context)
