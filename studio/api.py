"""The JSON API at /api/v1/: bearer personal access tokens, everything scoped to workspaces."""

from typing import Annotated

from django.http import Http404
from ninja import NinjaAPI, Query, Schema
from ninja.errors import HttpError
from ninja.security import HttpBearer

from studio.access import membership_for, require_role
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


# Paging of every list endpoint: a value out of these bounds is a 422 that names the bound,
# never a database error.
MAX_PAGE = 500
MAX_OFFSET = 1_000_000_000
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"At most {MAX_PAGE} per page.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many to skip.")]


def api_membership(request, workspace: str | None, role: str = Role.READER) -> Membership:
    """The caller's membership of `workspace` (or of their only workspace); 404 for strangers."""
    if not workspace:
        memberships = list(Membership.objects.filter(user=request.user).select_related("workspace"))
        if len(memberships) != 1:
            raise HttpError(400, "Say which workspace: add ?workspace=<slug> to the request.")
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


class WorkspaceOut(Schema):
    slug: str
    name: str
    role: str


@api.get("/workspaces", response=list[WorkspaceOut], tags=["workspaces"])
def workspaces_list(request):
    memberships = Membership.objects.filter(user=request.user).select_related("workspace")
    return [
        WorkspaceOut(slug=m.workspace.slug, name=m.workspace.name, role=m.role)
        for m in memberships.order_by("workspace__name")
    ]


from runs.api_logs import router as run_logs_router  # noqa: E402 - it imports this module

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
