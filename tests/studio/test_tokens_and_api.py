import json
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from runs.models import Experiment
from studio.models import ApiToken, hash_token
from studio.services import token_create
from tests.conftest import client_for


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


def new_token_on_page(response) -> str:
    return response.content.decode().split('id="new-token" readonly value="')[1].split('"')[0]


def test_the_token_form_sets_expiry_and_read_only_and_the_list_shows_them(alice, as_alice):
    form = as_alice.get(reverse("token_list")).content.decode()
    assert '<label for="id_expires_in_days">Expires</label>' in form
    assert '<option value="90" selected>In 90 days</option>' in form
    assert '<label for="id_read_only">Read only</label>' in form

    as_alice.post(
        reverse("token_list"), {"name": "dashboard", "expires_in_days": "7", "read_only": "on"}
    )
    as_alice.post(reverse("token_list"), {"name": "ci", "expires_in_days": ""})
    dashboard = ApiToken.objects.get(name="dashboard")
    assert dashboard.read_only and dashboard.expires_at is not None
    assert timedelta(days=6, hours=23) < dashboard.expires_at - timezone.now() <= timedelta(days=7)
    ci = ApiToken.objects.get(name="ci")
    assert ci.expires_at is None and not ci.read_only

    rows = {
        row.split("<td>")[1].split("</td>")[0]: row
        for row in as_alice.get(reverse("token_list")).content.decode().split("<tr>")[2:]
    }
    assert "Read only" in rows["dashboard"]
    assert f"{dashboard.expires_at:%Y-%m-%d}" in rows["dashboard"]
    assert "Read and write" in rows["ci"] and "<td>never</td>" in rows["ci"]


def test_an_expired_token_is_refused_with_a_clear_401(alice, workspace):
    token, raw = token_create(user=alice, name="old", expires_at=timezone.now() + timedelta(days=1))
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    assert client.get("/api/v1/workspaces").status_code == 200

    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get("/api/v1/workspaces")
    assert response.status_code == 401
    detail = response.json()["detail"]
    assert "This token (old) expired on" in detail and "Settings → Access tokens" in detail
    assert "Expired" in client_for(alice).get(reverse("token_list")).content.decode()


def test_a_read_only_token_reads_but_changes_nothing(alice, workspace):
    _, raw = token_create(user=alice, name="viewer", read_only=True)
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    assert client.get("/api/v1/runs?workspace=vision").status_code == 200
    assert client.get("/api/v1/experiments?workspace=vision").status_code == 200

    refused = client.post(
        "/api/v1/experiments?workspace=vision", {"name": "x"}, content_type="application/json"
    )
    assert refused.status_code == 403
    assert "read-only" in refused.json()["detail"]
    for method, path in [
        ("post", "/api/v1/runs?workspace=vision"),
        ("post", "/api/v1/runs/1/cancel"),
        ("delete", "/api/v1/computes/local?workspace=vision"),
        ("post", "/api/v1/snapshots/missing?workspace=vision"),
    ]:
        assert getattr(client, method)(path).status_code == 403, (method, path)
    assert not Experiment.objects.filter(name="x").exists()


def test_create_token_command_makes_an_expiring_read_only_token(alice, workspace, capsys):
    call_command("create_token", "alice", "--name", "viewer", "--read-only", "--expires-days", "3")
    raw = capsys.readouterr().out.strip()
    token = ApiToken.objects.get(token_hash=hash_token(raw))
    assert token.read_only and token.expires_at is not None
    assert token.expires_at > timezone.now() + timedelta(days=2)
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    assert client.post("/api/v1/experiments?workspace=vision").status_code == 403
