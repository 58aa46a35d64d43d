"""Pipeline steps of each cloud kind: Databricks job clusters, notebooks and jars, PySpark on
HDInsight, Batch tasks and the files they carry, and the names the services hand back.

Tasks run eagerly; `advancing_pipelines` plays the Celery beat that moves pipelines on.
"""

from __future__ import annotations

import html
import re
import textwrap

import pytest
from django.urls import reverse

from compute.backends.batch import file_link
from compute.cloud import services as cloud_services
from pipelines import services
from runs.models import RunFile
from studio.blobs import blob_store_bytes
from studio.errors import ServiceError
from tests.compute.backends.test_runs_hdinsight import head_node  # noqa: F401 - a fixture
from tests.support.cloud import hello_jar
from tests.support.pipelines import (
    PREPARE,
    SOURCE,
    advancing_pipelines,
    archive,
    file_text,
    steps_of,
    stored_log,
)
from tests.support.runs import minimal_environment, running_monitor, wait_final

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]


def test_a_databricks_step_on_a_new_job_cluster(
    cloud_targets, workspace, carol, databricks_emulator
):
    definition = textwrap.dedent(
        """
        experiment: job-clusters
        steps:
          - name: train
            type: databricks
            compute: dbx
            python_script: train.py
            arguments: [--epochs, 2]
            new_cluster:
              spark_version: 13.3.x-scala2.12
              node_type_id: Standard_DS3_v2
              num_workers: 2
        """
    )
    source = {"train.py": "import sys\nprint('args', sys.argv[1:], flush=True)\n"}
    parent = services.pipeline_submit(
        workspace=workspace, user=carol, definition=definition, archive=archive(source)
    )
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)
    train = steps_of(parent)["train"]
    assert (parent.status, train.status) == ("Completed", "Completed")
    assert "args ['--epochs', '2']" in stored_log(train)
    # The target's default cluster was left alone: the task asked for a cluster of its own.
    [submitted] = databricks_emulator.runs.values()
    [task] = submitted.tasks
    assert "existing_cluster_id" not in task.spec
    assert task.spec["new_cluster"] == {
        "spark_version": "13.3.x-scala2.12",
        "node_type_id": "Standard_DS3_v2",
        "num_workers": 2,
    }
    assert task.cluster.job_cluster
    assert task.cluster.cluster_id not in ("0923-164208-meows279", "1101-093012-bark123")
    assert (task.cluster.spark_version, task.cluster.node_type_id, task.cluster.num_workers) == (
        "13.3.x-scala2.12",
        "Standard_DS3_v2",
        2,
    )
    assert task.cluster.state == "TERMINATED"


EXPLORE = textwrap.dedent(
    """\
    # Databricks notebook source
    words = open("inputs/words/words.txt").read().split()
    least = int(dbutils.widgets.get("least"))

    # COMMAND ----------

    common = sorted({w for w in words if words.count(w) >= least})
    dbutils.notebook.exit(f"{len(set(words))} distinct words, {','.join(common)} at least {least}x")
    print("never printed")
    """
)


def test_a_notebook_step_reads_the_step_before_and_ends_with_a_value_then_a_jar_step_runs(
    cloud_targets, workspace, carol, as_bob, tmp_path
):
    definition = textwrap.dedent(
        """
        experiment: notebooks
        steps:
          - {name: prepare, compute: local, script: prepare.py, outputs: [words]}
          - name: explore
            type: databricks
            compute: dbx
            notebook: explore.py
            arguments: [least=2]
            inputs: [words]
          - name: package
            type: databricks
            compute: dbx
            jar: hello.jar
            main_class: ai.trainyard.Hello
            arguments: [a, b]
            after: [explore]
        """
    )
    source: dict[str, str | bytes] = {
        "prepare.py": PREPARE,
        "explore.py": EXPLORE,
        "hello.jar": hello_jar(tmp_path),
    }
    parent = services.pipeline_submit(
        workspace=workspace, user=carol, definition=definition, archive=archive(source)
    )
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)

    steps = steps_of(parent)
    assert parent.status == "Completed", (parent.error, {n: r.error for n, r in steps.items()})
    explore, package = steps["explore"], steps["package"]
    exited = "Notebook exited: 6 distinct words, the at least 2x\n"
    assert stored_log(explore) == exited
    assert "Submitted Databricks run" in stored_log(explore, "prepare")
    # What the run page's log viewer offers a reader.
    download = as_bob.get(reverse("run_log_download", args=[workspace.slug, explore.pk, "stdout"]))
    assert b"".join(download.streaming_content) == exited.encode()
    assert stored_log(package) == "hello from the JVM a,b\n"
    assert package.started_at is not None and explore.ended_at is not None
    assert package.started_at >= explore.ended_at


def test_a_databricks_step_needs_a_cluster(workspace, alice, carol, databricks_emulator):
    minimal_environment()
    cloud_services.databricks_attach(
        workspace=workspace,
        user=alice,
        name="nodefault",
        workspace_url=databricks_emulator.url,
        resource_group="ml-rg",
        access_token=databricks_emulator.token,
    )
    definition = (
        "experiment: x\nsteps:\n  - {name: train, type: databricks, compute: nodefault, "
        "python_script: count.py}\n"
    )
    with pytest.raises(ServiceError) as caught:
        services.pipeline_submit(
            workspace=workspace, user=carol, definition=definition, archive=archive(SOURCE)
        )
    assert "nodefault has no default cluster: give the step a cluster_id (one of: " in str(
        caught.value
    )
    assert "shared-autoscale (0923-164208-meows279)" in str(caught.value)


SPARK_COUNT = textwrap.dedent(
    """
    import json, os
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("pipeline-count").getOrCreate()
    words = open("inputs/words/words.txt").read().split()
    frame = spark.createDataFrame([(w,) for w in words], ["word"])
    counts = {r["word"]: r["count"] for r in frame.groupBy("word").count().collect()}
    os.makedirs("outputs/counts", exist_ok=True)
    json.dump(counts, open("outputs/counts/counts.json", "w"))
    print("spark counted", len(counts), "distinct words", flush=True)
    spark.stop()
    """
)
TOP_WORD = textwrap.dedent(
    """
    import json
    counts = json.load(open("inputs/counts/counts.json"))
    print("top word on databricks:", max(counts, key=counts.get), flush=True)
    """
)


@pytest.mark.usefixtures("head_node")
def test_script_then_pyspark_then_databricks(cloud_targets, workspace, carol):
    definition = textwrap.dedent(
        """
        experiment: spark-jobs
        steps:
          - {name: prepare, compute: local, script: prepare.py, outputs: [words]}
          - name: spark
            type: pyspark
            compute: hdi
            script: spark_count.py
            inputs: [words]
            outputs: [counts]
          - name: top
            type: databricks
            compute: dbx
            python_script: top.py
            inputs: [counts]
        """
    )
    source = {"prepare.py": PREPARE, "spark_count.py": SPARK_COUNT, "top.py": TOP_WORD}
    parent = services.pipeline_submit(
        workspace=workspace, user=carol, definition=definition, archive=archive(source)
    )
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=240)

    steps = steps_of(parent)
    assert parent.status == "Completed", (parent.error, {n: r.error for n, r in steps.items()})
    assert steps["spark"].framework == "PySpark"
    assert "spark counted 6 distinct words" in stored_log(steps["spark"])
    assert "top word on databricks: the" in stored_log(steps["top"])


NOISE = textwrap.dedent(
    """
    import os
    # Random bytes do not compress: packed, they take a third more room than on disk.
    for name, kib in (("data", 400), ("more", 700)):
        os.makedirs(f"outputs/{name}")
        with open(f"outputs/{name}/{name}.bin", "wb") as out:
            out.write(os.urandom(kib * 1024))
    """
)
CHECKSUM = textwrap.dedent(
    """
    import hashlib, pathlib
    for path in sorted(pathlib.Path("inputs").rglob("*.bin")):
        print(path, hashlib.sha256(path.read_bytes()).hexdigest(), flush=True)
    """
)


def test_a_batch_task_carries_hundreds_of_kib_and_a_step_given_more_fails_saying_how_much(
    cloud_targets, workspace, carol, batch_emulator
):
    definition = textwrap.dedent(
        """
        experiment: big-data
        steps:
          - {name: prepare, compute: local, script: noise.py, outputs: [data, more]}
          - {name: fits, type: batch, compute: cpubatch, script: checksum.py, inputs: [data]}
          - name: too-big
            type: batch
            compute: cpubatch
            script: checksum.py
            inputs: [data, more]
        """
    )
    parent = services.pipeline_submit(
        workspace=workspace,
        user=carol,
        definition=definition,
        archive=archive({"noise.py": NOISE, "checksum.py": CHECKSUM}),
    )
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)

    steps = steps_of(parent)
    fits, too_big = steps["fits"], steps["too-big"]
    assert fits.status == "Completed", (fits.error, fits.stderr_tail)
    data = RunFile.objects.get(run=steps["prepare"], path="outputs/data/data.bin")
    assert stored_log(fits) == f"inputs/data/data.bin {data.sha256}\n"
    assert (parent.status, too_big.status) == ("Failed", "Failed")
    assert re.fullmatch(
        r"The run's files \(a pipeline step's inputs too\) are 14\d\d KiB packed, more than "
        r"the 768 KiB a Batch task can carry: set STUDIO_URL so that Batch nodes download them "
        r"from Trainyard, leave data files out of the source directory \(\.amlignore\), give "
        r"the step smaller inputs, or let the script download its data\.",
        too_big.error,
    ), too_big.error
    assert parent.error == f"Step ‘too-big’ failed: {too_big.error}"
    assert fits.handle is not None
    assert list(batch_emulator.jobs) == [fits.handle["job"]["job_id"]]


def test_with_a_studio_url_batch_nodes_download_a_steps_files_from_the_studio(
    cloud_targets, workspace, carol, batch_emulator, live_server, settings
):
    settings.STUDIO_URL = live_server.url
    definition = textwrap.dedent(
        """
        experiment: big-data
        steps:
          - {name: prepare, compute: local, script: noise.py, outputs: [data, more]}
          - name: checksum
            type: batch
            compute: cpubatch
            script: checksum.py
            inputs: [data, more]
        """
    )
    parent = services.pipeline_submit(
        workspace=workspace,
        user=carol,
        definition=definition,
        archive=archive({"noise.py": NOISE, "checksum.py": CHECKSUM}),
    )
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)

    steps = steps_of(parent)
    checksum = steps["checksum"]
    assert (parent.status, checksum.status) == ("Completed", "Completed"), checksum.error
    sha = {f.path: f.sha256 for f in RunFile.objects.filter(run=steps["prepare"])}
    assert stored_log(checksum) == (
        f"inputs/data/data.bin {sha['outputs/data/data.bin']}\n"
        f"inputs/more/more.bin {sha['outputs/more/more.bin']}\n"
    )
    [job] = batch_emulator.jobs.values()
    task = job.tasks["main"]
    assert sorted(r["filePath"] for r in task.resource_files) == [
        "checksum.py",
        "inputs/data/data.bin",
        "inputs/more/more.bin",
        "noise.py",
    ]
    assert all(
        r["httpUrl"].startswith(f"{live_server.url}/api/v1/batch-files/")
        for r in task.resource_files
    )
    assert not any(name.startswith("TRAINYARD_FILES") for name in task.environment)


def test_a_batch_task_whose_file_links_expired_fails_saying_what_to_do(
    cloud_targets, workspace, carol, as_bob, live_server, settings
):
    settings.STUDIO_URL = live_server.url
    settings.BATCH_FILE_LINK_HOURS = 0
    definition = (
        "experiment: late\nsteps:\n"
        "  - {name: checksum, type: batch, compute: cpubatch, script: checksum.py}\n"
    )
    parent = services.pipeline_submit(
        workspace=workspace,
        user=carol,
        definition=definition,
        archive=archive({"checksum.py": CHECKSUM}),
    )
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)

    checksum = steps_of(parent)["checksum"]
    assert (parent.status, checksum.status) == ("Failed", "Failed")
    reason = (
        "Failed to download resource file checksum.py: HTTP Error 403: Forbidden. The node "
        f"could not download the run's files from {live_server.url}: check that the pool's "
        "nodes reach Trainyard at STUDIO_URL, and submit again if the task waited more than 0 "
        "hours for a node (BATCH_FILE_LINK_HOURS)."
    )
    assert stored_log(checksum, "stderr") == reason + "\n"
    page = as_bob.get(reverse("run_detail", args=[workspace.slug, checksum.pk])).content.decode()
    assert html.escape(reason) in page


def test_a_batch_file_link_gives_its_file_without_sign_in_until_it_expires(client, settings):
    sha, _ = blob_store_bytes(b"weights=42\n")
    link = file_link(sha)

    answer = client.get(link)
    assert answer.status_code == 200
    assert b"".join(answer.streaming_content) == b"weights=42\n"
    refused = (
        "This link to a run's file has expired or was not made by Trainyard: submit the step "
        "again (links last BATCH_FILE_LINK_HOURS)."
    )
    forged = client.get(link.replace(sha, "0" * 64))
    assert (forged.status_code, forged.json()["detail"]) == (403, refused)
    settings.BATCH_FILE_LINK_HOURS = 0
    expired = client.get(link)
    assert (expired.status_code, expired.json()["detail"]) == (403, refused)


WRITES_A_MODEL = (
    "import os\nos.makedirs('outputs', exist_ok=True)\nopen('outputs/model.txt', 'w').write('1')\n"
)


def test_hostile_output_names_from_the_services_are_left_out_with_a_warning(
    cloud_targets,
    workspace,
    carol,
    databricks_emulator,
    batch_emulator,
    tmp_path,
    as_carol,
    api_carol,
):
    """Databricks and Batch list files under names that climb out, are absolute, hold NUL or
    escape sequences, or are too long: none is written anywhere, the step says which."""
    climbs = tmp_path / "climbed"
    absolute = tmp_path / "absolute"
    planted = {
        "../" * 16 + str(climbs).lstrip("/"): b"climbed",
        str(absolute): b"absolute",
        "nul\0.txt": b"nul",
        "red\x1b[31m.txt": b"escape",
        "x" * 300 + ".txt": b"long",
        "kept.txt": b"an ordinary name",
    }
    databricks_emulator.planted = planted
    batch_emulator.planted = planted
    definition = textwrap.dedent(
        """
        experiment: hostile-names
        steps:
          - name: dbx
            type: databricks
            compute: dbx
            python_script: model.py
          - name: batch
            type: batch
            compute: cpubatch
            command: python3 model.py
        """
    )
    parent = services.pipeline_submit(
        workspace=workspace,
        user=carol,
        definition=definition,
        archive=archive({"model.py": WRITES_A_MODEL}),
    )
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)

    steps = steps_of(parent)
    assert [r.status for r in steps.values()] == ["Completed", "Completed"]
    assert not climbs.exists() and not absolute.exists()
    for run in steps.values():
        listed = api_carol.get(f"/api/v1/runs/{run.pk}/files").json()
        assert {f["path"] for f in listed} == {"outputs/model.txt", "outputs/kept.txt"}
        assert file_text(run, "outputs/kept.txt") == "an ordinary name"
        [message] = [
            e["message"]
            for e in api_carol.get(f"/api/v1/runs/{run.pk}").json()["timeline"]
            if e["status"] == "Completed"
        ]
        assert message.startswith("2 output file(s) collected; 5 left out: ")
        assert "(an absolute path, or one that climbs out with ..)" in message
        assert "outputs/nul\\x00.txt (a control character in the name)" in message
        assert "outputs/red\\x1b[31m.txt (a control character in the name)" in message
        assert "…" + " (a name longer than 255 bytes)" in message
        page = as_carol.get(reverse("run_detail", args=[workspace.slug, run.pk])).content
        assert html.escape(message, quote=False) in page.decode()
    # Databricks reports full paths, Batch paths under the task's folder.
    dbx_message = steps["dbx"].events.get(status="Completed").message
    assert f"{absolute} (an absolute path, or one that climbs out with ..)" in dbx_message
    batch_message = steps["batch"].events.get(status="Completed").message
    assert f"outputs/{absolute} (not a plain path" in batch_message
