"""Verbs about workspaces and their members: create, list, show; member add, remove, list."""

from __future__ import annotations

from urllib.parse import quote

from cli import output
from cli.context import Context

WORKSPACE_COLUMNS = (("SLUG", "slug"), ("NAME", "name"), ("ROLE", "role"))
WORKSPACE_DETAILS = ("slug", "name", "role", "member_count", "created_at", "url")


def workspace_create(ctx: Context) -> int:
    created = ctx.api.post("/workspaces", json={"name": ctx.args.name})
    if ctx.json:
        output.as_json(created)
    else:
        print(f"Created workspace {created['name']} ({created['slug']}); you are its Owner.")
    return 0


def workspace_list(ctx: Context) -> int:
    workspaces = ctx.api.get("/workspaces")
    if ctx.json:
        output.as_json(workspaces)
    else:
        output.table(workspaces, WORKSPACE_COLUMNS)
    return 0


def workspace_show(ctx: Context) -> int:
    workspace = ctx.api.get(f"/workspaces/{quote(ctx.workspace, safe='')}")
    if ctx.json:
        output.as_json(workspace)
    else:
        output.details(workspace | {"url": f"{ctx.api.url}{workspace['url']}"}, WORKSPACE_DETAILS)
    return 0


def members_path(ctx: Context, user: str = "") -> str:
    path = f"/workspaces/{quote(ctx.workspace, safe='')}/members"
    return f"{path}/{quote(user, safe='')}" if user else path


def member_add(ctx: Context) -> int:
    """Add a user with a role, or change a member's role (PUT: the same call does both)."""
    body = {"role": ctx.args.role, "email": ctx.args.email or ""}
    answer = ctx.api.put(members_path(ctx, ctx.args.user), json=body)
    print(answer["detail"])
    return 0


def member_remove(ctx: Context) -> int:
    ctx.api.delete(members_path(ctx, ctx.args.user))
    print(f"Removed {ctx.args.user} from {ctx.workspace}.")
    return 0


def member_list(ctx: Context) -> int:
    members = ctx.api.get(members_path(ctx))
    if ctx.json:
        output.as_json(members)
    else:
        output.table(members, (("USER", "user"), ("ROLE", "role")))
    return 0
