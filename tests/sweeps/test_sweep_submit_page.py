"""Submitting a hyperparameter sweep through its page in Chromium, against `manage.py up`
(worker, beat, monitor): the children run, the best one is marked, and a second submit of
the same folder uploads nothing."""

import re
import textwrap

import pytest
from playwright.sync_api import expect

from tests.services.live_stack import login
from tests.support.runs import write_tree
from tests.sweeps.test_sweeps import GRID

pytestmark = pytest.mark.e2e

# The score is the --quality the child was given (GRID: 0.9 or 0.1): 0.9 is the best.
TRAIN = textwrap.dedent(
    """
    import sys
    from trainyard import run
    quality = float(sys.argv[sys.argv.index("--quality") + 1])
    for step in range(3):
        run.log("score", quality * (step + 1) / 3)
    print("done", quality)
    """
)


def submit_sweep(page, live_stack, hdconfig, source) -> None:
    page.goto(f"{live_stack.url}/w/{live_stack.workspace_slug}/runs/")
    page.get_by_role("link", name="Sweeps", exact=True).click()
    page.get_by_role("link", name="Submit a sweep").click()
    page.get_by_label("HyperDrive config file").set_input_files(hdconfig)
    page.get_by_label("Experiment").fill("sweep-e2e")
    page.get_by_label("Source folder").set_input_files(source)
    expect(page.get_by_text("only those are uploaded")).to_be_visible()
    # The folder's Python file is offered, and taken, as the entry script.
    expect(page.get_by_label("Entry script")).to_have_value("train.py")
    page.get_by_role("button", name="Submit sweep").click()


def test_submit_a_sweep_from_its_page_and_see_the_best_child(page, live_stack, tmp_path):
    source = write_tree(
        tmp_path / "tuning", {"train.py": TRAIN, "lib/util.py": "X = 1\n", "notes.log": "x\n"}
    )
    (source / ".amlignore").write_text("*.log\n")
    hdconfig = tmp_path / "hdconfig.yml"
    hdconfig.write_text(GRID)
    login(page, live_stack, "carol")
    submit_sweep(page, live_stack, hdconfig, source)

    expect(page.get_by_role("heading", level=1)).to_contain_text("sweep-e2e #1")
    expect(page.get_by_text(re.compile(r"\d of 3 files uploaded"))).to_be_visible()
    badge = page.locator(".run-badge")
    expect(badge).to_have_attribute("data-status", "Completed", timeout=120_000)
    children = page.get_by_role("region", name="Child runs")
    expect(children.locator("tbody tr")).to_have_count(2)
    best = children.locator("tr.best")
    expect(best).to_have_count(1)
    expect(best.get_by_role("cell", name="0.9", exact=True)).to_be_visible()
    expect(best).to_contain_text("Completed")
    expect(page.locator("[data-role=best]")).to_contain_text("with score 0.9 (maximize)")

    # The child's own page: its run, its hyperparameter and its log.
    best.get_by_role("link").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("sweep-e2e #")
    expect(page.locator(".run-badge")).to_have_attribute("data-status", "Completed")

    submit_sweep(page, live_stack, hdconfig, source)
    expect(page.get_by_role("heading", level=1)).to_contain_text("sweep-e2e #4")
    expect(
        page.get_by_text("0 of 3 files uploaded; the others were stored already.")
    ).to_be_visible()
