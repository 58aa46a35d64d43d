"""A multi-node run on a cluster of the live stack: the log viewer offers each node's log."""

import pytest
from playwright.sync_api import expect

from tests.compute.cluster.test_cluster_wizard import stack_containers  # noqa: F401 (a fixture)
from tests.runs.logs.test_live_logs_runs import open_run, wait_until_finished
from tests.runs.logs.test_log_viewer import python, shown, wait_for_text
from tests.services.live_stack import login
from tests.support.runs import write_tree

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

SUBMIT_ON_TWO_NODES = """
import sys
from pathlib import Path
import django; django.setup()
from django.contrib.auth import get_user_model
from compute.cluster import services as cluster_services
from studio.models import Workspace
from tests.support.runs import submit
ws = Workspace.objects.get(slug=sys.argv[1])
alice = get_user_model().objects.get(username="alice")
cluster = cluster_services.cluster_create(
    workspace=ws, user=alice, name="multi-e2e", vm_size="Standard_D2_v2", max_nodes=2,
    idle_seconds_before_scaledown=5,
)
run = submit(workspace=ws, user=alice, target=cluster, source=Path(sys.argv[2]),
             experiment="multi-node", node_count=2)
print(run.pk)
"""

SCRIPT = """\
import os, time
rank = os.environ["RANK"]
for i in range(1, 4):
    print(f"rank {rank} of {os.environ['WORLD_SIZE']} says {i}", flush=True)
    time.sleep(0.2)
"""


def test_each_node_of_a_multi_node_run_has_its_own_log(
    page,
    live_stack,
    tmp_path,
    stack_containers,  # noqa: F811
):
    login(page, live_stack, "alice")
    source = write_tree(tmp_path / "src", {"train.py": SCRIPT})
    run_id = int(python(live_stack, SUBMIT_ON_TWO_NODES, live_stack.workspace_slug, str(source)))
    open_run(page, live_stack, run_id)
    # The stack's worker provisions the cluster and its autoscaler starts both nodes.
    wait_until_finished(page, run_id)
    expect(page.get_by_text("2 nodes, the driver on multi-e2e-")).to_be_visible()
    wait_for_text(page, run_id, "rank 0 of 2 says 3")
    assert "rank 1" not in shown(page, run_id)

    source_list = page.get_by_label("Log", exact=True)
    expect(source_list.locator("option", has_text="Node 1: preparation")).to_have_count(1)
    source_list.select_option(label="Node 1")
    wait_for_text(page, run_id, "rank 1 of 2 says 3")
    lines = [line for line in shown(page, run_id).splitlines() if line.strip()]
    assert lines == [f"rank 1 of 2 says {i}" for i in (1, 2, 3)]
