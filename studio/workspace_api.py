"""/api/v1/workspaces: the caller's workspaces, creating one, and its members.

Members go through the Settings page's forms and services: any member may list
them, only an Owner changes them, a workspace always keeps an owner, and a
non-staff Owner who adds someone is told nothing about which user names exist.
"""

from datetime import datetime

from django.urls import reverse
from ninja import Router, Schema, Status
from ninja.errors import HttpError

from studio import services
from studio.access import AuthenticatedRequest, memberships_of, workspace_creation_problem
from studio.api_auth import FormErrorOut, api_membership, form_errors
from studio.forms import MemberAddForm, WorkspaceForm
from studio.models import Membership, Role

router: Router = Router(tags=["workspaces"])


class WorkspaceOut(Schema):
    slug: str
    name: str
    role: str


class WorkspaceDetailOut(WorkspaceOut):
    created_at: datetime
    member_count: int
    url: str


class WorkspaceIn(Schema):
    name: str


class MemberOut(Schema):
    user: str
    role: str


class MemberIn(Schema):
    role: Role
    # A non-staff Owner adding someone gives their e-mail address too (as on the page).
    email: str = ""


class MemberChangeOut(Schema):
    detail: str
    # None for a non-staff Owner's addition, whether or not anyone matched.
    member: MemberOut | None


def workspace_detail_out(membership: Membership) -> WorkspaceDetailOut:
    workspace = membership.workspace
    return WorkspaceDetailOut(
        slug=workspace.slug,
        name=workspace.name,
        role=membership.role,
        created_at=workspace.created_at,
        member_count=workspace.memberships.count(),
        url=reverse("home", args=[workspace.slug]),
    )


def member_out(membership: Membership) -> MemberOut:
    return MemberOut(user=membership.user.username, role=membership.role)


@router.get("/workspaces", response=list[WorkspaceOut])
def workspaces_list(request: AuthenticatedRequest) -> list[WorkspaceOut]:
    """The workspaces the caller belongs to, with their role in each."""
    return [
        WorkspaceOut(slug=m.workspace.slug, name=m.workspace.name, role=m.role)
        for m in memberships_of(request.user)
    ]


@router.post("/workspaces", response={201: WorkspaceDetailOut, 400: FormErrorOut})
def workspaces_create(request: AuthenticatedRequest, payload: WorkspaceIn) -> Status:
    """Create a workspace; the caller is its Owner. 403 when this server keeps that to staff
    (WORKSPACE_CREATORS)."""
    problem = workspace_creation_problem(request.user)
    if problem:
        raise HttpError(403, problem)
    form = WorkspaceForm({"name": payload.name})
    if not form.is_valid():
        return Status(400, form_errors(form))
    workspace = services.workspace_create(name=form.cleaned_data["name"], owner=request.user)
    membership = Membership.objects.select_related("workspace").get(
        workspace=workspace, user=request.user
    )
    return Status(201, workspace_detail_out(membership))


@router.get("/workspaces/{slug}", response=WorkspaceDetailOut)
def workspaces_get(request: AuthenticatedRequest, slug: str) -> WorkspaceDetailOut:
    return workspace_detail_out(api_membership(request, slug))


@router.get("/workspaces/{slug}/members", response=list[MemberOut])
def members_list(request: AuthenticatedRequest, slug: str) -> list[MemberOut]:
    """The workspace's members and their roles: any member may look, as on Settings."""
    workspace = api_membership(request, slug).workspace
    members = workspace.memberships.select_related("user").order_by("user__username")
    return [member_out(m) for m in members]


@router.put("/workspaces/{slug}/members/{user}", response={200: MemberChangeOut, 400: FormErrorOut})
def members_put(
    request: AuthenticatedRequest, slug: str, user: str, payload: MemberIn
) -> MemberChangeOut | Status:
    """Change a member's role, or add the user `user` with it (Owner only). A non-staff Owner
    adds by user name and e-mail address together, and gets the same answer whether or not
    they matched an account; a staff Owner is told when no such user exists."""
    workspace = api_membership(request, slug, Role.OWNER).workspace
    membership = workspace.memberships.select_related("user").filter(user__username=user).first()
    if membership is not None:
        try:
            membership = services.membership_set(
                workspace=workspace, user=membership.user, role=payload.role
            )
        except ValueError as exc:
            raise HttpError(409, str(exc)) from None
        return MemberChangeOut(
            detail=f"{user} is now {Role(membership.role).label}.", member=member_out(membership)
        )
    form = MemberAddForm(
        {"username": user, "email": payload.email, "role": payload.role},
        staff=request.user.is_staff,
    )
    if not form.is_valid():
        return Status(400, form_errors(form))
    added = form.cleaned_data["user"]
    if added is not None:
        services.membership_add(workspace=workspace, user=added, role=payload.role)
    shown = workspace.memberships.get(user=added) if added and request.user.is_staff else None
    return MemberChangeOut(detail=form.added_message(), member=member_out(shown) if shown else None)


@router.delete("/workspaces/{slug}/members/{user}", response={204: None})
def members_delete(request: AuthenticatedRequest, slug: str, user: str) -> Status:
    """Remove a member (Owner only); the last owner stays (409)."""
    workspace = api_membership(request, slug, Role.OWNER).workspace
    membership = workspace.memberships.select_related("user").filter(user__username=user).first()
    if membership is None:
        raise HttpError(404, f"{user} is not a member of {workspace.name}")
    try:
        services.membership_remove(workspace=workspace, user=membership.user)
    except ValueError as exc:
        raise HttpError(409, str(exc)) from None
    return Status(204, None)
