"""Names are matched whole and paging values out of bounds are a 422, on every list endpoint."""

import pytest

from compute.cloud.forms import BATCH_ACCOUNT_RE, RESOURCE_GROUP_RE
from compute.cluster.services import admin_username_problem, ssh_public_key_problem
from compute.names import COMPUTE_NAME_RE
from compute.vm.forms import HOST_NAME_RE, LINUX_USER_RE
from compute.vm.spark import master_problem
from pipelines.definition import NAME_RE as PIPELINE_STEP_NAME
from runs.logs.store import STREAM_NAME
from runs.services.environments import ENVIRONMENT_NAME
from runs.services.experiments import EXPERIMENT_NAME
from sweeps.definition import ARGUMENT_NAME


def test_an_experiment_name_with_a_trailing_newline_is_refused(api_carol):
    response = api_carol.post(
        "/api/v1/experiments?workspace=vision",
        {"name": "exp\n"},
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    assert "exp" in response.json()["detail"]
    created = api_carol.post(
        "/api/v1/experiments?workspace=vision", {"name": "exp"}, content_type="application/json"
    )
    assert created.status_code == 201


@pytest.mark.parametrize(
    "pattern",
    [
        EXPERIMENT_NAME,
        ENVIRONMENT_NAME,
        STREAM_NAME,
        COMPUTE_NAME_RE,
        PIPELINE_STEP_NAME,
        ARGUMENT_NAME,
        LINUX_USER_RE,
        HOST_NAME_RE,
        BATCH_ACCOUNT_RE,
        RESOURCE_GROUP_RE,
    ],
)
def test_every_name_pattern_refuses_a_trailing_newline(pattern):
    assert pattern.fullmatch("abc1")
    assert not pattern.fullmatch("abc1\n")


def test_user_and_key_checks_refuse_a_trailing_newline():
    assert admin_username_problem("azureuser") == ""
    assert admin_username_problem("azureuser\n")
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"
    assert ssh_public_key_problem(key) == ""
    assert ssh_public_key_problem(key + "\nssh-ed25519 AAAA other")
    assert master_problem("yarn") == ""
    assert master_problem("yarn\n")


def test_a_digest_must_be_the_whole_value(api_carol):
    digest = "a" * 64
    ok = api_carol.post(
        "/api/v1/snapshots/missing?workspace=vision", [digest], content_type="application/json"
    )
    assert ok.status_code == 200 and ok.json() == [digest]
    wrapped = api_carol.post(
        "/api/v1/snapshots/missing?workspace=vision",
        [f"../{digest}/x"],
        content_type="application/json",
    )
    assert wrapped.status_code == 422


LISTS = ["/api/v1/runs", "/api/v1/sweeps", "/api/v1/pipelines"]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    "query",
    ["offset=-5", "offset=99999999999999999999999", "limit=0", "limit=-1", "limit=100000"],
)
def test_paging_out_of_bounds_is_a_422_naming_the_field(api_bob, path, query):
    response = api_bob.get(f"{path}?workspace=vision&{query}")
    assert response.status_code == 422, response.content
    field = query.split("=")[0]
    assert response.json()["detail"][0]["loc"] == ["query", field]


@pytest.mark.parametrize("path", LISTS)
def test_paging_within_bounds_answers(api_bob, path):
    assert api_bob.get(f"{path}?workspace=vision&offset=1000&limit=500").json() == []


@pytest.mark.parametrize(
    "query", ["offset=99999999999999999999999", "offset=-99999999999999999999999", "limit=-1"]
)
def test_log_paging_out_of_bounds_is_a_422(api_alice, query):
    from tests.runs.test_runs_api import submit

    run_id = submit(api_alice).json()["id"]
    response = api_alice.get(f"/api/v1/runs/{run_id}/logs?{query}")
    assert response.status_code == 422, response.content
    assert api_alice.get(f"/api/v1/runs/{run_id}/logs?offset=-5").status_code == 200
