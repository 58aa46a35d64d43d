"""An engine without the node image: creating a cluster on it builds the image, once."""

import re
import threading
import time

import docker
import pytest
from django.db import connection

from compute.cluster import services as cluster_services
from compute.cluster.node_image import NODE_IMAGE
from compute.models import ComputeTarget, DockerEngine
from runs.models import RunStatus
from tests.compute.backends.test_runs_cluster import dispatch_until_started
from tests.conftest import client_for
from tests.support.runs import running_monitor, submit, wait_final, write_tree

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]

WIZARD = {
    "vm_tier": "cpu",
    "vm_priority": "dedicated",
    "vm_size": "Standard_D2_v2",
    "min_nodes": "0",
    "max_nodes": "1",
    "idle_seconds_before_scaledown": "120",
}


def page(workspace, tail=""):
    return f"/w/{workspace.slug}/compute/{tail}"


def create_in_background(user, workspace, name: str, engine: DockerEngine) -> threading.Thread:
    """Submit the wizard as the browser does; provisioning runs in that request (eager tasks)."""

    def post():
        try:
            response = client_for(user).post(
                page(workspace, "new/cluster/"), {**WIZARD, "name": name, "engines": [engine.pk]}
            )
            assert response.status_code == 302, response.content.decode()[:2000]
        finally:
            connection.close()

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def wait_for_page(client, address: str, text: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    html = ""
    while time.monotonic() < deadline:
        response = client.get(address)
        html = response.content.decode() if response.status_code == 200 else ""
        if text in html:
            return html
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never showed on {address}; last page:\n{html[-3000:]}")


def test_a_cluster_on_an_engine_without_the_image_builds_it_once_and_runs(
    fresh_engine_url, workspace, alice, carol, tmp_path
):
    fresh_client = docker.DockerClient(base_url=fresh_engine_url)
    assert fresh_client.images.list() == []
    fresh = cluster_services.engine_register(
        workspace=workspace, name="fresh", url=fresh_engine_url, user=alice
    )
    as_carol = client_for(carol)

    wizard = as_carol.get(page(workspace, "new/cluster/")).content.decode()
    assert "fresh: reachable, Docker " in wizard
    assert "; the node image will be built on first use, about a minute." in wizard
    assert "local: reachable, Docker " in wizard and "; node image present." in wizard

    first = create_in_background(carol, workspace, "first", fresh)
    building = wait_for_page(
        as_carol,
        page(workspace, "first/nodes/"),
        'Build the node image on fresh</strong> <span class="badge badge-running">running</span>',
    )
    assert "Check Docker engines</strong> " in building and "no node image yet" in building

    # A second cluster on the same engine waits for that build instead of starting its own.
    second = create_in_background(alice, workspace, "second", fresh)
    wait_for_page(
        as_carol,
        page(workspace, "second/nodes/"),
        "Waiting for the node image build started by cluster first at ",
    )
    first.join(timeout=600)
    second.join(timeout=600)

    detail = as_carol.get(page(workspace, "first/")).content.decode()
    assert re.search(
        r"Build the node image on fresh</strong> <span class=\"badge badge-done\">done</span>"
        rf"\s+— Built {NODE_IMAGE} in \d+ s",
        detail,
    )
    second_detail = as_carol.get(page(workspace, "second/")).content.decode()
    assert f"{NODE_IMAGE} is there: another build on this engine made it" in second_detail
    assert [image.tags for image in fresh_client.images.list()] == [[NODE_IMAGE]]
    fresh.refresh_from_db()
    assert fresh.facts["node_image"] is True
    wizard = as_carol.get(page(workspace, "new/cluster/")).content.decode()
    assert "fresh: reachable" in wizard and "will be built on first use" not in wizard

    cluster = ComputeTarget.objects.get(workspace=workspace, name="first")
    assert cluster.state == "Succeeded", cluster.error
    source = write_tree(tmp_path / "src", {"train.py": "import sys\nprint('on', sys.version)\n"})
    with running_monitor():
        run = submit(workspace=workspace, user=carol, target=cluster, source=source)
        run = wait_final(dispatch_until_started(run, timeout=120))
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert run.node_name
    fresh_client.close()
