import json
import re

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from studio.models import ApiToken, hash_token


def test_token_is_shown_once_and_stored_hashed(alice, as_alice):
    response = as_alice.post(reverse("token_list"), {"name": "laptop CLI"})
    page = response.content.decode()
    token = ApiToken.objects.get(user=alice, name="laptop CLI")
    raw = page.split('id="new-token" readonly value="')[1].split('"')[0]
    assert raw.startswith("ty_") and token.token_hash == hash_token(raw)
    assert raw not in json.dumps(list(ApiToken.objects.values()), default=str)
    again = as_alice.get(reverse("token_list")).content.decode()
    assert raw not in again and f"{token.prefix}…" in again


def test_token_auth_valid_revoked_and_wrong(alice, workspace, as_alice):
    as_alice.post(reverse("token_list"), {"name": "ci"})
    page = as_alice.get(reverse("token_list")).content.decode()
    assert "ci" in page
    out = Client()
    raw_response = as_alice.post(reverse("token_list"), {"name": "script"}).content.decode()
    raw = raw_response.split('id="new-token" readonly value="')[1].split('"')[0]

    ok = out.get("/api/v1/workspaces", headers={"Authorization": f"Bearer {raw}"})
    assert ok.status_code == 200
    assert ok.json() == [{"slug": workspace.slug, "name": "Vision", "role": "owner"}]

    wrong = out.get("/api/v1/workspaces", headers={"Authorization": "Bearer ty_nope"})
    assert wrong.status_code == 401
    assert out.get("/api/v1/workspaces").status_code == 401

    token = ApiToken.objects.get(name="script")
    as_alice.post(reverse("token_revoke", args=[token.pk]))
    revoked = out.get("/api/v1/workspaces", headers={"Authorization": f"Bearer {raw}"})
    assert revoked.status_code == 401


def test_a_user_cannot_revoke_someone_elses_token(alice, as_charlie):
    from studio.services import token_create

    token, _ = token_create(user=alice, name="mine")
    assert as_charlie.post(reverse("token_revoke", args=[token.pk])).status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_create_token_command_prints_a_working_token(alice, workspace, capsys):
    call_command("create_token", "alice", "--name", "nightly")
    raw = capsys.readouterr().out.strip()
    response = Client().get("/api/v1/workspaces", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 200 and response.json()[0]["slug"] == workspace.slug


def test_workspaces_api_lists_only_the_callers(api_bob, api_charlie, workspace):
    assert [w["slug"] for w in api_bob.get("/api/v1/workspaces").json()] == [workspace.slug]
    assert [w["role"] for w in api_bob.get("/api/v1/workspaces").json()] == ["reader"]
    assert workspace.slug not in [w["slug"] for w in api_charlie.get("/api/v1/workspaces").json()]


@pytest.mark.django_db
def test_openapi_and_docs_are_published(client):
    spec = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/workspaces" in spec["paths"]
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    page = docs.content.decode()
    # The studio must work offline: the docs page loads nothing from another host.
    assert not re.search(r"https?://", page), page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert {"/static/ninja/swagger-ui.css", "/static/ninja/swagger-ui-bundle.js"} <= set(assets)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
