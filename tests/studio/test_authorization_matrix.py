"""Who may reach what: every page, API operation and websocket of the studio, for an
anonymous visitor, a stranger (charlie, with a workspace of his own), a reader (bob), a
contributor (carol) and the owner (alice).

The routes come from the URLconf, the API's OpenAPI schema and the websocket routing,
and their ids and names from a seeded workspace, so a route added later is held to
the same rules without touching this file; only the few routes meant for everyone
are listed, each with its reason. The rules:

- anonymous: a page redirects to the login page, the API answers 401, a socket is closed;
- stranger: 404 (or 403), also for the workspace's ids asked for in his own workspace,
  and never the workspace's data;
- members: a page answers each role its `workspace_view` declares (reading and writing
  apart); the API lets every member read, refuses a reader's writes with 403 and a
  contributor's only where the refusal names the owner; the owner is never refused.

Every request that could change something runs in a transaction rolled back after it,
so each one sees the same seeded workspace and none starts background work.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse

from studio.api import api
from studio.asgi import application
from studio.models import Role
from studio.routing import websocket_urlpatterns
from tests.conftest import client_for
from tests.support.seed import Seeded, loopback_hosts

pytestmark = pytest.mark.django_db(transaction=True)

API_PREFIX = "api/v1/"
ADMIN_PREFIX = "admin/"
# Routes for everyone, signed in or not, and why each may be.
PUBLIC = {
    "login/": "signing in",
    "healthz": "probes; its errors are shown to staff only",
    "api/v1/": "the API's home, pointing at its documentation",
    "api/v1/openapi.json": "the API's description: operations, no data",
    "api/v1/docs": "the API's documentation page",
    "api/v1/batch-files/<link>": "a Batch node fetching a step's file: the signed link is its key",
}
# Routes of any signed-in user that belong to no workspace: each shows or changes only
# what is the user's own (checked for a stranger below).
PERSONAL = {
    "": "opens the user's last workspace",
    "logout/": "signing out",
    "workspaces/new/": "creates a workspace, if WORKSPACE_CREATORS lets the user",
    "settings/tokens/": "the user's own API tokens",
    "settings/tokens/<int:token_id>/revoke/": "revokes one of the user's own tokens",
}
# API operations of any signed-in user that belong to no workspace yet, and why each may be.
PERSONAL_API = {
    ("post", "/workspaces"): "creates a workspace, if WORKSPACE_CREATORS lets the user",
}
RANK: dict[str, int] = {Role.READER: 1, Role.CONTRIBUTOR: 2, Role.OWNER: 3}
MEMBERS = {"bob": Role.READER, "carol": Role.CONTRIBUTOR, "alice": Role.OWNER}
PARAMETER = re.compile(r"<(?:(\w+):)?(\w+)>|\{(\w+)(?::path)?\}")
WRITES = ("post", "put", "patch", "delete")


# ---------------------------------------------------------------- the routes


def url_routes() -> Iterator[tuple[str, object]]:
    """(route, view) for every URL pattern below the root; the admin site is one entry."""

    def walk(patterns, prefix: str):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if route == ADMIN_PREFIX:
                    yield route, None
                else:
                    yield from walk(pattern.url_patterns, route)
            else:
                yield route, pattern.callback

    yield from walk(get_resolver().url_patterns, "")


def api_operations() -> list[tuple[str, str, dict]]:
    """(method, route without the /api/v1 prefix, operation) for every operation in the schema."""
    schema = api.get_openapi_schema(path_prefix="")
    return [
        (method, path, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    ]


def ninja_route(route: str) -> str:
    """A URLconf route of the API as the OpenAPI schema writes it."""
    return "/" + PARAMETER.sub(lambda m: "{" + m.group(2) + "}", route.removeprefix(API_PREFIX))


# ---------------------------------------------------------------- the seeded values


def value_for(name: str, route: str, seeded: Seeded, *, user=None) -> str:
    """What a URL parameter names in the seeded workspace, for this route."""
    if name == "slug":
        return seeded.workspace.slug
    if name == "run_id":
        if "/sweeps/" in route or route.startswith("/sweeps"):
            return str(seeded.sweep.pk)
        if "/pipelines/" in route or route.startswith("/pipelines"):
            return str(seeded.pipeline.pk)
        return str(seeded.run.pk)
    if name == "name":
        if "experiments/" in route:
            return seeded.run.experiment.name
        for suffix, kind in (
            ("cloud", "databricks"),
            ("spark", "hdinsight"),
            ("nodes", "cluster"),
            ("scale", "cluster"),
            ("delete", "cluster"),
        ):
            if re.search(rf"[/-]{suffix}\b", route.split("name", 1)[1]):
                return seeded.targets[kind]
        return seeded.targets["vm"]
    if name == "path":
        return seeded.output if "/files/" in route else "train.py"
    if name == "stream":
        return "stdout"
    if name == "engine_id":
        return str(seeded.engine.pk)
    if name == "user_id":
        return str(seeded.members["bob"].pk)
    if name == "user":
        return seeded.members["bob"].username
    if name == "token_id":
        return str(seeded.token_rows[user or "alice"].pk)
    if name == "link":
        return "not-a-signed-link"
    raise AssertionError(f"{route}: no seeded value for <{name}>; say in value_for() what it names")


def url_of(route: str, seeded: Seeded, **kwargs) -> str:
    return "/" + PARAMETER.sub(
        lambda m: value_for(m.group(2) or m.group(3), route, seeded, **kwargs), route
    )


def markers(seeded: Seeded) -> list[str]:
    """Text only the seeded workspace's pages and answers hold."""
    return [seeded.workspace.name, "--seed"]


# ---------------------------------------------------------------- requests


@contextmanager
def rolled_back():
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def request(client: Client, method: str, url: str, **kwargs):
    with rolled_back():
        return getattr(client, method)(url, **kwargs)


def api_client(seeded: Seeded, user: str | None) -> Client:
    headers = {"Authorization": f"Bearer {seeded.tokens[user]}"} if user else {}
    return Client(headers=headers, raise_request_exception=False)


def page_client(seeded: Seeded, user: str | None) -> Client:
    if user is None:
        return Client(raise_request_exception=False)
    client = client_for(seeded.members[user])
    client.raise_request_exception = False
    return client


def leaked(response, seeded: Seeded) -> list[str]:
    if getattr(response, "streaming", False):
        body = b"".join(response.streaming_content)
    else:
        body = response.content
    return [m for m in markers(seeded) if m.encode() in body]


# ---------------------------------------------------------------- the test


@pytest.fixture
def matrix(seeded: Seeded, sshd, databricks_emulator, batch_emulator, datalake_emulator):
    return seeded, loopback_hosts(sshd, databricks_emulator, batch_emulator, datalake_emulator)


def test_every_route_answers_each_role_as_its_rules_say(matrix):
    seeded, hosts = matrix
    problems: list[str] = []
    api_routes = []
    for route, view in url_routes():
        if route in PUBLIC:
            continue
        if route.startswith(API_PREFIX):
            api_routes.append(route)
        elif route == ADMIN_PREFIX:
            problems += admin_problems(seeded)
        elif route in PERSONAL:
            problems += personal_problems(route, seeded)
        elif view is not None and (roles := getattr(view, "workspace_roles", None)):
            problems += page_problems(route, roles, seeded)
        else:
            problems.append(
                f"/{route}: not a workspace page (studio.access.workspace_view) and not listed "
                "as PUBLIC or PERSONAL here: say who may open it"
            )

    operations = api_operations()
    in_schema = {path for _, path, _ in operations}
    for route in api_routes:
        if ninja_route(route) not in in_schema:
            problems.append(f"/{route}: an API route outside the OpenAPI schema and not PUBLIC")
    for method, path, operation in operations:
        problems += api_problems(method, path, operation, seeded, hosts)

    for pattern in websocket_urlpatterns:
        consumer = getattr(pattern.callback, "consumer_class", None)
        role = getattr(consumer, "required_role", Role.READER)
        problems += socket_problems(str(pattern.pattern), seeded, role)

    assert not problems, "\n".join(problems)


def page_problems(route: str, roles: tuple[str, str], seeded: Seeded) -> list[str]:
    url = url_of(route, seeded)
    problems = []
    for method in ("get", "post"):
        label = f"{method.upper()} {url}"
        owner = request(page_client(seeded, "alice"), method, url)
        offered = owner.status_code != 405

        anonymous = request(page_client(seeded, None), method, url)
        if anonymous.status_code != 302 or not anonymous["Location"].startswith("/login/"):
            problems.append(f"{label} anonymous: {anonymous.status_code}, not to the login page")

        stranger = page_client(seeded, "charlie")
        response = request(stranger, method, url)
        if response.status_code not in (403, 404, 405) or leaked(response, seeded):
            problems.append(f"{label} stranger: {response.status_code} {leaked(response, seeded)}")
        # The same ids asked for in his own workspace.
        own = url.replace(f"/w/{seeded.workspace.slug}/", f"/w/{seeded.stranger_workspace.slug}/")
        names_something = PARAMETER.sub("", route) != route.replace("<slug:slug>", "")
        response = request(stranger, method, own)
        if leaked(response, seeded) or response.status_code >= 500:
            problems.append(f"{method.upper()} {own} stranger: {response.status_code} leaked")
        elif names_something and response.status_code not in (403, 404, 405):
            problems.append(f"{method.upper()} {own} stranger: {response.status_code}, not 404")

        needed = roles[0] if method == "get" else roles[1]
        for user, role in MEMBERS.items():
            response = owner if user == "alice" else request(page_client(seeded, user), method, url)
            status = response.status_code
            if not offered:
                expected_ok = status == 405
            elif RANK[role] < RANK[needed]:
                expected_ok = status == 403
            elif method == "get":
                expected_ok = status < 400
            else:
                expected_ok = status < 500 and status not in (401, 403, 404)
            if not expected_ok:
                problems.append(f"{label} {role.label} (page needs {Role(needed).label}): {status}")
    return problems


def personal_problems(route: str, seeded: Seeded) -> list[str]:
    problems = []
    for method in ("get", "post"):
        url = url_of(route, seeded, user="alice")
        anonymous = request(page_client(seeded, None), method, url)
        if anonymous.status_code != 302 or not anonymous["Location"].startswith("/login/"):
            problems.append(f"{method.upper()} {url} anonymous: {anonymous.status_code}")
        # charlie, with alice's token in the URL, reaches nothing of hers.
        response = request(page_client(seeded, "charlie"), method, url)
        if response.status_code >= 500 or leaked(response, seeded):
            found = leaked(response, seeded)
            problems.append(f"{method.upper()} {url} stranger: {response.status_code} {found}")
        if "<int:token_id>" in route and response.status_code not in (404, 405):
            problems.append(f"{method.upper()} {url} stranger: {response.status_code}, not 404")
        if request(page_client(seeded, "alice"), method, url).status_code >= 500:
            problems.append(f"{method.upper()} {url} owner: server error")
    return problems


def admin_problems(seeded: Seeded) -> list[str]:
    """The admin site is for staff: every member and the stranger are sent to its login."""
    urls = [reverse("admin:index")] + [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}")
        for model in admin.site._registry
        for view in ("changelist", "add")
    ]
    problems = []
    for user in (None, "charlie", *MEMBERS):
        client = page_client(seeded, user)
        for url in urls:
            response = request(client, "get", url)
            if response.status_code != 302 or "login" not in response["Location"]:
                problems.append(f"GET {url} {user or 'anonymous'}: {response.status_code}")
    return problems


def api_problems(method: str, path: str, operation: dict, seeded: Seeded, hosts: dict) -> list:
    names = {p["name"] for p in operation.get("parameters", [])}
    in_path = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
    url = "/api/v1" + PARAMETER.sub(lambda m: value_for(m.group(3), path, seeded), path)
    label = f"{method.upper()} {url}"
    scoped = "workspace" in names or "run_id" in names

    def call(user: str | None, workspace: str | None = seeded.workspace.slug):
        target = url + (f"?workspace={workspace}" if "workspace" in names else "")
        client = api_client(seeded, user)
        if method == "get":
            return client.get(target)
        return request(client, method, target, **request_body(operation, hosts))

    problems = []
    anonymous = call(None)
    if anonymous.status_code != 401:
        problems.append(f"{label} anonymous: {anonymous.status_code}, not 401")
    stranger = call("charlie")
    if leaked(stranger, seeded) or stranger.status_code >= 500:
        problems.append(f"{label} stranger: {stranger.status_code} {leaked(stranger, seeded)}")
    elif scoped and stranger.status_code not in (403, 404):
        problems.append(f"{label} stranger: {stranger.status_code}, not 404")
    if scoped and in_path:
        # The workspace's ids, asked for in his own workspace.
        own = call("charlie", seeded.stranger_workspace.slug)
        if own.status_code not in (403, 404) or leaked(own, seeded):
            problems.append(f"{label} stranger in his workspace: {own.status_code}, not 404")

    write = method in WRITES
    if (method, path) in PERSONAL_API:
        for user in MEMBERS:
            if call(user).status_code >= 500:
                problems.append(f"{label} {user}: server error")
        return problems
    for user, role in MEMBERS.items():
        response = call(user)
        status = response.status_code
        refusal = response.json().get("detail", "") if status == 403 else ""
        if status >= 500:
            ok = False
        elif role == Role.OWNER:
            ok = status not in (401, 403, 404) and (write or status < 300)
        elif not write:
            ok = status < 300
        elif role == Role.READER:
            ok = status == 403
        else:
            ok = status not in (401, 404) and (status != 403 or "needs Owner" in refusal)
        if not ok:
            problems.append(f"{label} {role.label}: {status} {refusal}")
    return problems


def request_body(operation: dict, hosts: dict) -> dict:
    """Client keyword arguments for the smallest body the operation's schema accepts."""
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        value = example_of(content["application/json"]["schema"], hosts)
        return {"data": value, "content_type": "application/json"}
    if "multipart/form-data" in content:
        schema = resolved(content["multipart/form-data"]["schema"])
        form = {}
        for name in schema.get("required", []):
            field = resolved(schema["properties"][name])
            if field.get("format") == "binary":
                form[name] = SimpleUploadedFile(name, b"x")
            else:
                form[name] = example_of(field, hosts)
        return {"data": form}
    return {}


_components = api.get_openapi_schema(path_prefix="")["components"]["schemas"]


def resolved(schema: dict) -> dict:
    while "$ref" in schema:
        schema = _components[schema["$ref"].rsplit("/", 1)[1]]
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return resolved(schema["allOf"][0])
    return schema


def example_of(schema: dict, hosts: dict, name: str = ""):
    schema = resolved(schema)
    if "anyOf" in schema:
        return example_of(next(s for s in schema["anyOf"] if s.get("type") != "null"), hosts)
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type"))
    if kind == "object":
        return {
            key: example_of(schema["properties"][key], hosts, key)
            for key in schema.get("required", [])
        }
    return {
        "string": hosts.get(name, "x"),
        "integer": 1,
        "number": 1.0,
        "boolean": False,
        "array": [],
    }.get(kind, "x")


def socket_problems(route: str, seeded: Seeded, role: str) -> list[str]:
    """Members with `role` or above connect; everyone else is closed with 4403."""
    path = url_of(route, seeded)
    problems = []
    for user in (None, "charlie", *MEMBERS):
        headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
        if user is not None:
            session = client_for(seeded.members[user]).cookies["sessionid"].value
            headers.append((b"cookie", f"sessionid={session}".encode()))
        first = async_to_sync(first_message)(path, headers)
        refused = first == {"type": "websocket.close", "code": 4403}
        if refused != (user not in MEMBERS or RANK[MEMBERS[user]] < RANK[role]):
            problems.append(f"WEBSOCKET {path} {user or 'anonymous'}: {first}")
    return problems


async def first_message(path: str, headers: list) -> dict:
    socket = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await socket.connect()
    try:
        return await socket.receive_output(timeout=5) if connected else {"refused": True}
    finally:
        await socket.disconnect()
