"""What every API router shares: bearer-token sign-in, the caller's membership, paging and
form errors. Routers import this module; studio/api.py mounts the routers."""

from typing import Annotated, cast

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, User
from django.forms import BaseForm
from django.http import Http404, HttpRequest
from ninja import Query, Schema
from ninja.errors import HttpError
from ninja.security import HttpBearer

from studio.access import AuthenticatedRequest, membership_for, workspace_creation_problem
from studio.models import ApiToken, Membership, Role
from studio.services import TokenExpired, token_authenticate

# What a read-only token may do: read.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenRequest(HttpRequest):
    """A request `TokenAuth` let through, with the token it was signed in with."""

    api_token: ApiToken


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser | None:
        try:
            api_token = token_authenticate(token)
        except TokenExpired as exc:
            raise HttpError(401, str(exc)) from None
        if api_token is None:
            return None
        if api_token.read_only and request.method not in READ_METHODS:
            raise HttpError(
                403,
                f"The token {api_token.name} is read-only: it may only read (GET). "
                "Use a token created without “Read only” to change anything.",
            )
        request.user = api_token.user
        # A long response (a followed log) checks again that the token is still usable.
        cast(TokenRequest, request).api_token = api_token
        return api_token.user


# Paging of every list endpoint: a value out of these bounds is a 422 that names the bound,
# never a database error.
MAX_PAGE = 500
MAX_OFFSET = 1_000_000_000
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"At most {MAX_PAGE} per page.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many to skip.")]


def no_workspace_problem(user: User | AnonymousUser) -> str:
    """What a user who belongs to no workspace is told, with how to get one."""
    problem = workspace_creation_problem(user)
    if problem:
        return f"You belong to no workspace yet. {problem}"
    return (
        "You belong to no workspace yet: create one with POST /api/v1/workspaces "
        '{"name": "..."} (`trainyard workspace create NAME`), or ask a workspace owner to add you.'
    )


def api_membership(
    request: AuthenticatedRequest, workspace: str | None, role: str = Role.READER
) -> Membership:
    """The caller's membership of `workspace` (or of their only workspace); 404 for strangers."""
    if not workspace:
        memberships = list(Membership.objects.filter(user=request.user).select_related("workspace"))
        if not memberships:
            raise HttpError(400, no_workspace_problem(request.user))
        if len(memberships) > 1:
            slugs = ", ".join(sorted(m.workspace.slug for m in memberships))
            raise HttpError(
                400, f"Say which workspace: add ?workspace=<slug> to the request (yours: {slugs})."
            )
        membership = memberships[0]
    else:
        try:
            membership = membership_for(request.user, workspace)
        except Http404 as exc:
            raise HttpError(404, "No such workspace") from exc
    if not membership.has_role(role):
        raise HttpError(
            403,
            f"Your role in {membership.workspace.name} is {membership.get_role_display()}; "
            f"this needs {Role(role).label}.",
        )
    return membership


class FormErrorOut(Schema):
    detail: str
    errors: dict[str, list[str]]


def form_errors(form: BaseForm) -> FormErrorOut:
    """A form's errors field by field, the first of them as `detail`."""
    errors = {field: [str(m) for m in messages] for field, messages in form.errors.items()}
    first = next(iter(errors.values()))[0]
    return FormErrorOut(detail=first, errors=errors)
