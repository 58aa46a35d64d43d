"""Attaching Azure Databricks, Data Lake Analytics and Azure Batch through their wizards and
the API, against the protocol emulators (tests/emulators/).

Tasks run eagerly (tests/settings.py), so a submitted wizard has finished its
check when the response comes back; the pages are read as a user would.
"""

from __future__ import annotations

import html
import json
import re

import pytest
import requests
from django.urls import reverse

from compute.models import ComputeOperation, ComputeTarget
from studio.outbound import checked_session

pytestmark = pytest.mark.django_db(transaction=True)

WIZARDS = {
    "databricks": "databricks_attach",
    "datalake": "datalake_attach",
    "batch": "batch_attach",
}


def databricks_form(emulator, **overrides) -> dict:
    return {
        "name": "dbx",
        "workspace_url": emulator.url,
        "resource_group": "ml-rg",
        "access_token": emulator.token,
        "cluster_id": "",
    } | overrides


def datalake_form(emulator, **overrides) -> dict:
    return {
        "name": "adla",
        "resource_group": "ml-rg",
        "account_name": emulator.account_name,
        "tenant_id": emulator.tenant_id,
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        "endpoint": emulator.url,
        "authority_url": emulator.url,
    } | overrides


def batch_form(emulator, **overrides) -> dict:
    return {
        "name": "cpubatch",
        "account_name": emulator.account_name,
        "account_url": emulator.url,
        "resource_group": "ml-rg",
        "account_key": emulator.account_key,
        "pool_id": "cpu-pool",
    } | overrides


def text(response) -> str:
    """The page's text as a reader sees it: tags dropped, spaces collapsed."""
    words = re.sub(r"<[^>]+>", " ", response.content.decode())
    return re.sub(r"\s+", " ", html.unescape(words))


def attach(client, workspace, wizard: str, data: dict) -> str:
    return text(client.post(reverse(WIZARDS[wizard], args=[workspace.slug]), data, follow=True))


def page_of(client, workspace, name: str) -> str:
    return text(client.get(reverse("compute_detail", args=[workspace.slug, name])))


def steps_of(name: str) -> dict[str, tuple[str, str]]:
    operation = ComputeOperation.objects.filter(target_name=name).first()
    assert operation is not None
    return {step["key"]: (step["state"], step["detail"]) for step in operation.steps}


# ---------------------------------------------------------------- Databricks


def test_databricks_wizard_explains_the_token(workspace, as_carol):
    page = html.unescape(
        as_carol.get(reverse("databricks_attach", args=[workspace.slug])).content.decode()
    )
    assert "User Settings → Developer → Access tokens" in page
    for label in ("Compute name", "Databricks workspace URL", "Resource group", "Access token"):
        assert label in page


def test_databricks_attach_lists_the_clusters(databricks_emulator, workspace, as_carol, as_bob):
    page = attach(
        as_carol,
        workspace,
        "databricks",
        databricks_form(databricks_emulator, cluster_id="0923-164208-meows279"),
    )
    assert "Attaching dbx" in page

    target = ComputeTarget.objects.get(name="dbx")
    assert target.state == "Succeeded"
    assert target.access_token == databricks_emulator.token
    page = page_of(as_bob, workspace, "dbx")
    assert "State: Succeeded" in page
    assert "Signed in as alice@example.com" in page
    assert "shared-autoscale" in page and "gpu-ml" in page
    assert "0923-164208-meows279" in page and "(default)" in page
    assert "ml-rg" in page
    assert databricks_emulator.token not in page
    assert steps_of("dbx")["default"] == ("done", "0923-164208-meows279 exists")


def test_databricks_bad_token_says_where_to_make_a_new_one(
    databricks_emulator, workspace, as_carol
):
    attach(
        as_carol,
        workspace,
        "databricks",
        databricks_form(databricks_emulator, access_token="dapi-wrong-token-123"),
    )

    page = page_of(as_carol, workspace, "dbx")
    assert "State: Failed" in page
    assert "The Databricks token was rejected (401)" in page
    assert "User Settings → Developer → Access tokens" in page
    assert "dapi-wrong-token-123" not in page
    assert steps_of("dbx")["signin"][0] == "failed"


def test_databricks_unknown_cluster_lists_the_real_ones(databricks_emulator, workspace, as_carol):
    attach(
        as_carol,
        workspace,
        "databricks",
        databricks_form(databricks_emulator, cluster_id="0101-000000-nothere1"),
    )

    page = page_of(as_carol, workspace, "dbx")
    assert "Databricks cluster '0101-000000-nothere1' does not exist" in page
    assert "shared-autoscale (0923-164208-meows279)" in page
    steps = steps_of("dbx")
    assert steps["signin"][0] == "done"
    assert steps["default"][0] == "failed"


def test_databricks_form_errors_say_what_to_do(workspace, as_carol):
    page = attach(
        as_carol,
        workspace,
        "databricks",
        {
            "name": "dbx",
            "workspace_url": "adb-123.azuredatabricks.net",
            "resource_group": "ml rg!",
            "access_token": "",
            "cluster_id": "shared-autoscale",
        },
    )
    assert "Enter the full URL with https://" in page
    assert "A resource group name has up to 90 letters" in page
    assert "A cluster ID looks like 0923-164208-meows279" in page
    assert not ComputeTarget.objects.filter(name="dbx").exists()


def test_a_new_token_is_checked_at_once(databricks_emulator, workspace, as_carol, as_alice):
    attach(
        as_carol,
        workspace,
        "databricks",
        databricks_form(databricks_emulator, access_token="dapi-wrong-token-123"),
    )
    url = reverse("cloud_credentials", args=[workspace.slug, "dbx"])
    assert as_carol.post(url, {"access_token": databricks_emulator.token}).status_code == 403
    page = html.unescape(as_alice.get(url).content.decode())
    assert "Access token" in page and "dapi-wrong-token-123" not in page

    response = as_alice.post(url, {"access_token": databricks_emulator.token}, follow=True)

    assert "New credentials saved for dbx" in html.unescape(response.content.decode())
    assert ComputeTarget.objects.get(name="dbx").state == "Succeeded"


def test_recheck_refreshes_the_clusters(databricks_emulator, workspace, as_carol):
    attach(as_carol, workspace, "databricks", databricks_form(databricks_emulator))
    databricks_emulator.token = "dapi-rotated-token-456"

    as_carol.post(reverse("cloud_check", args=[workspace.slug, "dbx"]))

    page = page_of(as_carol, workspace, "dbx")
    assert "State: Failed" in page
    assert "Last operation: Re-check" in page or "check" in page.lower()
    assert "The Databricks token was rejected (401)" in page


# ---------------------------------------------------------------- Data Lake Analytics


def test_datalake_wizard_and_page_say_the_service_is_retired(
    datalake_emulator, workspace, as_carol, as_bob
):
    wizard = html.unescape(
        as_carol.get(reverse("datalake_attach", args=[workspace.slug])).content.decode()
    )
    assert "Microsoft retired Azure Data Lake Analytics on 2024-02-29" in wizard
    assert "keeps it for existing accounts" in wizard

    attach(as_carol, workspace, "datalake", datalake_form(datalake_emulator))

    assert ComputeTarget.objects.get(name="adla").state == "Succeeded"
    page = page_of(as_bob, workspace, "adla")
    assert "Microsoft retired Azure Data Lake Analytics on 2024-02-29" in page
    assert "Recent jobs" in page
    assert datalake_emulator.tenant_id in page
    assert datalake_emulator.client_secret not in page


def test_datalake_wrong_secret_is_actionable(datalake_emulator, workspace, as_carol):
    attach(
        as_carol,
        workspace,
        "datalake",
        datalake_form(datalake_emulator, client_secret="not-the-secret-at-all"),
    )

    page = page_of(as_carol, workspace, "adla")
    assert "State: Failed" in page
    assert "Azure AD rejected the client secret" in page
    assert "Certificates & secrets" in page
    assert "not-the-secret-at-all" not in page


def test_datalake_ids_must_be_guids(workspace, as_carol, datalake_emulator):
    page = attach(
        as_carol,
        workspace,
        "datalake",
        datalake_form(
            datalake_emulator, tenant_id="contoso.onmicrosoft.com", account_name="My ADLA"
        ),
    )
    assert "The tenant ID is a GUID" in page
    assert "An account name has 3–24 lowercase letters and digits" in page


# ---------------------------------------------------------------- Batch


def test_batch_attach_lists_the_pools(batch_emulator, workspace, as_carol, as_bob):
    attach(as_carol, workspace, "batch", batch_form(batch_emulator))

    assert ComputeTarget.objects.get(name="cpubatch").state == "Succeeded"
    page = page_of(as_bob, workspace, "cpubatch")
    assert "cpu-pool" in page and "empty-pool" in page
    assert batch_emulator.account_key not in page
    assert steps_of("cpubatch")["default"][0] == "done"


def test_batch_pool_without_nodes_is_a_warning(batch_emulator, workspace, as_carol):
    attach(as_carol, workspace, "batch", batch_form(batch_emulator, pool_id="empty-pool"))

    page = page_of(as_carol, workspace, "cpubatch")
    assert "State: Succeeded" in page
    assert "Pool empty-pool has no nodes" in page


def test_batch_pool_that_does_not_exist(batch_emulator, workspace, as_carol):
    attach(as_carol, workspace, "batch", batch_form(batch_emulator, pool_id="gpu-pool"))

    page = page_of(as_carol, workspace, "cpubatch")
    assert "State: Failed" in page
    assert "Batch pool 'gpu-pool' does not exist" in page
    assert "cpu-pool" in page
    assert steps_of("cpubatch")["default"][0] == "failed"


def test_batch_wrong_key(batch_emulator, workspace, as_carol):
    wrong = "d3Jvbmcta2V5LXdyb25nLWtleQ=="
    attach(as_carol, workspace, "batch", batch_form(batch_emulator, account_key=wrong))

    page = page_of(as_carol, workspace, "cpubatch")
    assert "rejected the account key" in page
    assert "Keys page" in page
    assert wrong not in page


def test_batch_key_must_be_base64(batch_emulator, workspace, as_carol):
    page = attach(as_carol, workspace, "batch", batch_form(batch_emulator, account_key="my key!"))
    assert "This is not an account key" in page
    assert not ComputeTarget.objects.filter(name="cpubatch").exists()


# ---------------------------------------------------------------- permissions


@pytest.mark.parametrize("wizard", list(WIZARDS))
def test_wizards_are_for_contributors(wizard, workspace, as_alice, as_carol, as_bob, as_charlie):
    url = reverse(WIZARDS[wizard], args=[workspace.slug])
    assert as_alice.get(url).status_code == 200
    assert as_carol.get(url).status_code == 200
    assert as_bob.get(url).status_code == 403
    assert as_bob.post(url, {"name": "x"}).status_code == 403
    assert as_charlie.get(url).status_code == 404


def test_target_pages_and_actions_by_role(
    databricks_emulator, workspace, as_alice, as_carol, as_bob, as_charlie
):
    attach(as_carol, workspace, "databricks", databricks_form(databricks_emulator))
    detail = reverse("compute_detail", args=[workspace.slug, "dbx"])
    check = reverse("cloud_check", args=[workspace.slug, "dbx"])
    credentials = reverse("cloud_credentials", args=[workspace.slug, "dbx"])

    assert as_bob.get(detail).status_code == 200
    assert "Edit credentials" not in as_bob.get(detail).content.decode()
    assert "Edit credentials" not in as_carol.get(detail).content.decode()
    assert "Edit credentials" in as_alice.get(detail).content.decode()
    assert as_bob.post(check).status_code == 403
    for client in (as_bob, as_carol):
        assert client.get(credentials).status_code == 403
        assert client.post(credentials, {"access_token": "x"}).status_code == 403
    assert as_alice.get(credentials).status_code == 200
    for url in (detail, credentials):
        assert as_charlie.get(url).status_code == 404
    assert as_charlie.post(check).status_code == 404
    assert as_carol.post(check).status_code == 302
    assert (
        as_alice.get(reverse("cloud_credentials", args=[workspace.slug, "local"])).status_code
        == 404
    )


# ---------------------------------------------------------------- API


def post_json(client, path: str, body: dict, workspace):
    return client.post(
        f"/api/v1{path}?workspace={workspace.slug}",
        data=json.dumps(body),
        content_type="application/json",
    )


def test_api_attaches_all_three(
    databricks_emulator, datalake_emulator, batch_emulator, workspace, api_carol
):
    for path, body in (
        ("/computes/databricks", databricks_form(databricks_emulator)),
        ("/computes/datalake", datalake_form(datalake_emulator)),
        ("/computes/batch", batch_form(batch_emulator)),
    ):
        response = post_json(api_carol, path, body, workspace)
        assert response.status_code == 202, response.content
        out = response.json()
        assert out["state"] == "Succeeded"
        text = json.dumps(out)
        for secret in (
            databricks_emulator.token,
            datalake_emulator.client_secret,
            batch_emulator.account_key,
        ):
            assert secret not in text

    computes = api_carol.get(f"/api/v1/computes/dbx?workspace={workspace.slug}").json()
    assert computes["kind"] == "databricks"
    assert {c["cluster_name"] for c in computes["facts"]["clusters"]} == {
        "shared-autoscale",
        "gpu-ml",
    }
    batch = api_carol.get(f"/api/v1/computes/cpubatch?workspace={workspace.slug}").json()
    assert batch["kind"] == "batch"


def test_api_attach_errors(databricks_emulator, batch_emulator, workspace, api_carol):
    response = post_json(
        api_carol,
        "/computes/databricks",
        databricks_form(databricks_emulator, workspace_url="not a url"),
        workspace,
    )
    assert response.status_code == 400
    assert "workspace_url" in response.json()["errors"]

    post_json(api_carol, "/computes/batch", batch_form(batch_emulator), workspace)
    again = post_json(api_carol, "/computes/batch", batch_form(batch_emulator), workspace)
    assert again.status_code == 409

    failed = post_json(
        api_carol,
        "/computes/batch",
        batch_form(batch_emulator, name="batch2", pool_id="gpu-pool"),
        workspace,
    ).json()
    assert failed["state"] == "Failed"
    assert "Batch pool 'gpu-pool' does not exist" in failed["error"]


def test_api_credentials_and_recheck(databricks_emulator, workspace, api_carol, api_alice):
    post_json(
        api_carol,
        "/computes/databricks",
        databricks_form(databricks_emulator, access_token="dapi-wrong-token-123"),
        workspace,
    )
    refused = api_carol.put(
        f"/api/v1/computes/dbx/cloud-credentials?workspace={workspace.slug}",
        data=json.dumps({"access_token": databricks_emulator.token}),
        content_type="application/json",
    )
    assert refused.status_code == 403
    assert refused.json()["detail"] == "Your role in Vision is Contributor; this needs Owner."
    response = api_alice.put(
        f"/api/v1/computes/dbx/cloud-credentials?workspace={workspace.slug}",
        data=json.dumps({"access_token": databricks_emulator.token}),
        content_type="application/json",
    )
    assert response.status_code == 202
    assert response.json()["state"] == "Succeeded"
    recheck = post_json(api_carol, "/computes/dbx/cloud-check", {}, workspace)
    assert recheck.status_code == 202
    assert recheck.json()["operation"]["action"] == "check"


VALID_BODIES = {
    "/computes/databricks": {
        "name": "dbx",
        "workspace_url": "https://adb-1.1.azuredatabricks.net",
        "resource_group": "ml-rg",
        "access_token": "dapi-some-token-000",
    },
    "/computes/datalake": {
        "name": "adla",
        "resource_group": "ml-rg",
        "account_name": "contosoadla",
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "client_id": "0b3c3d2e-1111-2222-3333-444455556666",
        "client_secret": "some-client-secret",
    },
    "/computes/batch": {
        "name": "cpubatch",
        "account_name": "contosobatch",
        "account_url": "https://contosobatch.westeurope.batch.azure.com",
        "resource_group": "ml-rg",
        "account_key": "a2V5a2V5a2V5",
        "pool_id": "cpu-pool",
    },
}


@pytest.mark.parametrize("path", list(VALID_BODIES))
def test_api_attach_needs_contributor(path, workspace, api_bob, api_charlie):
    assert post_json(api_bob, path, VALID_BODIES[path], workspace).status_code == 403
    assert post_json(api_charlie, path, VALID_BODIES[path], workspace).status_code == 404
    assert not ComputeTarget.objects.filter(name=VALID_BODIES[path]["name"]).exists()


def test_api_cloud_actions_by_role(databricks_emulator, workspace, api_carol, api_bob, api_charlie):
    post_json(api_carol, "/computes/databricks", databricks_form(databricks_emulator), workspace)
    assert post_json(api_bob, "/computes/dbx/cloud-check", {}, workspace).status_code == 403
    assert (
        api_bob.put(
            f"/api/v1/computes/dbx/cloud-credentials?workspace={workspace.slug}",
            data=json.dumps({"access_token": "x"}),
            content_type="application/json",
        ).status_code
        == 403
    )
    assert post_json(api_charlie, "/computes/dbx/cloud-check", {}, workspace).status_code == 404
    assert api_bob.get(f"/api/v1/computes/dbx?workspace={workspace.slug}").status_code == 200
    assert api_charlie.get(f"/api/v1/computes/dbx?workspace={workspace.slug}").status_code == 404
    assert post_json(api_carol, "/computes/local/cloud-check", {}, workspace).status_code == 409


REFUSED = "(setting OUTBOUND_ALLOW)"


def test_service_addresses_the_operator_does_not_allow_are_refused(
    databricks_emulator, datalake_emulator, batch_emulator, workspace, api_carol, settings
):
    metadata = "http://169.254.169.254"
    bodies = [
        ("/computes/databricks", "workspace_url", databricks_form(databricks_emulator)),
        ("/computes/datalake", "endpoint", datalake_form(datalake_emulator)),
        ("/computes/batch", "account_url", batch_form(batch_emulator)),
    ]
    # The cloud metadata service is refused even where the tests' loopback hosts are allowed.
    for path, field, body in bodies:
        response = post_json(api_carol, path, body | {field: metadata}, workspace)
        assert response.status_code == 400, response.content
        assert REFUSED in response.json()["errors"][field][0]
    response = post_json(
        api_carol,
        "/computes/datalake",
        datalake_form(datalake_emulator, authority_url=f"{metadata}/"),
        workspace,
    )
    assert REFUSED in response.json()["errors"]["authority_url"][0]
    # Loopback only while the operator allows it.
    settings.OUTBOUND_ALLOW = ["public"]
    for path, field, body in bodies:
        response = post_json(api_carol, path, body, workspace)
        assert response.status_code == 400, response.content
        assert "Trainyard may not connect to 127.0.0.1" in response.json()["errors"][field][0]
    assert not ComputeTarget.objects.exclude(kind="local").exists()


def test_a_service_no_longer_allowed_is_refused_when_it_is_checked_again(
    databricks_emulator, workspace, api_carol, settings
):
    post_json(api_carol, "/computes/databricks", databricks_form(databricks_emulator), workspace)
    assert ComputeTarget.objects.get(name="dbx").state == "Succeeded"
    settings.OUTBOUND_ALLOW = ["public"]
    recheck = post_json(api_carol, "/computes/dbx/cloud-check", {}, workspace)
    assert recheck.status_code == 202
    target = ComputeTarget.objects.get(name="dbx")
    assert target.state == "Failed"
    assert "Trainyard may not connect to 127.0.0.1" in target.error


def test_the_clients_session_connects_only_where_the_rules_allow(databricks_emulator, settings):
    # What a name resolves to is checked at each connection, so one that resolved to a
    # public address when the form was checked cannot be pointed at loopback later.
    url = databricks_emulator.url.replace("127.0.0.1", "localhost")
    session = checked_session()
    assert session.get(f"{url}/api/2.0/preview/scim/v2/Me").status_code in (200, 401, 403)
    settings.OUTBOUND_ALLOW = ["public"]
    fresh = checked_session()
    with pytest.raises(requests.ConnectionError, match=r"setting OUTBOUND_ALLOW"):
        fresh.get(f"{url}/api/2.0/preview/scim/v2/Me")
