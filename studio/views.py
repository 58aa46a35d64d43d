from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from studio import services
from studio.access import (
    AuthenticatedRequest,
    WorkspaceRequest,
    membership_last_used,
    memberships_of,
    workspace_creation_problem,
    workspace_view,
)
from studio.disk import disk_free_warning
from studio.forms import MemberAddForm, MemberRoleForm, TokenForm, WorkspaceForm
from studio.health import health
from studio.models import ApiToken, Membership, Role
from studio.supervisor import supervisor_state


def root(request: AuthenticatedRequest) -> HttpResponse:
    """Open the workspace used last, else the first one, else offer to create one."""
    chosen = membership_last_used(request, memberships_of(request.user))
    if chosen is None:
        return redirect("workspace_new")
    return redirect("home", slug=chosen.workspace.slug)


def login_locked(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict | None = None,
) -> HttpResponse:
    """The sign-in page saying why the sign-in was refused (django-axes' lockout answer)."""
    return render(
        request,
        "registration/login.html",
        {"locked_minutes": settings.LOGIN_LOCKOUT_MINUTES, "next": request.POST.get("next", "")},
        status=429,
    )


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    report = health(show_errors=request.user.is_staff)
    return JsonResponse(report, status=200 if report["ok"] else 503)


def workspace_new(request: AuthenticatedRequest) -> HttpResponse:
    problem = workspace_creation_problem(request.user)
    if problem:
        return render(request, "studio/workspace_new.html", {"problem": problem}, status=403)
    form = WorkspaceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        workspace = services.workspace_create(name=form.cleaned_data["name"], owner=request.user)
        messages.success(request, f"Workspace “{workspace.name}” created. You are its owner.")
        return redirect("home", slug=workspace.slug)
    return render(request, "studio/workspace_new.html", {"form": form})


@workspace_view(write_role=Role.OWNER)
def workspace_settings(request: WorkspaceRequest) -> HttpResponse:
    form = MemberAddForm(request.POST or None, staff=request.user.is_staff)
    if request.method == "POST" and form.is_valid():
        user = form.cleaned_data["user"]
        added = user is not None and services.membership_add(
            workspace=request.workspace, user=user, role=form.cleaned_data["role"]
        )
        if user is not None and not added:
            messages.error(
                request,
                f"{form.cleaned_data['username']} is already a member: change their role in "
                "the list.",
            )
        elif request.user.is_staff:
            messages.success(request, form.added_message())
        else:
            messages.info(request, form.added_message())
        return redirect("workspace_settings", slug=request.workspace.slug)
    members = request.workspace.memberships.select_related("user").order_by("user__username")
    return render(
        request,
        "studio/workspace_settings.html",
        {
            "form": form,
            "members": members,
            "roles": Role.choices,
            # Pids and exit reasons are for staff, as /healthz's details are.
            "supervisor": {"state": supervisor_state()} if request.user.is_staff else None,
            "disk_warning": disk_free_warning(),
        },
    )


@require_POST
@workspace_view(write_role=Role.OWNER)
def member_update(request: WorkspaceRequest, user_id: int) -> HttpResponse:
    # user__pk, not the user_id column: an id too big for the database is then simply not found.
    membership = get_object_or_404(Membership, workspace=request.workspace, user__pk=user_id)
    form = MemberRoleForm(request.POST)
    if form.is_valid():
        try:
            if form.cleaned_data["remove"]:
                services.membership_remove(workspace=request.workspace, user=membership.user)
                messages.success(request, f"{membership.user.username} was removed.")
            elif form.cleaned_data["role"]:
                services.membership_set(
                    workspace=request.workspace,
                    user=membership.user,
                    role=form.cleaned_data["role"],
                )
                messages.success(request, f"{membership.user.username}'s role was changed.")
        except ValueError as exc:
            messages.error(request, str(exc))
    return redirect("workspace_settings", slug=request.workspace.slug)


def token_list(request: AuthenticatedRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    new_token = None
    if request.method == "POST" and form.is_valid():
        _, new_token = services.token_create(
            user=request.user,
            name=form.cleaned_data["name"],
            expires_at=form.expires_at(),
            read_only=form.cleaned_data["read_only"],
        )
        form = TokenForm()
    elif request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    tokens = ApiToken.objects.filter(user=request.user)
    response = render(
        request,
        "studio/token_list.html",
        {"form": form, "tokens": tokens, "new_token": new_token},
    )
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def token_revoke(request: AuthenticatedRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    services.token_revoke(token=token)
    messages.success(request, f"Token “{token.name}” was revoked; requests using it now fail.")
    return redirect("token_list")
