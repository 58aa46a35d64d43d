"""The attached-VM endpoints of /api/v1/computes against a real sshd."""

import pytest

from compute import ssh
from compute.models import ComputeTarget
from runs.models import Experiment, Run

pytestmark = pytest.mark.django_db(transaction=True)


def api(path, workspace):
    return f"/api/v1/computes{path}?workspace={workspace.slug}"


def post(client, path, workspace, body=None):
    return client.post(api(path, workspace), body or {}, content_type="application/json")


def test_attach_read_check_and_delete_over_the_api(sshd, workspace, api_carol, api_bob):
    body = {
        "name": "api-vm",
        "address": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "authentication": "password",
        "password": sshd.password,
    }
    response = post(api_carol, "/vm", workspace, body)
    assert response.status_code == 202, response.content
    assert sshd.password not in response.content.decode()

    vm = api_bob.get(api("/api-vm", workspace)).json()
    assert vm["state"] == "Succeeded", vm["error"]
    assert vm["kind"] == "virtualmachine" and vm["created_by"] == "carol"
    assert vm["host_key_fingerprint"] == sshd.host_key_fingerprint
    assert vm["facts"]["system"] == "Linux" and vm["facts"]["cpus"] >= 1
    assert [s["key"] for s in vm["operation"]["steps"]] == [
        "connecting",
        "host_key",
        "authenticating",
        "preflight",
    ]
    assert vm["operation"]["state"] == "Succeeded"

    response = post(api_carol, "/api-vm/check", workspace)
    assert response.status_code == 202
    assert response.json()["operation"]["action"] == "check"
    assert response.json()["state"] == "Succeeded"

    assert api_carol.delete(api("/api-vm", workspace)).status_code == 204
    assert api_bob.get(api("/api-vm", workspace)).status_code == 404


def test_generated_key_pair_over_the_api(sshd, workspace, api_carol):
    pair = post(api_carol, "/keypair", workspace).json()
    assert pair["public_key"].startswith("ssh-ed25519 ")
    assert pair["public_key"] in pair["authorized_keys_command"]
    assert "PRIVATE" not in str(pair)
    sshd.authorize(pair["public_key"])
    body = {
        "name": "gen-vm",
        "address": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "authentication": "generate",
        "generated_key": pair["generated_key"],
    }
    vm = post(api_carol, "/vm", workspace, body).json()
    assert vm["public_key"] == pair["public_key"]
    assert api_carol.get(api("/gen-vm", workspace)).json()["state"] == "Succeeded"


def test_failed_attach_says_why_and_credentials_fix_it(sshd, workspace, api_carol, api_alice):
    body = {
        "name": "api-vm",
        "address": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "authentication": "password",
        "password": "not-the-password",
    }
    post(api_carol, "/vm", workspace, body)
    vm = api_carol.get(api("/api-vm", workspace)).json()
    assert vm["state"] == "Failed"
    assert "Permission denied (password)" in vm["error"]
    failed = [s for s in vm["operation"]["steps"] if s["state"] == "failed"]
    assert [s["key"] for s in failed] == ["authenticating"]

    credentials = {
        "username": sshd.username,
        "authentication": "password",
        "password": sshd.password,
    }
    # Replacing a target's credentials is an owner's call.
    refused = api_carol.put(
        api("/api-vm/credentials", workspace), credentials, content_type="application/json"
    )
    assert refused.status_code == 403
    response = api_alice.put(
        api("/api-vm/credentials", workspace), credentials, content_type="application/json"
    )
    assert response.status_code == 202
    assert response.json()["state"] == "Succeeded"
    assert response.json()["operation"]["action"] == "credentials"


def test_host_key_re_trust_over_the_api(sshd_factory, workspace, api_carol, api_alice):
    server = sshd_factory()
    body = {
        "name": "api-vm",
        "address": server.host,
        "port": server.port,
        "username": server.username,
        "authentication": "password",
        "password": server.password,
    }
    post(api_carol, "/vm", workspace, body)
    server.regenerate_host_key()
    ssh.pool.close_all()
    vm = post(api_carol, "/api-vm/check", workspace).json()
    assert vm["state"] == "Failed" and "has changed" in vm["error"]
    offered = vm["offered_host_key"]["fingerprint"]
    assert offered == server.host_key_fingerprint

    refused = post(api_carol, "/api-vm/host-key", workspace, {"fingerprint": offered})
    assert refused.status_code == 403 and "this needs Owner" in refused.json()["detail"]
    vm = post(api_alice, "/api-vm/host-key", workspace, {"fingerprint": offered}).json()
    assert (vm["state"], vm["host_key_fingerprint"], vm["offered_host_key"]) == (
        "Succeeded",
        offered,
        None,
    )


def test_delete_is_refused_while_a_run_has_not_ended(sshd, workspace, alice, api_carol):
    body = {
        "name": "api-vm",
        "address": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "authentication": "password",
        "password": sshd.password,
    }
    assert post(api_carol, "/vm", workspace, body).status_code == 202
    target = ComputeTarget.objects.get(name="api-vm")
    experiment = Experiment.objects.create(workspace=workspace, name="mnist", created_by=alice)
    run = Run.objects.create(
        workspace=workspace,
        experiment=experiment,
        number=7,
        status="Running",
        target=target,
        target_name=target.name,
        submitted_by=alice,
    )
    response = api_carol.delete(api("/api-vm", workspace))
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "api-vm still has 1 run that has not ended: mnist #7 (Running). "
        "Cancel it or wait until it ends, then detach api-vm."
    )
    assert ComputeTarget.objects.filter(name="api-vm").exists()

    Run.objects.filter(pk=run.pk).update(status="Failed")
    assert api_carol.delete(api("/api-vm", workspace)).status_code == 204
