"""PySpark runs on an HDInsight / Spark head node: the real spark-submit (local[2]) over SSH.

Spark takes 10-30 s to start on this machine, so the suite runs only three jobs:
one that completes, one on the master the target's setting names, and one that
is cancelled.
"""

from __future__ import annotations

import html
import io
import secrets
import tarfile
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compute import ssh
from compute.models import AuthMethod, ComputeKind, ComputeState, ComputeTarget
from compute.vm.services import ssh_target
from runs.logs import store as logstore
from runs.models import Environment, EnvironmentKind, Framework, Run, RunStatus
from runs.runconfig import RunConfigError, parse_runconfig
from runs.services.lifecycle import run_cancel
from studio.errors import ServiceError
from tests.conftest import client_for
from tests.support.runs import (
    minimal_environment,
    running_monitor,
    submit,
    wait_final,
    wait_for,
    write_tree,
)

pytestmark = pytest.mark.django_db(transaction=True)

WORD_COUNT = """\
import sys
from pyspark.sql import SparkSession
from trainyard import run

spark = SparkSession.builder.appName("word-count").getOrCreate()
words = open("words.txt").read().split()
frame = spark.createDataFrame([(w,) for w in words], ["word"])
total = frame.count()
counts = sorted((r["word"], r["count"]) for r in frame.groupBy("word").count().collect())
print("master", spark.sparkContext.master, "args", sys.argv[1:])
print("total", total)
print("counts", counts)
run.log("words", total)
with open("outputs/result.txt", "w") as f:
    f.write(f"{total}\\n")
spark.stop()
"""

LONG_JOB = """\
import sys, time
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("sleeper").getOrCreate()
print("spark session started", sys.argv[1], flush=True)
spark.sparkContext.parallelize(range(2), 2).map(lambda x: time.sleep(600)).collect()
"""


@pytest.fixture
def head_node(workspace, alice, spark_head_node):
    """The head node as attached (test_hdinsight_attach checks what the attach finds)."""
    private_key, public_line = ssh.generate_key_pair()
    spark_head_node.authorize(public_line)
    ssh.pool.close_all()
    yield ComputeTarget.objects.create(
        workspace=workspace,
        name="hdi",
        kind=ComputeKind.HDINSIGHT,
        state=ComputeState.SUCCEEDED,
        address=spark_head_node.host,
        port=spark_head_node.port,
        username=spark_head_node.username,
        auth_method=AuthMethod.KEY,
        private_key=private_key,
        host_key_fingerprint=spark_head_node.host_key_fingerprint,
        facts={"spark_master": "local[2]"},
        config={"spark_master": ""},
        created_by=alice,
    )
    ssh.pool.close_all()


def archive(files: dict[str, str]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return SimpleUploadedFile("src.tar.gz", buffer.getvalue())


def on_head_node(target, command: str) -> str:
    with ssh.connect(ssh_target(target)) as connection:
        _, out, _ = connection.run(["sh", "-c", command])
    return out


def test_a_pyspark_run_completes_with_its_driver_log_and_outputs(workspace, head_node, api_carol):
    minimal_environment()  # what the API uses by default; transactional tests flush it
    with running_monitor():
        response = api_carol.post(
            f"/api/v1/runs?workspace={workspace.slug}",
            {
                "experiment": "spark-words",
                "target": "hdi",
                "entry_script": "count.py",
                "arguments": "--lang en",
                "snapshot": archive({"count.py": WORD_COUNT, "words.txt": "to be or not to be"}),
            },
        )
        assert response.status_code == 201, response.content
        assert response.json()["framework"] == "PySpark"
        run = wait_final(Run.objects.get(pk=response.json()["id"]), timeout=300)
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert run.framework == Framework.PYSPARK

    stdout = logstore.read(run.pk, "stdout")[0].decode()
    assert "master local[2] args ['--lang', 'en']" in stdout
    assert "total 6" in stdout
    assert "counts [('be', 2), ('not', 1), ('or', 1), ('to', 2)]" in stdout
    driver_log = logstore.read(run.pk, "stderr")[0].decode()
    assert driver_log.startswith("spark-submit --master local[2] count.py --lang en\n")
    assert "SparkContext: Running Spark version 4.3.0" in driver_log
    assert list(run.metrics.values_list("name", "value")) == [("words", 6.0)]
    assert {f.path for f in run.files.all()} == {"outputs/result.txt"}

    page = client_for(run.submitted_by).get(reverse("run_detail", args=[workspace.slug, run.pk]))
    assert "PySpark (spark-submit on the head node)" in page.content.decode()


MASTER = """\
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("which-master").getOrCreate()
print("master", spark.sparkContext.master, "parallelism", spark.sparkContext.defaultParallelism)
spark.stop()
"""


def test_the_targets_spark_master_is_the_one_the_job_runs_on(workspace, head_node, api_carol):
    minimal_environment()
    changed = api_carol.put(
        f"/api/v1/computes/hdi/spark?workspace={workspace.slug}",
        {"spark_master": "local[1]"},
        content_type="application/json",
    )
    assert changed.status_code == 200, changed.content
    head_node.refresh_from_db()
    # The cluster itself would run local[2]: the setting wins over it.
    assert head_node.facts["spark_master"] == "local[2]"
    with running_monitor():
        response = api_carol.post(
            f"/api/v1/runs?workspace={workspace.slug}",
            {
                "experiment": "spark-master",
                "target": "hdi",
                "entry_script": "master.py",
                "snapshot": archive({"master.py": MASTER}),
            },
        )
        assert response.status_code == 201, response.content
        run = wait_final(Run.objects.get(pk=response.json()["id"]), timeout=300)
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert "master local[1] parallelism 1" in logstore.read(run.pk, "stdout")[0].decode()
    driver_log = logstore.read(run.pk, "stderr")[0].decode()
    assert driver_log.startswith("spark-submit --master local[1] master.py\n")


def test_cancel_stops_the_driver_and_its_python_workers(
    tmp_path, workspace, alice, head_node, settings
):
    settings.RUN_CANCEL_GRACE_SECONDS = 5
    marker = f"ty-spark-{secrets.token_hex(6)}"
    source = write_tree(tmp_path / "src", {"sleeper.py": LONG_JOB})
    grep = f"grep -e '[p]yspark' -e '[{marker[0]}]{marker[1:]}'"

    def spark_pids() -> set[str]:
        out = on_head_node(head_node, f"ps -u tytest -o pid=,args= | {grep} || true")
        return {line.split()[0] for line in out.splitlines()}

    # Spark processes that earlier tests left on the same head node are not this run's.
    before = spark_pids()
    with running_monitor():
        run = submit(
            workspace=workspace,
            user=alice,
            target=head_node,
            source=source,
            entry="sleeper.py",
            arguments=[marker],
            framework=Framework.PYSPARK,
        )
        wait_for(run, [RunStatus.RUNNING], timeout=120)
        # The driver log streams while the job runs, up to its tasks starting.
        while b"Running task 1.0 in stage 0.0" not in logstore.read(run.pk, "stderr")[0]:
            run.refresh_from_db()
            assert run.status == RunStatus.RUNNING, (run.error, run.stderr_tail)
        assert b"spark session started " + marker.encode() in logstore.read(run.pk, "stdout")[0]
        # spark-submit's JVM, the Python driver, PySpark's worker daemon and its two workers.
        deadline = time.monotonic() + 120
        while len(spark_pids() - before) < 5:
            assert time.monotonic() < deadline, on_head_node(head_node, "ps -u tytest -o args")
        assert run_cancel(run=run, user=alice)
        run = wait_final(run, timeout=120)
    assert run.status == RunStatus.CANCELED
    assert spark_pids() - before == set()


def test_pyspark_needs_an_hdinsight_target_and_hdinsight_needs_pyspark(
    tmp_path, workspace, alice, head_node
):
    source = write_tree(tmp_path / "src", {"train.py": "print(1)\n"})
    local = ComputeTarget.objects.get(workspace=workspace, name="local")
    with pytest.raises(ServiceError) as error:
        submit(workspace=workspace, user=alice, target=local, source=source, framework="PySpark")
    assert str(error.value) == (
        "PySpark jobs run with spark-submit on an HDInsight / Spark target, and local is a "
        "Local: choose an HDInsight / Spark target, or the framework Python."
    )
    with pytest.raises(ServiceError) as error:
        submit(workspace=workspace, user=alice, target=head_node, source=source)
    assert str(error.value) == (
        "hdi is an HDInsight / Spark target: its runs are PySpark jobs submitted with "
        "spark-submit. Choose the framework PySpark."
    )
    in_docker = Environment.objects.create(
        workspace=workspace, name="cuda", kind=EnvironmentKind.USER_MANAGED, docker_image="cuda:12"
    )
    with pytest.raises(ServiceError, match="PySpark jobs run in the head node's Spark"):
        submit(
            workspace=workspace,
            user=alice,
            target=head_node,
            source=source,
            framework="PySpark",
            environment=in_docker,
        )
    assert not Run.objects.exists()


def submit_form(client, workspace, **fields):
    data = {
        "experiment": "spark-words",
        "entry_script": "count.py",
        "environment": str(minimal_environment().pk),
        "source_paths": "p/count.py",
        "source_folder": [SimpleUploadedFile("count.py", b"print(1)\n")],
    }
    response = client.post(reverse("run_submit", args=[workspace.slug]), data | fields)
    return html.unescape(response.content.decode())


def test_the_submit_form_offers_the_framework_and_says_which_target_needs_which(
    workspace, head_node, as_carol
):
    page = as_carol.get(reverse("run_submit", args=[workspace.slug])).content.decode()
    assert "hdi (HDInsight / Spark)" in html.unescape(page)
    assert "Automatic: PySpark on HDInsight / Spark targets, else Python" in html.unescape(page)

    page = submit_form(as_carol, workspace, target="local", framework="PySpark")
    assert "PySpark jobs run with spark-submit on an HDInsight / Spark target, and local" in page

    runconfig = SimpleUploadedFile("hdi.runconfig", b"target: hdi\nframework: Python\n")
    page = submit_form(as_carol, workspace, runconfig=runconfig)
    assert "hdi is an HDInsight / Spark target: its runs are PySpark jobs" in page
    assert not Run.objects.exists()


def test_a_runconfig_names_pyspark_in_any_case():
    assert parse_runconfig("framework: pyspark\n").framework == "PySpark"
    assert parse_runconfig("script: train.py\n").framework == ""
    with pytest.raises(RunConfigError, match="framework Scala is not supported here"):
        parse_runconfig("framework: Scala\n")
