"""Submitting a folder through the form in Chromium, against `manage.py up` (worker, monitor)."""

import re
import subprocess

import pytest
from playwright.sync_api import expect

from tests.services.live_stack import login
from tests.support.runs import write_tree

pytestmark = pytest.mark.e2e

TRAIN = """\
import sys
from trainyard import run
for step in range(5):
    loss = 1.0 / (step + 1)
    run.log("loss", loss)
    print(f"step {step} loss {loss:.3f}")
open("outputs/model.txt", "w").write("trained")
print("arguments", sys.argv[1:])
"""


def test_submit_a_folder_and_see_it_complete_with_its_metric_chart(page, live_stack, tmp_path):
    source = write_tree(
        tmp_path / "mnist",
        {
            "train.py": TRAIN,
            "lib/helpers.py": "X = 1\n",
            "data.csv": "1,2\n",
            ".amlignore": "*.csv\n",
        },
    )
    login(page, live_stack, "carol")
    page.get_by_role("link", name="Runs", exact=True).click()
    page.get_by_role("link", name="Submit a run").click()
    page.get_by_label("Experiment").fill("mnist-e2e")
    page.get_by_label("Compute target").select_option("local")
    page.get_by_label("Source folder").set_input_files(source)
    expect(page.get_by_text("4 files chosen")).to_be_visible()
    expect(page.get_by_label("Entry script")).to_have_value("train.py")
    page.get_by_label("Arguments").fill("--epochs 5")
    page.get_by_role("button", name="Submit run").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("mnist-e2e #1")
    badge = page.locator(".run-badge")
    expect(badge).to_have_attribute("data-status", "Completed", timeout=60_000)
    chart = page.locator('figure[data-metric="loss"]')
    expect(chart).to_be_visible()
    expect(chart.get_by_role("img")).to_have_attribute(
        "aria-label", "loss over steps (loss: 5 points)"
    )
    expect(page.get_by_role("link", name="outputs/model.txt")).to_be_visible()
    timeline = page.get_by_role("region", name="Timeline")
    for status in ("Queued", "Preparing", "Starting", "Running", "Finalizing", "Completed"):
        expect(timeline.get_by_text(status, exact=True)).to_be_visible()
    snapshot = page.get_by_role("region", name="Snapshot")
    expect(snapshot.get_by_role("link", name="lib/helpers.py")).to_be_visible()
    expect(snapshot.get_by_role("link", name="data.csv")).to_have_count(0)


def submit_folder(page, source) -> None:
    page.goto(page.url.split("/runs/")[0] + "/runs/submit/")
    page.get_by_label("Experiment").fill("dedup-e2e")
    page.get_by_label("Compute target").select_option("local")
    page.get_by_label("Source folder").set_input_files(source)
    expect(page.get_by_text("only those are uploaded")).to_be_visible()
    page.get_by_role("button", name="Submit run").click()


def test_a_second_submit_of_the_same_folder_uploads_only_the_changed_file(
    page, live_stack, tmp_path
):
    source = write_tree(
        tmp_path / "project",
        {
            "train.py": "print('v1')\n",
            "lib/helpers.py": "X = 1\n",
            "lib/data.py": "Y = 2\n",
            "big/table.csv": "1,2\n" * 1000,
            ".amlignore": "big/\n",
        },
    )
    login(page, live_stack, "carol")
    page.get_by_role("link", name="Runs", exact=True).click()
    submit_folder(page, source)
    expect(page.get_by_role("heading", level=1)).to_have_text("dedup-e2e #1")
    # Another test may have stored some of these files already.
    expect(page.get_by_text(re.compile(r"\d of 4 files uploaded"))).to_be_visible()

    (source / "train.py").write_text("print('v2')\n")
    submit_folder(page, source)
    expect(page.get_by_role("heading", level=1)).to_have_text("dedup-e2e #2")
    expect(
        page.get_by_text("1 of 4 files uploaded; the others were stored already.")
    ).to_be_visible()
    badge = page.locator(".run-badge")
    expect(badge).to_have_attribute("data-status", "Completed", timeout=60_000)
    snapshot = page.get_by_role("region", name="Snapshot")
    expect(snapshot.get_by_role("link", name="lib/data.py")).to_be_visible()
    expect(snapshot.get_by_role("link", name="big/table.csv")).to_have_count(0)


def test_a_git_checkout_chosen_in_the_page_records_its_repository_branch_and_commit(
    page, live_stack, tmp_path
):
    source = write_tree(tmp_path / "repo", {"train.py": "print('from git')\n"})

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(source), *args], check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    git("init", "-b", "experiment-1")
    git("remote", "add", "origin", "https://bot:s3cr3t-pat@example.com/team/vision.git")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-m", "first")
    commit = git("rev-parse", "HEAD")
    login(page, live_stack, "carol")
    page.get_by_role("link", name="Runs", exact=True).click()
    page.get_by_role("link", name="Submit a run").click()
    # Target and environment left as they are: local and the minimal environment.
    page.get_by_label("Experiment").fill("git-e2e")
    page.get_by_label("Source folder").set_input_files(source)
    expect(page.get_by_text("only those are uploaded")).to_be_visible()
    page.get_by_role("button", name="Submit run").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("git-e2e #1")
    snapshot = page.get_by_role("region", name="Snapshot")
    expect(snapshot).to_contain_text(
        f"git https://example.com/team/vision.git experiment-1 {commit[:10]}"
    )
    expect(snapshot).not_to_contain_text("s3cr3t-pat")
    expect(snapshot.get_by_role("link", name="train.py")).to_be_visible()
    expect(page.get_by_text("Run git-e2e #1 submitted to local.")).to_be_visible()
