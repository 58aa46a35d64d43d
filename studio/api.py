"""The JSON API at /api/v1/: bearer personal access tokens, everything scoped to workspaces."""

from typing import Annotated

from django.http import Http404
from ninja import NinjaAPI, Query, Schema
from ninja.errors import HttpError
from ninja.security import HttpBearer

from studio.access import membership_for, require_role, workspace_creation_problem
from studio.errors import ServiceError, api_service_error
from studio.models import Membership, Role
from studio.services import TokenExpired, token_authenticate

# What a read-only token may do: read.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenAuth(HttpBearer):
    def authenticate(self, request, token):
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
        request.api_token = api_token
        return api_token.user


api = NinjaAPI(
    title="Trainyard API",
    version="1",
    urls_namespace="api",
    auth=TokenAuth(),
    description=(
        "Create a personal access token in Settings → Access tokens (or "
        "`manage.py create_token USERNAME --name NAME`) and send it as "
        "`Authorization: Bearer <token>`."
    ),
)

api.add_exception_handler(ServiceError, api_service_error)


# Paging of every list endpoint: a value out of these bounds is a 422 that names the bound,
# never a database error.
MAX_PAGE = 500
MAX_OFFSET = 1_000_000_000
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"At most {MAX_PAGE} per page.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many to skip.")]


def no_workspace_problem(user) -> str:
    """What a user who belongs to no workspace is told, with how to get one."""
    problem = workspace_creation_problem(user)
    if problem:
        return f"You belong to no workspace yet. {problem}"
    return (
        "You belong to no workspace yet: create one with POST /api/v1/workspaces "
        '{"name": "..."} (`trainyard workspace create NAME`), or ask a workspace owner to add you.'
    )


def api_membership(request, workspace: str | None, role: str = Role.READER) -> Membership:
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


def api_require(request, membership: Membership, role: str) -> None:
    try:
        require_role(membership, role)
    except Exception as exc:
        raise HttpError(403, str(exc)) from exc


class FormErrorOut(Schema):
    detail: str
    errors: dict[str, list[str]]


def form_errors(form) -> FormErrorOut:
    """A form's errors field by field, the first of them as `detail`."""
    errors = {field: [str(m) for m in messages] for field, messages in form.errors.items()}
    first = next(iter(errors.values()))[0]
    return FormErrorOut(detail=first, errors=errors)


from studio.workspace_api import router as workspaces_router  # noqa: E402 - it imports this module

api.add_router("/", workspaces_router)

from runs.logs.api import router as run_logs_router  # noqa: E402 - it imports this module

api.add_router("/", run_logs_router)

# Before the cluster router: its /computes/{name} would otherwise answer /computes/vm.
from compute.api import router as vm_router  # noqa: E402 - it imports this module

api.add_router("/", vm_router)

from compute.cloud_api import router as cloud_router  # noqa: E402 - it imports this module

api.add_router("/", cloud_router)

from compute.cluster_api import router as compute_router  # noqa: E402 - it imports this module

api.add_router("/", compute_router)

from runs.api import router as runs_router  # noqa: E402 - it imports this module

api.add_router("/", runs_router)

from pipelines.api import router as pipelines_router  # noqa: E402 - it imports this module

api.add_router("/", pipelines_router)

from sweeps.api import router as sweeps_router  # noqa: E402 - it imports this module

api.add_router("/", sweeps_router)
