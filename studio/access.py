"""Who may see and change what: every workspace page goes through `workspace_view`."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase

from studio.models import Membership, Role, Workspace


class AuthenticatedRequest(HttpRequest):
    """A request of a signed-in user: LoginRequiredMiddleware lets no other reach a page,
    TokenAuth none reach an endpoint."""

    user: User


class WorkspaceRequest(AuthenticatedRequest):
    """A request `workspace_view` let through: the caller's membership and its workspace."""

    membership: Membership
    workspace: Workspace


def membership_for(user: User | AnonymousUser, slug: str) -> Membership:
    """The user's membership of the workspace, or 404 so strangers learn nothing."""
    if not user.is_authenticated:
        raise Http404("No such workspace")
    membership = (
        Membership.objects.select_related("workspace")
        .filter(workspace__slug=slug, user=user)
        .first()
    )
    if membership is None:
        raise Http404("No such workspace")
    return membership


def memberships_of(user: User) -> list[Membership]:
    return list(
        Membership.objects.filter(user=user).select_related("workspace").order_by("workspace__name")
    )


def membership_last_used(request: HttpRequest, memberships: list[Membership]) -> Membership | None:
    """Of the user's memberships, the one of the workspace opened last, else the first."""
    last = request.session.get("workspace")
    return next((m for m in memberships if m.workspace.slug == last), None) or next(
        iter(memberships), None
    )


def workspace_creation_problem(user: User | AnonymousUser) -> str:
    """Why `user` may not create a workspace ("" when they may)."""
    if settings.WORKSPACE_CREATORS == "everyone" or user.is_staff:
        return ""
    return (
        "Only staff create workspaces on this server: ask an administrator to create one "
        "for you, or to add you to an existing one."
    )


def require_role(membership: Membership, role: str) -> None:
    if not membership.has_role(role):
        raise PermissionDenied(
            f"Your role in {membership.workspace.name} is {membership.get_role_display()}; "
            f"this needs {Role(role).label}. Ask a workspace owner to change your role."
        )


View = Callable[..., HttpResponseBase]


def workspace_view(
    role: str = Role.READER, write_role: str = Role.CONTRIBUTOR
) -> Callable[[View], View]:
    """Load request.workspace/request.membership from the URL's slug.

    GET needs `role`; any other method needs `write_role`.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(
            request: WorkspaceRequest, slug: str, *args: Any, **kwargs: Any
        ) -> HttpResponseBase:
            membership = membership_for(request.user, slug)
            needed = role if request.method in ("GET", "HEAD") else write_role
            require_role(membership, needed)
            request.membership = membership
            request.workspace = membership.workspace
            request.session["workspace"] = slug
            return view(request, *args, **kwargs)

        # Declared on the view (and, through functools.wraps, on what wraps it), so the
        # authorization tests can hold each page to its roles.
        wrapped.workspace_roles = (role, write_role)  # type: ignore[attr-defined]
        return wrapped

    return decorator
