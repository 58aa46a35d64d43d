"""Create a managed cluster through the wizard in Chromium, watch its node come up, delete it."""

import time

import pytest
from playwright.sync_api import expect

from tests.services.live_stack import login

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


@pytest.fixture
def stack_containers(docker_engine, live_stack):
    """Node containers the live stack creates; none may be left once the test is over."""
    instance = (live_stack.data_dir / "instance_id").read_text().strip()

    def listing():
        return docker_engine.containers.list(
            all=True, filters={"label": f"trainyard.instance={instance}"}
        )

    yield listing
    for container in listing():
        container.remove(force=True)


def test_create_a_cluster_in_the_wizard_and_delete_it(page, live_stack, stack_containers):
    login(page, live_stack, "carol")
    page.get_by_role("navigation", name="Studio").get_by_role("link", name="Compute").click()
    page.get_by_text("+ New").click()
    page.get_by_role("link", name="Compute cluster", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New compute cluster")
    expect(page.get_by_text("is missing on Docker engine")).to_have_count(0)

    page.get_by_label("Compute name").fill("cpu-e2e")
    page.get_by_label("Low priority").check()
    expect(page.get_by_text("Low-priority nodes can be preempted")).to_be_visible()
    # GPU sizes are hidden while the tier is CPU; the search narrows the table.
    expect(page.get_by_label("Standard_NC6", exact=True)).to_be_hidden()
    page.get_by_label("Search sizes").fill("d2 v2")
    expect(page.get_by_label("Standard_D12_v2", exact=True)).to_be_hidden()
    page.get_by_label("Standard_D2_v2", exact=True).check()
    page.get_by_label("Minimum nodes").fill("1")
    page.get_by_label("Maximum nodes").fill("2")
    page.get_by_label("Idle seconds before scale down").fill("60")
    expect(page.get_by_label("local (unix:///var/run/docker.sock)")).to_be_checked()
    page.get_by_text("Advanced settings").click()
    page.get_by_label("Virtual network").fill("research-vnet")
    page.get_by_role("button", name="Create").click()

    expect(page).to_have_url(f"{live_stack.url}/w/{live_stack.workspace_slug}/compute/cpu-e2e/")
    status = page.locator("#cluster-status")
    # The real worker provisions the cluster and starts its minimum node; the page follows.
    expect(status.locator(".badge", has_text="Succeeded")).to_be_visible(timeout=60_000)
    expect(status.locator("table.nodes .badge", has_text="idle")).to_have_count(1, timeout=60_000)
    expect(status).to_contain_text("1 current / 1 target")
    # Once provisioned, the page reloads itself with the settings and the operation's steps.
    expect(
        page.get_by_text(
            "Standard_D2_v2 (2 vCPUs, 7 GiB RAM, 100 GiB temporary storage)", exact=True
        )
    ).to_be_visible()
    expect(page.locator("ol.steps")).to_contain_text("Start minimum nodes done — 1 of 1 ready")
    expect(page.get_by_text("research-vnet / —")).to_be_visible()
    [container] = stack_containers()
    assert container.status == "running"
    assert container.attrs["HostConfig"]["Memory"] == 7 * 1024**3

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete cluster").click()
    expect(page.get_by_text("Deleting cpu-e2e")).to_be_visible()
    # The worker removes the nodes, then the target; the list shows it until then.
    deadline = time.monotonic() + 60
    while page.get_by_role("link", name="cpu-e2e").count() and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    expect(page.get_by_role("link", name="cpu-e2e")).to_have_count(0)
    assert stack_containers() == []
