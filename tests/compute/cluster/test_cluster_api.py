"""/api/v1/computes: create, read with nodes, scale and delete a cluster over the API."""

import json

import pytest

from compute.cluster.autoscaler import cluster_autoscale
from compute.cluster.scheduler import node_release, node_request
from compute.models import ComputeTarget
from compute.ssh import generate_key_pair
from tests.support.clusters import (
    cluster_containers,
    nodes_granted,
    remove_test_containers,
)

pytestmark = pytest.mark.docker

API = "/api/v1/computes"


@pytest.fixture
def engine(docker_engine):
    yield docker_engine
    remove_test_containers(docker_engine)


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def patch(client, path, body):
    return client.patch(path, json.dumps(body), content_type="application/json")


@pytest.fixture
def cluster(engine, api_carol, workspace, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(
            api_carol,
            f"{API}/cluster?workspace={workspace.slug}",
            {"name": "api-cluster", "vm_size": "Standard_D2_v2", "max_nodes": 2},
        )
    assert response.status_code == 201, response.content
    return ComputeTarget.objects.get(workspace=workspace, name="api-cluster")


def test_create_then_read_the_cluster_with_its_nodes(engine, api_bob, workspace, cluster):
    assert cluster.state == "Succeeded"
    node_request(target=cluster, run_id=31)
    cluster_autoscale(target=cluster)
    [node] = nodes_granted(target=cluster, run_id=31)

    body = api_bob.get(f"{API}/api-cluster?workspace={workspace.slug}").json()
    assert body["kind"] == "amlcompute"
    assert body["state"] == "Succeeded"
    assert body["vm_size"] == "Standard_D2_v2"
    assert (body["min_nodes"], body["max_nodes"], body["idle_seconds_before_scaledown"]) == (
        0,
        2,
        120,
    )
    assert (body["current_nodes"], body["target_nodes"]) == (1, 1)
    assert body["engines"] == ["local"]
    [out] = body["nodes"]
    assert out["name"] == node.name
    assert out["state"] == "running" and out["run_id"] == 31
    assert out["memory_gib"] == 7.0
    assert out["container_id"] == node.container_id
    assert out["ssh_port"] is None  # the cluster has no SSH admin user
    names = [t["name"] for t in api_bob.get(f"{API}?workspace={workspace.slug}").json()]
    assert names == ["api-cluster", "local"]


def test_create_errors(engine, api_carol, workspace, cluster, django_capture_on_commit_callbacks):
    taken = post(
        api_carol,
        f"{API}/cluster?workspace={workspace.slug}",
        {"name": "API-cluster", "vm_size": "Standard_D2_v2", "max_nodes": 1},
    )
    assert taken.status_code == 409
    assert "already has a compute target called API-cluster" in taken.json()["detail"]
    unknown = post(
        api_carol,
        f"{API}/cluster?workspace={workspace.slug}",
        {"name": "other", "vm_size": "Standard_D2_v2", "max_nodes": 1, "engines": ["nope"]},
    )
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == "No Docker engine called nope in this workspace."
    keyless = post(
        api_carol,
        f"{API}/cluster?workspace={workspace.slug}",
        {"name": "other", "vm_size": "Standard_D2_v2", "max_nodes": 1, "admin_username": "ops"},
    )
    assert keyless.status_code == 400
    assert keyless.json()["detail"].startswith("Give the SSH public key of ops: ")
    assert "ssh-keygen -t ed25519" in keyless.json()["detail"]
    _, public_key = generate_key_pair()
    admin = {"name": "other", "vm_size": "Standard_D2_v2", "max_nodes": 1}
    bad_user = post(
        api_carol,
        f"{API}/cluster?workspace={workspace.slug}",
        {**admin, "admin_username": "Ops Team", "admin_ssh_public_key": public_key},
    )
    assert bad_user.status_code == 400
    assert bad_user.json()["detail"] == (
        "Ops Team is not a Linux user name: use lowercase letters, digits, _ or -, "
        "starting with a letter, at most 32 characters."
    )
    private_key = post(
        api_carol,
        f"{API}/cluster?workspace={workspace.slug}",
        {
            **admin,
            "admin_username": "ops",
            "admin_ssh_public_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=",
        },
    )
    assert private_key.status_code == 400
    assert private_key.json()["detail"].startswith("This is not an OpenSSH public key: ")
    assert "never the private key" in private_key.json()["detail"]
    assert not ComputeTarget.objects.filter(name="other").exists()

    # A key pasted over several lines is kept as the one line it is.
    folded = public_key.replace(" ", "\n  ", 1)
    with django_capture_on_commit_callbacks(execute=True):
        created = post(
            api_carol,
            f"{API}/cluster?workspace={workspace.slug}",
            {**admin, "admin_username": "ops", "admin_ssh_public_key": folded},
        )
    assert created.status_code == 201, created.content
    target = ComputeTarget.objects.get(workspace=workspace, name="other")
    assert target.config["admin_ssh_public_key"] == public_key.strip()


def test_patch_changes_only_what_is_given(engine, api_carol, workspace, cluster):
    response = patch(api_carol, f"{API}/api-cluster?workspace={workspace.slug}", {"max_nodes": 3})
    assert response.status_code == 200
    assert (response.json()["min_nodes"], response.json()["max_nodes"]) == (0, 3)
    bad = patch(api_carol, f"{API}/api-cluster?workspace={workspace.slug}", {"min_nodes": 5})
    assert bad.status_code == 400
    assert "Minimum nodes (5) is above maximum nodes (3)" in bad.json()["detail"]
    local = patch(api_carol, f"{API}/local?workspace={workspace.slug}", {"max_nodes": 3})
    assert local.status_code == 409


def test_patch_refuses_scale_settings_past_their_bounds(engine, api_carol, workspace, cluster):
    url = f"{API}/api-cluster?workspace={workspace.slug}"
    huge = patch(api_carol, url, {"max_nodes": 2**70})
    assert huge.status_code == 400
    assert "Maximum nodes is at most 1000" in huge.json()["detail"]
    idle = patch(api_carol, url, {"idle_seconds_before_scaledown": 10**12})
    assert idle.status_code == 400
    assert "at most 2592000 (30 days)" in idle.json()["detail"]
    assert (
        ComputeTarget.objects.get(workspace=workspace, name="api-cluster").config["max_nodes"]
        < 1000
    )


def test_patch_of_the_idle_time_alone_keeps_the_node_counts(engine, api_carol, workspace, cluster):
    response = patch(
        api_carol,
        f"{API}/api-cluster?workspace={workspace.slug}",
        {"idle_seconds_before_scaledown": 30},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["min_nodes"], body["max_nodes"], body["idle_seconds_before_scaledown"]) == (
        0,
        2,
        30,
    )
    node_request(target=cluster, run_id=61)
    cluster_autoscale(target=cluster)
    node_request(target=cluster, run_id=61)
    node_release(run_id=61)
    scaling = api_carol.get(f"{API}/api-cluster?workspace={workspace.slug}").json()["scaling"]
    assert scaling == "1 idle node: removed after 30 s idle, down to min nodes 0"
    negative = patch(
        api_carol,
        f"{API}/api-cluster?workspace={workspace.slug}",
        {"idle_seconds_before_scaledown": -1},
    )
    assert negative.status_code == 400
    assert negative.json()["detail"] == "Idle seconds before scale down cannot be negative."


def test_delete_removes_the_containers_and_the_target(
    engine, api_alice, workspace, cluster, django_capture_on_commit_callbacks
):
    node_request(target=cluster, run_id=41)
    cluster_autoscale(target=cluster)
    assert cluster_containers(engine, cluster)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_alice.delete(f"{API}/api-cluster?workspace={workspace.slug}")
    assert response.status_code == 202
    assert cluster_containers(engine, cluster) == []
    assert api_alice.get(f"{API}/api-cluster?workspace={workspace.slug}").status_code == 404


@pytest.mark.parametrize(("who", "status"), [("api_bob", 403), ("api_charlie", 404)])
def test_readers_and_strangers_cannot_change_clusters(
    engine, request, workspace, cluster, who, status
):
    client = request.getfixturevalue(who)
    query = f"?workspace={workspace.slug}"
    created = post(
        client, f"{API}/cluster{query}", {"name": "x1", "vm_size": "Standard_F2", "max_nodes": 1}
    )
    assert created.status_code == status
    assert patch(client, f"{API}/api-cluster{query}", {"max_nodes": 5}).status_code == status
    assert client.delete(f"{API}/api-cluster{query}").status_code == status
    cluster.refresh_from_db()
    assert cluster.state == "Succeeded" and cluster.config["max_nodes"] == 2
    assert not ComputeTarget.objects.filter(name="x1").exists()


@pytest.mark.parametrize(
    ("who", "status"),
    [("api_alice", 200), ("api_carol", 200), ("api_bob", 200), ("api_charlie", 404)],
)
def test_who_may_read(engine, request, workspace, cluster, who, status):
    client = request.getfixturevalue(who)
    assert client.get(f"{API}/api-cluster?workspace={workspace.slug}").status_code == status
    assert client.get(f"{API}?workspace={workspace.slug}").status_code == status
