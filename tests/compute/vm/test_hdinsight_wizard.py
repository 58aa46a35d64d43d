"""Attach an HDInsight / Spark head node in Chromium: a real sshd with the real spark-submit."""

import re

import pytest
from playwright.sync_api import expect

from compute import ssh
from tests.services.live_stack import login

pytestmark = pytest.mark.e2e


def test_attach_a_spark_head_node_and_choose_its_master(page, live_stack, spark_head_node):
    private_key, public_line = ssh.generate_key_pair()
    spark_head_node.authorize(public_line)

    login(page, live_stack, "carol")
    page.get_by_role("navigation", name="Studio").get_by_role("link", name="Compute").click()
    page.get_by_text("+ New").click()
    page.get_by_role("link", name="Attach → HDInsight / Spark").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Attach an HDInsight / Spark cluster")
    expect(page.get_by_text("<cluster>-ssh.azurehdinsight.net")).to_be_visible()

    page.get_by_label("Compute name").fill("e2e-spark")
    page.get_by_label("Address").fill(spark_head_node.host)
    page.get_by_label("SSH port").fill(str(spark_head_node.port))
    page.get_by_label("Username").fill(spark_head_node.username)
    expect(page.get_by_role("radio", name="SSH key (recommended)")).to_be_checked()
    page.get_by_label("Private key", exact=True).fill(private_key)
    page.get_by_role("button", name="Attach", exact=True).click()

    expect(page).to_have_url(re.compile(r"/compute/e2e-spark/$"))
    # The status refreshes by itself while the background check runs.
    expect(page.locator("#status-heading")).to_contain_text("Succeeded", timeout=60_000)
    steps = page.get_by_role("list", name="Steps")
    expect(steps).to_contain_text("Logged in as tytest with an SSH key")
    expect(steps).to_contain_text("Spark 4.3.0")
    facts = page.locator("#facts-heading + dl")
    expect(facts).to_contain_text(re.compile(r"Spark\s*4\.3\.0 \(/\S+/bin/spark-submit\)"))
    expect(facts).to_contain_text(re.compile(r"PySpark Python\s*3\.\d+\.\d+ \(/usr/bin/python3\)"))
    expect(facts).to_contain_text(re.compile(r"Cluster master\s*local \(local\[2\], on the head"))
    expect(page.get_by_text("spark-submit --master local[2] ENTRY ARGS")).to_be_visible()

    page.get_by_label("Spark master").fill("local[1]")
    page.get_by_role("button", name="Save master").click()
    expect(page.get_by_text("New runs on e2e-spark submit to local[1].")).to_be_visible()
    expect(page.get_by_text("spark-submit --master local[1] ENTRY ARGS")).to_be_visible()

    page.get_by_role("navigation", name="Studio").get_by_role("link", name="Compute").click()
    row = page.get_by_role("row").filter(has_text="e2e-spark")
    expect(row).to_contain_text("HDInsight / Spark")
    expect(row).to_contain_text("Succeeded")
