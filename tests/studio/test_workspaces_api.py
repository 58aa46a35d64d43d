"""/api/v1/workspaces: a user without one is told how to get one; creating; members."""

import pytest
from django.test import Client

from studio.models import Membership, Role, Workspace
from studio.services import token_create
from tests.conftest import api_client_for
from tests.factories import UserFactory


def put_member(client, slug: str, user: str, **body):
    return client.put(
        f"/api/v1/workspaces/{slug}/members/{user}", body, content_type="application/json"
    )


@pytest.fixture
def newcomer(db):
    return UserFactory(username="dana")


def test_a_user_without_a_workspace_is_told_to_create_one_when_they_may(newcomer, settings):
    settings.WORKSPACE_CREATORS = "everyone"
    client = api_client_for(newcomer)
    response = client.get("/api/v1/runs")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "You belong to no workspace yet: create one with POST /api/v1/workspaces "
        '{"name": "..."} (`trainyard workspace create NAME`), or ask a workspace owner to add you.'
    )

    created = client.post("/api/v1/workspaces", {"name": "Dana's lab"}, "application/json")
    assert created.status_code == 201, created.content
    assert created.json() | {"created_at": None} == {
        "slug": "danas-lab",
        "name": "Dana's lab",
        "role": "owner",
        "created_at": None,
        "member_count": 1,
        "url": "/w/danas-lab/",
    }
    assert client.get("/api/v1/runs").json() == []


def test_a_user_without_a_workspace_who_may_not_create_one_is_sent_to_an_administrator(
    newcomer,
):
    client = api_client_for(newcomer)
    response = client.get("/api/v1/computes")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "You belong to no workspace yet. Only staff create workspaces on this server: ask an "
        "administrator to create one for you, or to add you to an existing one."
    )
    refused = client.post("/api/v1/workspaces", {"name": "Mine"}, "application/json")
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("Only staff create workspaces on this server")
    assert not Workspace.objects.filter(name="Mine").exists()


def test_a_user_in_several_workspaces_is_told_their_slugs(workspace, alice, api_alice, settings):
    settings.WORKSPACE_CREATORS = "everyone"
    created = api_alice.post("/api/v1/workspaces", {"name": "Audio"}, "application/json")
    assert created.status_code == 201
    response = api_alice.get("/api/v1/runs")
    assert response.json()["detail"] == (
        "Say which workspace: add ?workspace=<slug> to the request (yours: audio, vision)."
    )


def test_a_workspace_name_is_checked_by_the_pages_form(alice, workspace, api_alice):
    alice.is_staff = True
    alice.save()
    response = api_alice.post("/api/v1/workspaces", {"name": "x" * 65}, "application/json")
    assert response.status_code == 400
    assert response.json()["errors"]["name"] == [
        "Ensure this value has at most 64 characters (it has 65)."
    ]


def test_a_read_only_token_cannot_create_a_workspace(alice, workspace):
    alice.is_staff = True
    alice.save()
    _, raw = token_create(user=alice, name="ro", read_only=True)
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    response = client.post("/api/v1/workspaces", {"name": "Nope"}, "application/json")
    assert response.status_code == 403


def test_show_a_workspace_to_members_only(workspace, api_bob, api_charlie):
    shown = api_bob.get("/api/v1/workspaces/vision").json()
    assert (shown["name"], shown["role"], shown["member_count"]) == ("Vision", "reader", 3)
    for path in ("", "/members"):
        assert api_charlie.get(f"/api/v1/workspaces/vision{path}").status_code == 404
    assert api_charlie.get("/api/v1/workspaces/vision").json() == {"detail": "No such workspace"}


def test_any_member_lists_the_members_a_stranger_gets_404(workspace, api_bob, api_charlie):
    assert api_bob.get("/api/v1/workspaces/vision/members").json() == [
        {"user": "alice", "role": "owner"},
        {"user": "bob", "role": "reader"},
        {"user": "carol", "role": "contributor"},
    ]
    assert api_charlie.get("/api/v1/workspaces/vision/members").status_code == 404


@pytest.mark.parametrize(("who", "status"), [("api_charlie", 404), ("api_carol", 403)])
def test_only_the_owner_changes_members(who, status, request, workspace, bob, charlie):
    client = request.getfixturevalue(who)
    add = put_member(client, "vision", "charlie", role="owner", email=charlie.email)
    assert add.status_code == status
    assert put_member(client, "vision", "bob", role="owner").status_code == status
    assert client.delete("/api/v1/workspaces/vision/members/bob").status_code == status
    assert not Membership.objects.filter(workspace=workspace, user=charlie).exists()
    assert Membership.objects.get(workspace=workspace, user=bob).role == Role.READER


def test_the_owner_changes_a_role_and_removes_a_member(workspace, bob, carol, api_alice):
    changed = put_member(api_alice, "vision", "bob", role="contributor")
    assert changed.status_code == 200
    assert changed.json() == {
        "detail": "bob is now Contributor.",
        "member": {"user": "bob", "role": "contributor"},
    }
    removed = api_alice.delete("/api/v1/workspaces/vision/members/carol")
    assert removed.status_code == 204
    assert not Membership.objects.filter(workspace=workspace, user=carol).exists()
    again = api_alice.delete("/api/v1/workspaces/vision/members/carol")
    assert again.status_code == 404
    assert again.json()["detail"] == "carol is not a member of Vision"


def test_the_last_owner_is_neither_demoted_nor_removed(workspace, alice, api_alice):
    demoted = put_member(api_alice, "vision", "alice", role="reader")
    assert demoted.status_code == 409
    assert demoted.json()["detail"] == (
        "A workspace needs at least one owner: make someone else owner first."
    )
    assert api_alice.delete("/api/v1/workspaces/vision/members/alice").status_code == 409
    assert Membership.objects.get(workspace=workspace, user=alice).role == Role.OWNER


def test_adding_tells_a_non_staff_owner_nothing_about_which_user_names_exist(
    workspace, charlie, api_alice
):
    answers = {}
    for username, email in [
        ("nobody", "nobody@example.com"),
        ("charlie", "not-charlies@example.com"),
        ("charlie", charlie.email.upper()),
    ]:
        response = put_member(api_alice, "vision", username, role="reader", email=email)
        assert response.status_code == 200
        body = response.json()
        answers[username, email] = (
            body["detail"].replace(email, "E").replace(username, "N"),
            body["member"],
        )
    assert len(set(map(str, answers.values()))) == 1, answers
    assert answers["nobody", "nobody@example.com"] == (
        "If a user called N has the e-mail address E, they are now Reader and listed among the "
        "members. Not listed? Check both with them, or ask an administrator.",
        None,
    )
    assert Membership.objects.get(workspace=workspace, user=charlie).role == Role.READER
    without_email = put_member(api_alice, "vision", "nobody", role="reader")
    assert without_email.status_code == 400
    assert without_email.json()["errors"] == {"email": ["This field is required."]}


def test_a_staff_owner_adds_by_user_name_and_hears_who_does_not_exist(
    workspace, alice, charlie, api_alice
):
    alice.is_staff = True
    alice.save()
    missing = put_member(api_alice, "vision", "nobody", role="reader")
    assert missing.status_code == 400
    assert missing.json()["detail"].startswith("No active user called “nobody”.")
    added = put_member(api_alice, "vision", "charlie", role="contributor")
    assert added.json() == {
        "detail": "charlie is now Contributor.",
        "member": {"user": "charlie", "role": "contributor"},
    }


def test_an_unknown_role_is_refused(workspace, api_alice):
    response = put_member(api_alice, "vision", "bob", role="admin")
    assert response.status_code == 422
    assert Membership.objects.get(workspace__slug="vision", user__username="bob").role == "reader"
