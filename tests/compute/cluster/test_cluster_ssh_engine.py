"""A cluster whose nodes live on a Docker engine reached as ssh://user@host (real sshd)."""

import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import paramiko
import pytest

from compute.cluster import services as cluster_services
from compute.cluster.autoscaler import cluster_autoscale
from compute.cluster.scheduler import node_docker, node_request
from compute.models import ComputeTarget
from compute.ssh import generate_key_pair, parse_private_key
from tests.services.sshd import DOCKER_USER
from tests.support.clusters import (
    cluster_containers,
    make_cluster,
    nodes_granted,
    remove_test_containers,
)

pytestmark = pytest.mark.docker


@pytest.fixture
def ssh_engine_url(docker_engine, docker_user_sshd, tmp_path, monkeypatch):
    """An sshd whose user may run docker, and a HOME whose key and known_hosts reach it.

    The docker SDK logs in as this server's user with ~/.ssh keys and checks
    the host key against ~/.ssh/known_hosts, as `ssh` would.
    """
    server = docker_user_sshd
    home = tmp_path / "home"
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True, mode=0o700)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / "id_ed25519")],
        check=True,
    )
    server.authorize((ssh_dir / "id_ed25519.pub").read_text())
    host_key = Path(f"{server.host_key}.pub").read_text().split()
    (ssh_dir / "known_hosts").write_text(
        f"[{server.host}]:{server.port} {host_key[0]} {host_key[1]}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    server.start()
    yield f"ssh://{DOCKER_USER}@{server.host}:{server.port}"
    remove_test_containers(docker_engine)


def test_nodes_on_an_ssh_engine(
    ssh_engine_url, docker_engine, workspace, alice, django_capture_on_commit_callbacks
):
    remote = cluster_services.engine_register(
        workspace=workspace, name="box", url=ssh_engine_url, user=alice
    )
    assert remote.error == ""
    assert remote.facts["cpus"] == docker_engine.info()["NCPU"]
    assert remote.facts["node_image"] is True

    cluster = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        name="remote-nodes",
        engines=[remote],
    )
    assert cluster.state == "Succeeded", cluster.error
    assert node_request(target=cluster, run_id=51) is None
    cluster_autoscale(target=cluster)
    [node] = nodes_granted(target=cluster, run_id=51)
    assert node.engine == remote
    container = node_docker(node).containers.get(node.container_id)
    assert container.exec_run(["python3", "-c", "print('on box')"]).output == b"on box\n"
    # It really is a container of that engine (here the same dockerd, reached over SSH).
    assert [c.id for c in cluster_containers(docker_engine, cluster)] == [node.container_id]

    with django_capture_on_commit_callbacks(execute=True):
        cluster_services.cluster_delete(target=cluster, user=alice)
    assert cluster_containers(docker_engine, cluster) == []
    assert not ComputeTarget.objects.filter(pk=cluster.pk).exists()


def test_an_ssh_engine_that_refuses_the_login_says_what_to_check(
    ssh_engine_url, workspace, alice, tmp_path
):
    (tmp_path / "home" / ".ssh" / "id_ed25519").unlink()
    engine = cluster_services.engine_register(
        workspace=workspace, name="locked", url=ssh_engine_url, user=alice
    )
    assert engine.error.startswith(f"Docker engine at {ssh_engine_url} is unreachable (")
    assert "can `ssh` to that host with its own key" in engine.error


def test_the_admin_user_logs_in_to_a_node_of_an_ssh_engine_as_the_node_table_says(
    ssh_engine_url, workspace, alice, as_bob, django_capture_on_commit_callbacks
):
    remote = cluster_services.engine_register(
        workspace=workspace, name="box", url=ssh_engine_url, user=alice
    )
    private_key, public_key = generate_key_pair()
    cluster = make_cluster(
        django_capture_on_commit_callbacks,
        workspace=workspace,
        user=alice,
        name="remote-nodes",
        engines=[remote],
        min_nodes=1,
        admin_username="azureuser",
        admin_ssh_public_key=public_key,
    )
    assert cluster.state == "Succeeded", cluster.error
    html = as_bob.get(f"/w/{workspace.slug}/compute/remote-nodes/").content.decode()
    host = urlsplit(ssh_engine_url).hostname
    [port] = re.findall(rf"ssh -p (\d+) azureuser@{re.escape(host)}</code>", html)
    with paramiko.SSHClient() as ssh:
        ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        ssh.connect(
            host,
            port=int(port),
            username="azureuser",
            pkey=parse_private_key(private_key),
            allow_agent=False,
            look_for_keys=False,
            timeout=10,
        )
        _, stdout, _ = ssh.exec_command("whoami")
        assert stdout.read().decode().strip() == "azureuser"
