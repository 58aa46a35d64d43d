"""Attaching HDInsight / Spark head nodes through the wizard and the API.

The head node is a real sshd (tests/services/spark.py) whose user runs the real
spark-submit of the pyspark wheel; the plain `sshd` is a head node without Spark.
Tasks run eagerly, so a submitted form has finished its check when the page comes back.
"""

from __future__ import annotations

import html
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from django.urls import reverse

from compute.models import ComputeKind, ComputeOperation, ComputeTarget
from tests.services.spark import spark_home, with_spark

pytestmark = pytest.mark.django_db(transaction=True)

SPARK_MISSING = (
    "Spark not found on the head node: spark-submit is not on PATH for user tytest. "
    "Install Spark or set SPARK_HOME in ~/.profile."
)


def attach_url(workspace) -> str:
    return reverse("hdinsight_attach", args=[workspace.slug])


def text_of(response) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))


def form_data(server, name="spark", **overrides) -> dict:
    data = {
        "name": name,
        "address": server.host,
        "port": server.port,
        "username": server.username,
        "authentication": "password",
        "password": server.password,
    }
    return data | overrides


def steps_of(name: str) -> dict[str, tuple[str, str]]:
    operation = ComputeOperation.objects.filter(target_name=name).latest("started_at")
    return {step["key"]: (step["state"], step["detail"]) for step in operation.steps}


def test_the_wizard_explains_the_address_and_offers_key_authentication(workspace, as_carol):
    page = text_of(as_carol.get(attach_url(workspace)))
    assert "Attach an HDInsight / Spark cluster" in page
    assert "<cluster>-ssh.azurehdinsight.net" in page
    assert "Any Spark head node reachable over SSH works too" in page
    assert "SSH key (recommended)" in page and "Generate a key pair here" in page
    assert "Spark master" in page and "Leave empty to use what the cluster uses" in page

    listing = as_carol.get(reverse("compute_list", args=[workspace.slug])).content.decode()
    assert "Attach → HDInsight / Spark" in listing


def test_attach_a_spark_head_node_with_a_generated_key(
    spark_head_node, workspace, as_carol, as_bob
):
    response = as_carol.post(attach_url(workspace), form_data(spark_head_node) | {"generate": "1"})
    page = html.unescape(response.content.decode())
    assert "Add this public key to the head node, then attach." in page
    assert "Command to run on the head node" in page
    public_key = re.findall(r'id="generated-public-key" readonly value="([^"]+)"', page)[0]
    token = re.findall(r'name="generated_key" value="([^"]+)"', page)[0]
    spark_head_node.authorize(public_key)

    data = form_data(spark_head_node, authentication="generate", password="", generated_key=token)
    page = text_of(as_carol.post(attach_url(workspace), data, follow=True))
    assert "Attaching spark" in page
    assert "State: Succeeded" in page
    steps = steps_of("spark")
    assert [state for state, _ in steps.values()] == ["done"] * 5
    assert steps["spark"][1].startswith(
        f"Spark 4.3.0 ({spark_home()}/bin/spark-submit) · Python 3."
    )
    assert steps["spark"][1].endswith(" · master local (local[2], on the head node)")

    # Anyone in the workspace sees what the check found.
    page = text_of(as_bob.get(reverse("compute_detail", args=[workspace.slug, "spark"])))
    assert "HDInsight / Spark" in page
    assert f"Spark 4.3.0 ({spark_home()}/bin/spark-submit)" in page
    assert "PySpark Python 3." in page and "/usr/bin/python3" in page
    assert "Cluster master local (local[2], on the head node) (from no YARN found)" in page
    assert "spark-submit --master local[2] ENTRY ARGS on the head node, as tytest" in page
    assert f"{spark_head_node.host_key_fingerprint} (ssh-ed25519), pinned" in page
    assert "Re-check" not in page and "Save master" not in page  # bob only reads

    target = ComputeTarget.objects.get(name="spark")
    assert target.kind == ComputeKind.HDINSIGHT and target.auth_method == "key"
    assert target.facts["spark_master"] == "local[2]"


def test_a_head_node_without_spark_fails_with_what_to_do(sshd, workspace, as_carol):
    page = text_of(as_carol.post(attach_url(workspace), form_data(sshd), follow=True))
    assert "State: Failed" in page
    assert SPARK_MISSING in page
    steps = steps_of("spark")
    assert steps["preflight"][0] == "done"
    assert steps["spark"] == ("failed", SPARK_MISSING)
    assert ComputeTarget.objects.get(name="spark").error == SPARK_MISSING


@pytest.mark.parametrize(
    ("setting", "master", "shown"),
    [
        ("HADOOP_CONF_DIR", "yarn", "YARN (from HADOOP_CONF_DIR)"),
        (
            "SPARK_CONF_DIR",
            "spark://head:7077",
            "standalone (spark://head:7077) (from spark-defaults.conf)",
        ),
    ],
)
def test_the_check_finds_the_master_the_cluster_uses(
    sshd_factory, workspace, as_carol, setting, master, shown
):
    # Readable by the head node's user, unlike pytest's tmp_path.
    conf = Path(tempfile.mkdtemp(prefix="ty-spark-conf-"))
    conf.chmod(0o755)
    (conf / "spark-defaults.conf").write_text(
        "spark.eventLog.enabled true\nspark.master spark://head:7077\n"
    )
    server = with_spark(sshd_factory(), **{setting: str(conf)})
    page = text_of(as_carol.post(attach_url(workspace), form_data(server), follow=True))
    assert "State: Succeeded" in page, page
    assert f"Cluster master {shown}" in page
    assert f"spark-submit --master {master} ENTRY ARGS" in page
    assert ComputeTarget.objects.get(name="spark").facts["spark_master"] == master
    shutil.rmtree(conf)


def test_a_spark_that_cannot_start_says_what_it_printed_and_what_to_do(
    sshd_factory, workspace, as_carol
):
    server = with_spark(sshd_factory(), JAVA_HOME="/opt/no-java")
    page = text_of(as_carol.post(attach_url(workspace), form_data(server), follow=True))
    assert "State: Failed" in page
    error = ComputeTarget.objects.get(name="spark").error
    assert error.startswith(
        f"spark-submit ({spark_home()}/bin/spark-submit) did not start for user tytest: "
    )
    assert "/opt/no-java/bin/java: No such file or directory" in error
    assert error.endswith(
        "Install Java on the head node (17 for Spark 4) and set JAVA_HOME in ~/.profile, "
        "then re-check."
    )
    assert steps_of("spark")["spark"] == ("failed", error)


def test_the_wizard_rejects_what_is_not_a_spark_master(workspace, as_carol, sshd):
    response = as_carol.post(attach_url(workspace), form_data(sshd, spark_master="yarn-cluster"))
    assert response.status_code == 200
    assert "“yarn-cluster” is not a Spark master: use yarn, local[N]" in text_of(response)
    assert not ComputeTarget.objects.filter(name="spark").exists()


def test_only_members_who_edit_may_attach(workspace, as_alice, as_bob, as_charlie):
    assert as_alice.get(attach_url(workspace)).status_code == 200
    assert as_bob.get(attach_url(workspace)).status_code == 403
    assert as_bob.post(attach_url(workspace), {"name": "x"}).status_code == 403
    assert as_charlie.get(attach_url(workspace)).status_code == 404


@pytest.fixture
def head_node(workspace, alice, spark_head_node):
    return ComputeTarget.objects.create(
        workspace=workspace,
        name="hdi",
        kind=ComputeKind.HDINSIGHT,
        state="Succeeded",
        address=spark_head_node.host,
        port=spark_head_node.port,
        username=spark_head_node.username,
        auth_method="password",
        password=spark_head_node.password,
        facts={
            "system": "Linux",
            "os_name": "Ubuntu 22.04",
            "spark_submit": "/usr/bin/spark-submit",
            "spark_version": "3.5.1",
            "spark_master": "local[2]",
            "spark_master_source": "no YARN found",
        },
        config={"spark_master": ""},
        created_by=alice,
    )


def test_the_master_runs_submit_to_can_be_changed(
    head_node, workspace, as_alice, as_carol, as_bob, as_charlie
):
    url = reverse("spark_master_update", args=[workspace.slug, "hdi"])
    detail = reverse("compute_detail", args=[workspace.slug, "hdi"])
    assert "Spark master what the cluster uses: local[2]" in text_of(as_carol.get(detail))

    response = as_carol.post(url, {"spark_master": "local[*]"}, follow=True)
    assert "New runs on hdi submit to local[*]." in text_of(response)
    assert "Spark master local[*] (set here)" in text_of(response)
    assert "spark-submit --master local[*] ENTRY ARGS" in text_of(response)

    response = as_alice.post(url, {"spark_master": "spark//head:7077"})
    assert response.status_code == 400
    assert "“spark//head:7077” is not a Spark master" in text_of(response)
    assert as_alice.post(url, {"spark_master": ""}, follow=True).status_code == 200
    head_node.refresh_from_db()
    assert head_node.config["spark_master"] == ""

    assert as_bob.post(url, {"spark_master": "yarn"}).status_code == 403
    assert as_charlie.post(url, {"spark_master": "yarn"}).status_code == 404
    head_node.refresh_from_db()
    assert head_node.config["spark_master"] == ""


# ---------------------------------------------------------------- API


def test_api_attach_checks_spark_and_never_returns_the_password(
    spark_head_node, workspace, api_carol, api_bob, api_charlie
):
    payload = form_data(spark_head_node, name="hdi-api", spark_master="local[1]")
    url = f"/api/v1/computes/hdinsight?workspace={workspace.slug}"
    assert api_bob.post(url, payload, content_type="application/json").status_code == 403
    assert api_charlie.post(url, payload, content_type="application/json").status_code == 404

    response = api_carol.post(url, payload, content_type="application/json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert spark_head_node.password not in response.content.decode()
    assert body["kind"] == "hdinsight" and body["state"] == "Succeeded", body["error"]
    assert body["spark_master"] == "local[1]"
    assert body["facts"]["spark_version"] == "4.3.0"
    assert body["facts"]["spark_master"] == "local[2]"
    assert [step["key"] for step in body["operation"]["steps"]][-1] == "spark"

    again = api_carol.post(url, payload, content_type="application/json")
    assert again.status_code == 409
    assert "already has a compute target called hdi-api" in again.json()["detail"]

    read = api_bob.get(f"/api/v1/computes/hdi-api?workspace={workspace.slug}").json()
    assert read["facts"]["spark_submit"].endswith("/bin/spark-submit")

    check = f"/api/v1/computes/hdi-api/check?workspace={workspace.slug}"
    assert api_bob.post(check).status_code == 403
    rechecked = api_carol.post(check)
    assert rechecked.status_code == 202
    assert rechecked.json()["operation"]["action"] == "check"
    assert rechecked.json()["operation"]["steps"][-1]["state"] == "done"
    assert rechecked.json()["facts"]["spark_version"] == "4.3.0"


def test_api_sets_the_spark_master(head_node, workspace, api_carol, api_bob, api_charlie):
    url = f"/api/v1/computes/hdi/spark?workspace={workspace.slug}"
    response = api_carol.put(url, {"spark_master": "yarn"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["spark_master"] == "yarn"
    bad = api_carol.put(url, {"spark_master": "mars"}, content_type="application/json")
    assert bad.status_code == 400 and "is not a Spark master" in bad.json()["detail"]
    assert (
        api_bob.put(url, {"spark_master": ""}, content_type="application/json").status_code == 403
    )
    assert (
        api_charlie.put(url, {"spark_master": ""}, content_type="application/json").status_code
        == 404
    )
    head_node.refresh_from_db()
    assert head_node.config["spark_master"] == "yarn"


def test_the_page_reloads_once_the_check_finishes(head_node, workspace, as_bob):
    url = reverse("compute_detail", args=[workspace.slug, "hdi"])
    still = as_bob.get(f"{url}?shown=Succeeded", headers={"HX-Request": "true"})
    assert b'id="target-status"' in still.content and "HX-Refresh" not in still
    # Facts, host key and Spark master below the status change with the state.
    done = as_bob.get(f"{url}?shown=Creating", headers={"HX-Request": "true"})
    assert done["HX-Refresh"] == "true"
