from typing import Any

from django.http import HttpRequest

from studio.access import membership_last_used, memberships_of, workspace_creation_problem


def workspaces(request: HttpRequest) -> dict[str, Any]:
    """The workspace switcher's entries and the workspace the left nav links to.

    Pages outside a workspace (access tokens, a new workspace) keep the studio's nav,
    for the workspace used last.
    """
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    memberships = memberships_of(request.user)
    workspace = getattr(request, "workspace", None)
    if workspace is None:
        last = membership_last_used(request, memberships)
        workspace = last.workspace if last else None
    return {
        "my_memberships": memberships,
        "nav_workspace": workspace,
        "can_create_workspace": not workspace_creation_problem(request.user),
    }
