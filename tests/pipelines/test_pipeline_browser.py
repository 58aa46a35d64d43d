"""In Chromium against `manage.py up` (worker, beat, monitor): attach the Databricks and Batch
emulators through their wizards, upload a pipeline YAML with its folder, and watch the graph
reach Completed."""

import re
import textwrap

import pytest
from playwright.sync_api import expect

from tests.services.live_stack import login
from tests.support.pipelines import COUNT, PREPARE, REPORT
from tests.support.runs import write_tree

pytestmark = pytest.mark.e2e

PIPELINE = textwrap.dedent(
    """
    name: word-count
    experiment: pipelines-e2e
    steps:
      - name: prepare
        compute: local
        script: prepare.py
        outputs: [words]
      - name: count
        type: databricks
        compute: e2e-dbx
        python_script: count.py
        inputs: [words]
        outputs: [counts]
      - name: report
        type: batch
        compute: e2e-batch
        command: python3 report.py
        inputs: [counts]
    """
)


def attach(page, live_stack, wizard: str, fields: dict[str, str]) -> None:
    page.goto(f"{live_stack.url}/w/{live_stack.workspace_slug}/compute/")
    page.get_by_text("+ New").click()
    page.get_by_role("link", name=f"Attach → {wizard}").click()
    for label, value in fields.items():
        page.get_by_label(label).fill(value)
    page.get_by_role("button", name="Attach").click()
    expect(page.get_by_role("heading", name="State: Succeeded")).to_be_visible(timeout=30_000)


def test_upload_a_pipeline_and_see_its_graph_complete(
    page, live_stack, tmp_path, databricks_emulator, batch_emulator
):
    login(page, live_stack, "carol")
    attach(
        page,
        live_stack,
        "Azure Databricks",
        {
            "Compute name": "e2e-dbx",
            "Databricks workspace URL": databricks_emulator.url,
            "Resource group": "ml-rg",
            "Access token": databricks_emulator.token,
            "Default cluster ID (optional)": "0923-164208-meows279",
        },
    )
    expect(page.get_by_role("cell", name="shared-autoscale")).to_be_visible()
    attach(
        page,
        live_stack,
        "Azure Batch",
        {
            "Compute name": "e2e-batch",
            "Batch account name": batch_emulator.account_name,
            "Batch account URL": batch_emulator.url,
            "Resource group": "ml-rg",
            "Account key": batch_emulator.account_key,
            "Default pool": "cpu-pool",
        },
    )

    source = write_tree(
        tmp_path / "wordcount", {"prepare.py": PREPARE, "count.py": COUNT, "report.py": REPORT}
    )
    definition = tmp_path / "pipeline.yml"
    definition.write_text(PIPELINE)
    page.get_by_role("link", name="Pipelines", exact=True).click()
    page.get_by_role("link", name="Submit a pipeline").click()
    page.get_by_label("Pipeline definition file").set_input_files(definition)
    page.get_by_label("Source folder").set_input_files(source)
    expect(page.get_by_text("3 files chosen")).to_be_visible()
    expect(page.get_by_text("only those are uploaded")).to_be_visible()
    page.get_by_role("button", name="Submit pipeline").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("word-count")
    expect(page.get_by_text(re.compile(r"\d of 3 files uploaded"))).to_be_visible()
    graph = page.locator("svg.pipeline-graph")
    expect(graph).to_be_visible()
    for step in ("prepare", "count", "report"):
        expect(graph.locator(f'a[data-step="{step}"]')).to_have_attribute(
            "data-status", "Completed", timeout=120_000
        )
    expect(page.locator(".run-badge")).to_have_attribute("data-status", "Completed")
    expect(graph).to_have_attribute(
        "aria-label", "Pipeline graph. prepare: Completed; count: Completed; report: Completed"
    )

    page.locator('svg.pipeline-graph a[data-step="report"]').click()
    expect(page.get_by_role("link", name="outputs/report.txt")).to_be_visible()
