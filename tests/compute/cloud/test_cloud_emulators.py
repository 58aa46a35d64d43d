"""The emulators answer raw HTTP the way the services do, whoever the client is."""

import base64
import hashlib
import hmac
import uuid
from email.utils import formatdate

import requests

from tests.emulators.batch import SIGNED_HEADERS


def test_databricks_answers_a_bad_token_and_an_unknown_cluster_with_its_error_json(
    databricks_emulator,
):
    url = f"{databricks_emulator.url}/api/2.1/clusters/get"

    anonymous = requests.get(url, params={"cluster_id": "x"}, timeout=10)
    wrong = requests.get(
        url, params={"cluster_id": "x"}, headers={"Authorization": "Bearer nope"}, timeout=10
    )
    unknown = requests.get(
        url,
        params={"cluster_id": "0000-000000-nothere"},
        headers={"Authorization": f"Bearer {databricks_emulator.token}"},
        timeout=10,
    )

    assert anonymous.status_code == 401
    assert anonymous.json()["error_code"] == "UNAUTHENTICATED"
    assert (wrong.status_code, wrong.json()) == (
        401,
        {"error_code": "UNAUTHENTICATED", "message": "Invalid access token."},
    )
    assert (unknown.status_code, unknown.json()) == (
        400,
        {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": "Cluster 0000-000000-nothere does not exist",
        },
    )


def test_databricks_refuses_a_run_without_a_cluster(databricks_emulator):
    response = requests.post(
        f"{databricks_emulator.url}/api/2.2/jobs/runs/submit",
        json={"run_name": "x", "tasks": [{"task_key": "t", "spark_python_task": {}}]},
        headers={"Authorization": f"Bearer {databricks_emulator.token}"},
        timeout=10,
    )

    assert response.status_code == 400
    assert response.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "One of job_cluster_key, new_cluster, or existing_cluster_id must be specified.",
    }
    assert databricks_emulator.runs == {}


def sign(emulator, method: str, path: str, query: dict, headers: dict) -> str:
    """A Shared Key signature made the way the Batch REST documentation describes."""
    lowered = {k.lower(): v for k, v in headers.items()}
    text = method + "\n" + "\n".join(lowered.get(h, "") for h in SIGNED_HEADERS) + "\n"
    for name in sorted(k for k in lowered if k.startswith("ocp-")):
        text += f"{name}:{lowered[name]}\n"
    text += f"/{emulator.account_name}{path}"
    for name in sorted(query):
        text += f"\n{name}:{query[name]}"
    digest = hmac.new(base64.b64decode(emulator.account_key), text.encode(), hashlib.sha256)
    return f"SharedKey {emulator.account_name}:{base64.b64encode(digest.digest()).decode()}"


def test_batch_accepts_a_documented_signature_and_refuses_a_tampered_request(batch_emulator):
    query = {"api-version": "2025-06-01"}
    headers = {"ocp-date": formatdate(usegmt=True)}
    headers["Authorization"] = sign(batch_emulator, "GET", "/pools", query, headers)

    signed = requests.get(f"{batch_emulator.url}/pools", params=query, headers=headers, timeout=10)
    # The same signature does not cover another path.
    tampered = requests.get(
        f"{batch_emulator.url}/pools/cpu-pool", params=query, headers=headers, timeout=10
    )
    unsigned = requests.get(f"{batch_emulator.url}/pools", params=query, timeout=10)

    assert signed.status_code == 200
    assert [p["id"] for p in signed.json()["value"]] == ["cpu-pool", "empty-pool"]
    assert tampered.status_code == 403
    assert tampered.json()["code"] == "AuthenticationFailed"
    assert tampered.json()["message"]["value"].startswith(
        "Server failed to authenticate the request."
    )
    assert unsigned.status_code == 401
    assert unsigned.json()["code"] == "MissingRequiredHeader"


def test_batch_answers_an_unknown_pool_with_pool_not_found(batch_emulator):
    query = {"api-version": "2025-06-01"}
    headers = {"ocp-date": formatdate(usegmt=True)}
    headers["Authorization"] = sign(batch_emulator, "GET", "/pools/gpu-pool", query, headers)

    response = requests.get(
        f"{batch_emulator.url}/pools/gpu-pool", params=query, headers=headers, timeout=10
    )

    assert response.status_code == 404
    assert response.json()["code"] == "PoolNotFound"
    assert response.json()["message"]["value"].startswith("The specified pool does not exist.")


def test_datalake_needs_a_token_from_its_authority_and_the_api_version(datalake_emulator):
    job = f"{datalake_emulator.url}/jobs/{uuid.uuid4()}"
    token = requests.post(
        f"{datalake_emulator.url}/{datalake_emulator.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": datalake_emulator.client_id,
            "client_secret": datalake_emulator.client_secret,
            "scope": "https://datalake.azure.net//.default",
        },
        timeout=10,
    ).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}

    anonymous = requests.get(job, params={"api-version": "2016-11-01"}, timeout=10)
    old_version = requests.get(
        job, params={"api-version": "2015-10-01-preview"}, headers=bearer, timeout=10
    )
    missing = requests.get(job, params={"api-version": "2016-11-01"}, headers=bearer, timeout=10)

    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "AuthenticationFailed"
    assert old_version.status_code == 400
    assert old_version.json()["error"]["code"] == "InvalidApiVersionParameter"
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "JobNotFound"
