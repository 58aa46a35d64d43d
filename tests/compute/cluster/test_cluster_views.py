"""The cluster pages: the wizard, the detail page with its nodes, scale, delete, engines."""

import html as html_module
import re
import secrets
import socket
import time
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from compute.cluster.autoscaler import cluster_autoscale
from compute.cluster.scheduler import node_address, node_docker, node_request
from compute.cluster.services import engine_default_ensure
from compute.models import (
    ComputeOperation,
    ComputeTarget,
    DockerEngine,
    Node,
    NodeState,
    OperationState,
)
from compute.ssh import generate_key_pair
from tests.services.sshd import free_port
from tests.support.clusters import (
    cluster_containers,
    make_cluster,
    nodes_granted,
    remove_test_containers,
)
from tests.support.runs import submit, write_tree

pytestmark = pytest.mark.docker


@pytest.fixture
def engine(docker_engine):
    yield docker_engine
    remove_test_containers(docker_engine)


@pytest.fixture
def cluster(engine, workspace, alice, django_capture_on_commit_callbacks):
    return make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        vm_size="Standard_DS3_v2",
        max_nodes=1,
    )


def url(workspace, tail=""):
    return f"/w/{workspace.slug}/compute/{tail}"


WIZARD = {
    "name": "gpu-less",
    "vm_tier": "cpu",
    "vm_priority": "lowpriority",
    "vm_size": "Standard_D2_v3",
    "min_nodes": "0",
    "max_nodes": "2",
    "idle_seconds_before_scaledown": "120",
    "vnet_name": "research-vnet",
    "subnet_name": "default",
}


def test_the_wizard_lists_sizes_engines_and_labels(engine, as_carol, workspace):
    page = as_carol.get(url(workspace, "new/cluster/"))
    html = page.content.decode()
    assert page.status_code == 200
    for label in (
        "Compute name",
        "Virtual machine tier",
        "Virtual machine priority",
        "Virtual machine size",
        "Minimum nodes",
        "Maximum nodes",
        "Idle seconds before scale down",
        "Docker engines",
        "Virtual network",
        "Subnet",
        "SSH admin user",
        "SSH public key",
    ):
        assert label in html
    assert "low-priority nodes can be preempted" in html.lower()
    for size in ("Standard_D2_v2", "Standard_DS3_v2", "Standard_D4s_v3", "Standard_F8"):
        assert f'value="{size}"' in html
    for size in ("Standard_E16_v3", "Standard_NC6", "Standard_ND6s", "Standard_NV12"):
        assert f'value="{size}"' in html
    assert "local (unix:///var/run/docker.sock)" in html
    assert "local: reachable, Docker " in html and "; node image present." in html
    assert "is missing on Docker engine" not in html


def test_the_wizard_says_when_the_node_image_is_missing_and_cannot_be_built(
    engine, as_alice, workspace, settings
):
    settings.CLUSTER_NODE_IMAGE = "trainyard/node:not-built"
    html = as_alice.get(url(workspace, "new/cluster/")).content.decode()
    assert "local: reachable, Docker " in html
    assert "; node image trainyard/node:not-built missing. CLUSTER_NODE_IMAGE names " in html
    assert "load that image into the engine (`docker load`)" in html


def test_the_wizard_says_how_to_start_an_engine_when_none_answers(as_alice, workspace, settings):
    settings.CLUSTER_DEFAULT_ENGINE_URL = "unix:///tmp/ty-no-such-docker.sock"
    html = as_alice.get(url(workspace, "new/cluster/")).content.decode()
    assert "Docker engine at unix:///tmp/ty-no-such-docker.sock is unreachable (" in html
    assert "No Docker engine answers, and cluster nodes are containers on one." in html
    assert "as root with `sh scripts/start-dockerd.sh`" in html


@pytest.fixture
def silent_engine_url():
    """An address that takes connections and never answers, as a hung dockerd does."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"


def test_the_wizard_opens_at_once_with_what_it_last_knew_of_unreachable_engines(
    engine, as_carol, workspace, silent_engine_url, settings
):
    # Long enough for the local engine to answer on a busy machine; the hung one never does.
    settings.CLUSTER_ENGINE_CHECK_SECONDS = 5
    reachable_at = timezone.make_aware(datetime(2026, 11, 30, 8, 15))
    DockerEngine.objects.create(
        workspace=workspace,
        name="hung",
        url=silent_engine_url,
        facts={"cpus": 64, "memory_bytes": 2**38, "gpu_runtime": False, "node_image": True},
        checked_at=reachable_at,
        reachable_at=reachable_at,
    )
    closed = f"tcp://127.0.0.1:{free_port()}"
    DockerEngine.objects.create(workspace=workspace, name="gone", url=closed)

    html = as_carol.get(url(workspace, "new/cluster/")).content.decode()
    assert (
        f"Docker engine hung at {silent_engine_url} has not answered within 5 s: reload this "
        "page in a moment to check again. Engine hung was last reachable at 2026-11-30 08:15:00."
        in html
    )
    assert f"Docker engine at {closed} is unreachable (" in html
    assert "Engine gone has not been reachable since it was registered." in html
    assert "is missing on Docker engine" not in html
    local = DockerEngine.objects.get(workspace=workspace, name="local")
    assert local.reachable_at is not None
    assert local.error == "" and local.reachable_at > timezone.now() - timedelta(minutes=1)
    assert DockerEngine.objects.get(name="hung").checked_at == reachable_at


def test_a_node_whose_image_is_missing_fails_with_how_to_build_it_and_nothing_is_pulled(
    engine, as_bob, workspace, cluster, settings
):
    settings.CLUSTER_NODE_IMAGE = "trainyard/node:not-built"
    since = int(time.time())
    node_request(target=cluster, run_id=31)
    cluster_autoscale(target=cluster)
    html = as_bob.get(url(workspace, f"{cluster.name}/")).content.decode()
    missing = "The node image trainyard/node:not-built is missing on Docker engine local"
    assert f"1 run waiting: a node failed to start ({missing}" in html
    assert "Creating a cluster on that engine builds it again, or run `make node-image`" in html
    assert cluster_containers(engine, cluster) == []
    pulls = engine.events(
        since=since, until=int(time.time()) + 1, decode=True, filters={"type": "image"}
    )
    assert [e for e in pulls if "not-built" in e.get("id", "")] == []


def test_creating_through_the_wizard_provisions_and_shows_the_cluster(
    engine, as_carol, workspace, django_capture_on_commit_callbacks
):
    local = engine_default_ensure(workspace=workspace)
    with django_capture_on_commit_callbacks(execute=True):
        response = as_carol.post(url(workspace, "new/cluster/"), {**WIZARD, "engines": [local.pk]})
    assert response.status_code == 302
    assert response["Location"] == url(workspace, "gpu-less/")
    target = ComputeTarget.objects.get(workspace=workspace, name="gpu-less")
    assert target.config["vm_priority"] == "lowpriority"
    assert target.config["vnet_name"] == "research-vnet"

    html = as_carol.get(url(workspace, "gpu-less/")).content.decode()
    assert "Succeeded" in html
    assert "Standard_D2_v3 (2 vCPUs, 8 GiB RAM, 50 GiB temporary storage)" in html
    assert "Low priority" in html
    assert "research-vnet / default" in html
    no_vnet = "research-vnet: no Docker network of that name on engine local, nodes use the host"
    assert no_vnet in html
    assert "<strong>0</strong> current / <strong>0</strong> target" in html

    list_html = as_carol.get(url(workspace)).content.decode()
    assert "gpu-less" in list_html and "0–2" in list_html


def test_wizard_errors_say_what_to_do(engine, as_alice, workspace, cluster):
    response = as_alice.post(
        url(workspace, "new/cluster/"),
        {
            **WIZARD,
            "name": cluster.name,
            "vm_tier": "gpu",
            "min_nodes": "3",
            "admin_ssh_public_key": "-----BEGIN OPENSSH PRIVATE KEY-----",
        },
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert f"This workspace already has a compute target called {cluster.name}" in html
    assert "Standard_D2_v3 is a CPU size: pick a GPU size, or switch the tier to CPU." in html
    assert "Minimum nodes (3) is above maximum nodes (2)" in html
    assert "This is not an OpenSSH public key" in html
    assert not ComputeTarget.objects.filter(workspace=workspace, kind="amlcompute").exclude(
        pk=cluster.pk
    )


def test_the_node_table_shows_how_the_admin_user_connects(
    engine, as_bob, workspace, alice, django_capture_on_commit_callbacks
):
    _, public_key = generate_key_pair()
    cluster = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        min_nodes=1,
        admin_username="azureuser",
        admin_ssh_public_key=public_key,
    )
    [node] = Node.objects.filter(target=cluster)
    html = as_bob.get(url(workspace, f"{cluster.name}/")).content.decode()
    assert f'<code class="ssh-command">ssh -p {node.ssh_port} azureuser@testserver</code>' in html


@pytest.fixture
def vnet_name(engine):
    """A virtual network name no Docker network has yet; the test may create one."""
    name = f"vnet-{secrets.token_hex(3)}"
    yield name
    remove_test_containers(engine)
    for network in engine.networks.list(names=[name]):
        network.remove()


def test_nodes_join_the_virtual_network_once_the_engine_has_it(
    engine, vnet_name, as_bob, workspace, alice, django_capture_on_commit_callbacks
):
    cluster = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        max_nodes=2,
        vnet_name=vnet_name,
    )
    page = url(workspace, f"{cluster.name}/")
    html = as_bob.get(page).content.decode()
    assert (
        f"{vnet_name}: no Docker network of that name on engine local, nodes use the host network"
        in html
    )
    node_request(target=cluster, run_id=41)
    cluster_autoscale(target=cluster)
    [on_host] = nodes_granted(target=cluster, run_id=41)
    assert on_host.network == "host"

    # Created after provisioning: the next node to start joins it.
    engine.networks.create(vnet_name, driver="bridge", internal=True)
    node_request(target=cluster, run_id=42)
    cluster_autoscale(target=cluster)
    [joined] = nodes_granted(target=cluster, run_id=42)
    assert joined.network == vnet_name
    container = node_docker(joined).containers.get(joined.container_id)
    assert list(container.attrs["NetworkSettings"]["Networks"]) == [vnet_name]
    assert container.exec_run(["hostname", "-I"]).output.decode().split() == [node_address(joined)]
    html = as_bob.get(page).content.decode()
    assert f"{vnet_name}: nodes join that Docker network on engine local" in html
    assert "no Docker network of that name" not in html
    assert f"<td>{vnet_name}</td>" in html and "<td>host</td>" in html


def test_the_wizard_refuses_an_admin_user_without_a_key(engine, as_alice, workspace):
    local = engine_default_ensure(workspace=workspace)
    response = as_alice.post(
        url(workspace, "new/cluster/"),
        {**WIZARD, "engines": [local.pk], "admin_username": "azureuser"},
    )
    assert response.status_code == 400
    assert "Give the SSH public key of azureuser: " in response.content.decode()
    assert not ComputeTarget.objects.filter(name=WIZARD["name"]).exists()


def test_the_detail_page_shows_nodes_runs_and_why_it_waits(
    engine, as_bob, workspace, alice, cluster, tmp_path
):
    source = write_tree(tmp_path / "src", {"train.py": "print('hi')\n"})
    runs = [
        submit(workspace=workspace, user=alice, target=cluster, source=source, experiment="mnist")
        for _ in range(2)
    ]
    for run in runs:
        node_request(target=cluster, run_id=run.pk)
    cluster_autoscale(target=cluster)
    [node] = nodes_granted(target=cluster, run_id=runs[0].pk)
    html = as_bob.get(url(workspace, f"{cluster.name}/")).content.decode()
    assert node.name in html
    assert f'<a href="/w/{workspace.slug}/runs/{runs[0].pk}/">mnist #1</a>' in html
    assert "mnist #2" not in html
    assert "1 run waiting, at max nodes 1" in html
    assert "<strong>1</strong> current / <strong>1</strong> target" in html
    engine_cpus = engine.info()["NCPU"]
    if engine_cpus < 4:
        assert f"(capped from 4 vCPUs: the engine has {engine_cpus} CPUs)" in html
    # The node table refreshes itself through the partial.
    partial = as_bob.get(url(workspace, f"{cluster.name}/nodes/"))
    assert partial.status_code == 200
    assert "1 run waiting, at max nodes 1" in partial.content.decode()
    assert 'hx-trigger="every 2s"' in partial.content.decode()


def test_the_node_table_shows_preempted_unusable_and_preparing_nodes(
    engine, as_bob, workspace, alice, django_capture_on_commit_callbacks
):
    spot = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        name="spot",
        vm_priority="lowpriority",
        min_nodes=1,
    )
    dedicated = make_cluster(
        django_capture_on_commit_callbacks, workspace=workspace, user=alice, min_nodes=1
    )
    for cluster in (spot, dedicated):
        [node] = Node.objects.filter(target=cluster)
        node_docker(node).containers.get(node.container_id).kill()
        cluster_autoscale(target=cluster)  # notices the node stopped, then starts another
    spot_html = as_bob.get(url(workspace, "spot/")).content.decode()
    assert '<span class="badge badge-preempted">preempted</span>' in spot_html
    assert "the cluster is low priority, so the node counts as preempted" in spot_html
    dedicated_html = as_bob.get(url(workspace, f"{dedicated.name}/")).content.decode()
    assert '<span class="badge badge-unusable">unusable</span>' in dedicated_html
    assert f"of cluster {dedicated.name} stopped (exited) outside Trainyard" in dedicated_html

    # What an autoscale pass records before it starts a node's container.
    Node.objects.create(target=dedicated, name="cpu-cluster-next", state=NodeState.PREPARING)
    html = as_bob.get(url(workspace, f"{dedicated.name}/nodes/")).content.decode()
    assert '<span class="badge badge-preparing">preparing</span>' in html
    assert "scaling up: 1 node preparing" in html
    assert 'hx-trigger="every 2s"' in html


def test_scale_update_from_the_detail_page(engine, as_carol, workspace, cluster):
    response = as_carol.post(
        url(workspace, f"{cluster.name}/scale/"),
        {"min_nodes": "0", "max_nodes": "3", "idle_seconds_before_scaledown": "30"},
    )
    assert response.status_code == 302
    cluster.refresh_from_db()
    assert (cluster.config["max_nodes"], cluster.config["idle_seconds_before_scaledown"]) == (3, 30)
    bad = as_carol.post(
        url(workspace, f"{cluster.name}/scale/"),
        {"min_nodes": "4", "max_nodes": "3", "idle_seconds_before_scaledown": "30"},
    )
    assert bad.status_code == 400
    assert "Minimum nodes (4) is above maximum nodes (3)" in bad.content.decode()


def test_delete_from_the_detail_page_leaves_no_container(
    engine, as_alice, workspace, cluster, django_capture_on_commit_callbacks
):
    node_request(target=cluster, run_id=5)
    cluster_autoscale(target=cluster)
    assert cluster_containers(engine, cluster)
    with django_capture_on_commit_callbacks(execute=True):
        response = as_alice.post(url(workspace, f"{cluster.name}/delete/"))
    assert response.status_code == 302
    assert cluster_containers(engine, cluster) == []
    assert not ComputeTarget.objects.filter(pk=cluster.pk).exists()


def test_owners_register_engines_and_see_why_one_is_unreachable(engine, alice, as_alice, workspace):
    # The server's staff are told why; see the next test for everyone else.
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    response = as_alice.post(
        url(workspace, "engines/"), {"name": "gpu-box", "url": "ssh://ops@127.0.0.1:1"}
    )
    assert response.status_code == 302
    html = as_alice.get(url(workspace, "engines/")).content.decode()
    assert "gpu-box" in html and "ssh://ops@127.0.0.1:1" in html
    assert "Docker engine at ssh://ops@127.0.0.1:1 is unreachable" in html
    assert "Last reachable: never" in html
    assert "node image" in html.lower()
    bad = as_alice.post(url(workspace, "engines/"), {"name": "x", "url": "docker.example.com"})
    assert bad.status_code == 400
    assert "Give the engine as unix:///var/run/docker.sock" in bad.content.decode()


def test_an_owner_who_is_not_staff_is_not_told_why_an_engine_did_not_answer(
    engine, as_alice, workspace
):
    closed = free_port()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        for name, port in (("closed", closed), ("silent", silent.getsockname()[1])):
            as_alice.post(
                url(workspace, "engines/"), {"name": name, "url": f"tcp://127.0.0.1:{port}"}
            )
    for name in ("closed", "silent"):
        engine = DockerEngine.objects.get(workspace=workspace, name=name)
        port = engine.url.rsplit(":", 1)[1]
        assert engine.error == (
            f"Could not connect to 127.0.0.1:{port}: check the address, the port, and that its "
            "firewall lets this server in."
        )


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("unix:///run/docker.sock", ["public", "127.0.0.0/8"]),
        ("tcp://127.0.0.1:2375", ["public", "unix"]),
        ("tcp://localhost:2375", ["public", "unix"]),
        ("ssh://root@127.0.0.1", ["public", "unix"]),
        ("tcp://169.254.169.254:80", ["public", "unix", "127.0.0.0/8", "10.0.0.0/8"]),
        ("http://[::ffff:169.254.169.254]:80", ["public", "unix", "127.0.0.0/8"]),
    ],
)
def test_an_engine_the_operator_does_not_allow_is_refused(
    engine, as_alice, workspace, settings, address, allowed
):
    settings.OUTBOUND_ALLOW = allowed
    response = as_alice.post(url(workspace, "engines/"), {"name": "other", "url": address})
    assert response.status_code == 400
    page = html_module.unescape(response.content.decode())
    assert "the server's operator has not allowed" in page
    assert "(setting OUTBOUND_ALLOW)" in page
    assert not DockerEngine.objects.filter(workspace=workspace, name="other").exists()


def test_a_unix_engine_is_registered_when_the_operator_allows_it(engine, as_alice, workspace):
    address = "unix:///run/docker.sock"
    response = as_alice.post(url(workspace, "engines/"), {"name": "other", "url": address})
    assert response.status_code == 302
    assert DockerEngine.objects.get(workspace=workspace, name="other").url == address


# --- who may do what -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"), [("as_alice", 200), ("as_carol", 200), ("as_bob", 403), ("as_charlie", 404)]
)
def test_who_may_open_the_wizard(engine, request, workspace, who, status):
    assert request.getfixturevalue(who).get(url(workspace, "new/cluster/")).status_code == status


@pytest.mark.parametrize(("who", "status"), [("as_bob", 403), ("as_charlie", 404)])
def test_readers_and_strangers_cannot_create(engine, request, workspace, who, status):
    response = request.getfixturevalue(who).post(url(workspace, "new/cluster/"), WIZARD)
    assert response.status_code == status
    assert not ComputeTarget.objects.filter(name="gpu-less").exists()


@pytest.mark.parametrize(
    ("who", "status"), [("as_alice", 200), ("as_carol", 200), ("as_bob", 200), ("as_charlie", 404)]
)
def test_who_may_see_a_cluster(engine, request, workspace, cluster, who, status):
    client = request.getfixturevalue(who)
    assert client.get(url(workspace, f"{cluster.name}/")).status_code == status
    assert client.get(url(workspace, f"{cluster.name}/nodes/")).status_code == status


@pytest.mark.parametrize(("who", "status"), [("as_bob", 403), ("as_charlie", 404)])
def test_readers_and_strangers_cannot_scale_or_delete(
    engine, request, workspace, cluster, who, status
):
    client = request.getfixturevalue(who)
    scale = {"min_nodes": "0", "max_nodes": "5", "idle_seconds_before_scaledown": "1"}
    assert client.post(url(workspace, f"{cluster.name}/scale/"), scale).status_code == status
    assert client.post(url(workspace, f"{cluster.name}/delete/")).status_code == status
    cluster.refresh_from_db()
    assert cluster.state == "Succeeded" and cluster.config["max_nodes"] == 1


@pytest.mark.parametrize(
    ("who", "get", "post"),
    [
        ("as_alice", 200, 302),
        ("as_carol", 200, 403),
        ("as_bob", 200, 403),
        ("as_charlie", 404, 404),
    ],
)
def test_only_owners_manage_engines(engine, request, workspace, who, get, post):
    client = request.getfixturevalue(who)
    assert client.get(url(workspace, "engines/")).status_code == get
    response = client.post(url(workspace, "engines/"), {"name": "more", "url": "tcp://127.0.0.1:1"})
    assert response.status_code == post
    local = engine_default_ensure(workspace=workspace)
    removal = client.post(url(workspace, f"engines/{local.pk}/remove/"))
    assert removal.status_code == post
    assert DockerEngine.objects.filter(pk=local.pk).exists() == (post != 302)


def shown_on(page: str) -> str:
    """What the status part of a cluster's page says it shows (its refresh URL's `shown`)."""
    match = re.search(r'/nodes/\?shown=([^"]*)"', page)
    assert match is not None, "the status part does not refresh itself"
    return match.group(1)


def test_the_status_partial_reloads_the_page_when_the_state_changed(
    engine, as_bob, workspace, cluster
):
    path = url(workspace, f"{cluster.name}/nodes/")
    hx = {"HX-Request": "true"}
    shown = shown_on(as_bob.get(url(workspace, f"{cluster.name}/")).content.decode())
    same = as_bob.get(f"{path}?shown={shown}", headers=hx)
    assert same.status_code == 200 and "HX-Refresh" not in same.headers
    changed = as_bob.get(f"{path}?shown=Creating", headers=hx)
    assert changed.headers["HX-Refresh"] == "true"

    # Succeeded while its provisioning still starts the minimum nodes: the page follows
    # closely, and reloads once that ends, so its steps list the last one.
    operation = ComputeOperation.objects.create(
        target=cluster, workspace=workspace, target_name=cluster.name, action="create"
    )
    page = as_bob.get(url(workspace, f"{cluster.name}/")).content.decode()
    assert 'hx-trigger="every 2s"' in page
    shown = shown_on(page)
    assert "HX-Refresh" not in as_bob.get(f"{path}?shown={shown}", headers=hx).headers
    operation.state = OperationState.SUCCEEDED
    operation.save()
    assert as_bob.get(f"{path}?shown={shown}", headers=hx).headers["HX-Refresh"] == "true"

    ComputeTarget.objects.filter(pk=cluster.pk).delete()
    gone = as_bob.get(f"{path}?shown=Deleting", headers=hx)
    assert gone.headers["HX-Redirect"] == url(workspace)
