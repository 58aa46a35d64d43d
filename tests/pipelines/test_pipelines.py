"""Pipelines end to end: steps on the local target and on the Databricks and Batch emulators,
followed by a real run monitor, with files passed from step to step.

Tasks run eagerly; `advancing_pipelines` plays the Celery beat that moves pipelines on.
"""

from __future__ import annotations

import html
import io
import json
import re
import tarfile
import textwrap
import threading
from collections.abc import Mapping
from contextlib import contextmanager

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compute.backends.batch import file_link
from compute.cloud import services as cloud_services
from compute.models import ComputeTarget
from pipelines import services
from pipelines.models import Pipeline
from runs.models import Run, RunFile
from runs.parents import parent_cancel
from studio.blobs import blob_path, blob_store_bytes
from studio.errors import ServiceError
from tests.compute.backends.test_runs_hdinsight import head_node  # noqa: F401 - a fixture
from tests.support.cloud import hello_jar
from tests.support.runs import minimal_environment, running_monitor, wait_final

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]

PREPARE = textwrap.dedent(
    """
    import os, sys
    os.makedirs("outputs/words", exist_ok=True)
    text = " ".join(sys.argv[1:]) or "the cat saw the dog and the bird"
    with open("outputs/words/words.txt", "w") as out:
        out.write("\\n".join(text.split()))
    print("prepared", len(text.split()), "words", flush=True)
    """
)
COUNT = textwrap.dedent(
    """
    import collections, json, os
    words = open("inputs/words/words.txt").read().split()
    counts = collections.Counter(words)
    os.makedirs("outputs/counts", exist_ok=True)
    json.dump(counts, open("outputs/counts/counts.json", "w"))
    print("counted", len(counts), "distinct words on Databricks", flush=True)
    """
)
REPORT = textwrap.dedent(
    """
    import json, os
    counts = json.load(open("inputs/counts/counts.json"))
    word, n = max(counts.items(), key=lambda item: item[1])
    os.makedirs("outputs", exist_ok=True)
    open("outputs/report.txt", "w").write(f"top word: {word} ({n})\\n")
    print(f"top word: {word} ({n})", flush=True)
    """
)
FAIL = "import sys\nprint('cannot count today', file=sys.stderr)\nsys.exit(3)\n"

PIPELINE = textwrap.dedent(
    """
    name: word-count
    experiment: text-jobs
    steps:
      - name: prepare
        compute: local
        script: prepare.py
        arguments: [the, cat, saw, the, dog, and, the, bird]
        outputs: [words]
      - name: count
        type: databricks
        compute: dbx
        python_script: count.py
        cluster_id: 0923-164208-meows279
        inputs: [words]
        outputs: [counts]
      - name: report
        type: batch
        compute: cpubatch
        command: python3 report.py
        inputs: [counts]
    """
)


def archive(files: Mapping[str, str | bytes]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            data = content if isinstance(content, bytes) else content.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return SimpleUploadedFile("source.tar.gz", buffer.getvalue())


SOURCE = {"prepare.py": PREPARE, "count.py": COUNT, "report.py": REPORT, "fail.py": FAIL}


@contextmanager
def advancing_pipelines(interval: float = 0.2):
    """What the Celery beat does in `manage.py up`: advance open pipelines now and then."""
    stop = threading.Event()

    def loop():
        from django.db import connection

        try:
            while not stop.is_set():
                services.pipelines_advance()
                stop.wait(interval)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


@pytest.fixture
def cloud_targets(workspace, alice, databricks_emulator, batch_emulator):
    minimal_environment()
    cloud_services.databricks_attach(
        workspace=workspace,
        user=alice,
        name="dbx",
        workspace_url=databricks_emulator.url,
        resource_group="ml-rg",
        access_token=databricks_emulator.token,
        cluster_id="0923-164208-meows279",
    )
    cloud_services.batch_attach(
        workspace=workspace,
        user=alice,
        name="cpubatch",
        account_name=batch_emulator.account_name,
        account_url=batch_emulator.url,
        resource_group="ml-rg",
        account_key=batch_emulator.account_key,
        pool_id="cpu-pool",
    )
    assert set(ComputeTarget.objects.filter(state="Succeeded").values_list("name", flat=True)) >= {
        "dbx",
        "cpubatch",
    }


def steps_of(parent: Run) -> dict[str, Run]:
    return {step.name: step.run for step in Pipeline.objects.get(run=parent).steps.all()}


def file_text(run: Run, path: str) -> str:
    sha = RunFile.objects.get(run=run, path=path).sha256
    return blob_path(sha).read_text()


def stored_log(run: Run, stream: str = "stdout") -> str:
    from runs.logs import store as logstore

    return logstore.read(run.pk, stream, 0, 1 << 20)[0].decode()


def test_three_steps_pass_files_from_local_to_databricks_to_batch(cloud_targets, workspace, carol):
    parent = services.pipeline_submit(
        workspace=workspace, user=carol, definition=PIPELINE, archive=archive(SOURCE)
    )
    assert parent.experiment.name == "text-jobs"
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)

    steps = steps_of(parent)
    assert parent.status == "Completed", (parent.error, {n: r.error for n, r in steps.items()})
    assert [r.status for r in steps.values()] == ["Completed"] * 3
    assert [r.target_name for r in steps.values()] == ["local", "dbx", "cpubatch"]
    assert all(r.parent_id == parent.pk for r in steps.values())

    assert file_text(steps["prepare"], "outputs/words/words.txt").split() == [
        "the",
        "cat",
        "saw",
        "the",
        "dog",
        "and",
        "the",
        "bird",
    ]
    counts = json.loads(file_text(steps["count"], "outputs/counts/counts.json"))
    assert counts["the"] == 3
    assert "counted 6 distinct words on Databricks" in stored_log(steps["count"])
    assert file_text(steps["report"], "outputs/report.txt") == "top word: the (3)\n"
    assert "top word: the (3)" in stored_log(steps["report"])
    # The service's side of each cloud step is its preparation log.
    assert "Submitted Databricks run" in stored_log(steps["count"], "prepare")
    assert "Submitted Batch job" in stored_log(steps["report"], "prepare")
    # Each consumer saw its input in its snapshot.
    count, report = steps["count"].snapshot, steps["report"].snapshot
    assert count is not None and report is not None
    assert any(e[0] == "inputs/words/words.txt" for e in count.manifest)
    assert any(e[0] == "inputs/counts/counts.json" for e in report.manifest)
    events = [e.message for e in parent.events.all()]
    assert "All 3 step(s) completed" in events


def test_a_failing_step_fails_the_pipeline_and_later_steps_never_start(
    cloud_targets, workspace, carol
):
    definition = PIPELINE.replace("python_script: count.py", "python_script: fail.py")
    parent = services.pipeline_submit(
        workspace=workspace, user=carol, definition=definition, archive=archive(SOURCE)
    )
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)

    steps = steps_of(parent)
    assert parent.status == "Failed"
    assert steps["prepare"].status == "Completed"
    assert steps["count"].status == "Failed"
    assert "cannot count today" in stored_log(steps["count"]) + steps["count"].stderr_tail
    report = steps["report"]
    assert report.status == "Canceled"
    assert report.started_at is None and report.handle is None
    assert "Not started: step ‘count’ failed" in [e.message for e in report.events.all()]
    assert parent.error.startswith("Step ‘count’ failed")
    assert "Not started: report" in parent.error


def test_missing_output_fails_the_step_that_needed_it(cloud_targets, workspace, carol):
    definition = PIPELINE.replace("script: prepare.py", "script: report.py").replace(
        "arguments: [the, cat, saw, the, dog, and, the, bird]", "arguments: []"
    )
    source = dict(SOURCE, **{"report.py": "print('wrote nothing')\n"})
    parent = services.pipeline_submit(
        workspace=workspace, user=carol, definition=definition, archive=archive(source)
    )
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)

    steps = steps_of(parent)
    assert steps["prepare"].status == "Completed"
    assert steps["count"].status == "Failed"
    assert "Input words is missing: step ‘prepare’ completed without writing outputs/words" in (
        steps["count"].error
    )
    assert steps["report"].status == "Canceled"
    assert parent.status == "Failed"


def test_canceling_the_pipeline_stops_the_running_step(cloud_targets, workspace, carol):
    source = dict(
        SOURCE, **{"prepare.py": "import time\nprint('working', flush=True)\ntime.sleep(60)\n"}
    )
    parent = services.pipeline_submit(
        workspace=workspace, user=carol, definition=PIPELINE, archive=archive(source)
    )
    with running_monitor(), advancing_pipelines():
        prepare = steps_of(parent)["prepare"]
        from tests.support.runs import wait_for

        wait_for(prepare, ["Running"], timeout=60)
        parent_cancel(kind=services.PIPELINE, parent=Pipeline.objects.get(run=parent), user=carol)
        parent = wait_final(parent, timeout=60)

    steps = steps_of(parent)
    assert parent.status == "Canceled"
    assert {name: run.status for name, run in steps.items()} == {
        "prepare": "Canceled",
        "count": "Canceled",
        "report": "Canceled",
    }
    assert steps["count"].handle is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("compute: dbx", "compute: nothere"), "this workspace has no compute target 'nothere'"),
        (("compute: dbx", "compute: local"), "Step ‘count’ is a Databricks step"),
        (("python_script: count.py", "python_script: missing.py"), "runs missing.py, which is not"),
        (("inputs: [counts]", "inputs: [scores]"), "no step has scores among its outputs"),
        (("type: batch", "type: hadoop"), "type 'hadoop' is not one of"),
        (
            ("cluster_id: 0923-164208-meows279", "cluster: x"),
            "cluster is not a key of a databricks",
        ),
    ],
)
def test_definition_errors_name_the_step_and_the_fix(
    cloud_targets, workspace, carol, change, message
):
    with pytest.raises(ServiceError) as caught:
        services.pipeline_submit(
            workspace=workspace,
            user=carol,
            definition=PIPELINE.replace(*change),
            archive=archive(SOURCE),
        )
    assert message in str(caught.value)
    assert not Run.objects.exists()


LONG = "import os, time\nprint('pid', os.getpid(), flush=True)\ntime.sleep(300)\n"


@pytest.mark.parametrize(
    ("step", "emulator"),
    [
        ("type: databricks\n    compute: dbx\n    python_script: long.py", "databricks_emulator"),
        ("type: batch\n    compute: cpubatch\n    command: python3 long.py", "batch_emulator"),
    ],
)
def test_canceling_a_cloud_step_stops_its_job_on_the_service(
    cloud_targets, workspace, carol, step, emulator, request
):
    from tests.support.cloud import process_exists, wait_until

    definition = f"experiment: cancels\nsteps:\n  - name: long\n    {step}\n"
    parent = services.pipeline_submit(
        workspace=workspace, user=carol, definition=definition, archive=archive({"long.py": LONG})
    )
    with running_monitor(), advancing_pipelines():
        run = steps_of(parent)["long"]
        # The live log shows the job's pid: the monitor streams the service's log.
        line = wait_until(
            lambda: next((s for s in stored_log(run).splitlines() if s.startswith("pid ")), ""),
            timeout=60,
            what="the job's first line in the stored log",
        )
        pid = int(line.split()[1])
        assert process_exists(pid)
        parent_cancel(kind=services.PIPELINE, parent=Pipeline.objects.get(run=parent), user=carol)
        parent = wait_final(parent, timeout=90)

    run.refresh_from_db()
    assert (parent.status, run.status) == ("Canceled", "Canceled")
    assert not process_exists(pid)
    assert all(
        not p.popen or p.popen.poll() is not None
        for p in request.getfixturevalue(emulator).processes()
    )


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
