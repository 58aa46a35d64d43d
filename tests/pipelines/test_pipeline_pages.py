"""The pipeline pages and API as people use them: submit a YAML file with the source folder,
watch the graph, cancel; a script run submitted to a cloud target becomes a one-step pipeline;
who may do what.
"""

from __future__ import annotations

import html
import re
import textwrap

import pytest
from django.urls import reverse

from pipelines.models import Pipeline
from runs.logs import store as logstore
from runs.models import Environment, Run
from runs.parents import parent_cancel
from tests.support.pipelines import PIPELINE, SOURCE, advancing_pipelines, archive
from tests.support.runs import running_monitor, wait_final

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]

USQL = textwrap.dedent(
    """
    @lines = EXTRACT line string FROM "/input/lines.txt" USING Extractors.Text();
    OUTPUT @lines TO "/output/lines.csv" USING Outputters.Csv();
    """
)


def text(response) -> str:
    words = re.sub(r"<[^>]+>", " ", response.content.decode())
    return re.sub(r"\s+", " ", html.unescape(words))


def definition_file(content: str = PIPELINE):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("pipeline.yml", content.encode(), content_type="application/x-yaml")


def submit_form(client, workspace, **fields):
    data = {
        "definition_file": definition_file(),
        "source_archive": archive(SOURCE),
        "experiment": "",
        "tags": "team=nlp",
    } | fields
    return client.post(reverse("pipeline_submit", args=[workspace.slug]), data)


@pytest.mark.usefixtures("cloud_targets")
def test_submit_from_the_form_and_watch_the_graph_complete(workspace, as_carol, as_bob):
    response = submit_form(as_carol, workspace)
    assert response.status_code == 302
    parent = Run.objects.get(pipeline__isnull=False)
    assert response["Location"] == reverse("pipeline_detail", args=[workspace.slug, parent.pk])

    first = as_bob.get(response["Location"])
    page = first.content.decode()
    assert '<svg class="pipeline-graph"' in page
    assert 'hx-trigger="every 2s"' in page
    for step in ("prepare", "count", "report"):
        assert f'data-step="{step}"' in page

    with running_monitor(), advancing_pipelines():
        wait_final(parent, timeout=120)

    done = as_bob.get(response["Location"])
    page = done.content.decode()
    assert 'hx-trigger="every 2s"' not in page
    graph = dict(re.findall(r'class="step" data-step="(\w+)" data-status="(\w+)"', page))
    assert graph == {"prepare": "Completed", "count": "Completed", "report": "Completed"}
    words = text(done)
    assert "word-count" in words and "team=nlp" in words
    assert "Databricks on dbx" in words and "Azure Batch on cpubatch" in words
    assert "words → counts" in words

    # The parent run's page is the pipeline page; each step's run page links back.
    assert as_bob.get(reverse("run_detail", args=[workspace.slug, parent.pk]))[
        "Location"
    ] == reverse("pipeline_detail", args=[workspace.slug, parent.pk])
    count = Pipeline.objects.get(run=parent).steps.get(name="count").run
    step_page = text(as_bob.get(reverse("run_detail", args=[workspace.slug, count.pk])))
    assert f"Pipeline text-jobs #{parent.number} · word-count (step count)" in step_page
    listing = text(as_bob.get(reverse("pipeline_list", args=[workspace.slug])))
    assert f"text-jobs #{parent.number}" in listing and "Completed" in listing


@pytest.mark.usefixtures("cloud_targets")
def test_form_errors_say_what_to_fix(workspace, as_carol):
    missing = text(
        as_carol.post(
            reverse("pipeline_submit", args=[workspace.slug]),
            {"source_archive": archive(SOURCE)},
        )
    )
    assert "Choose the pipeline's YAML file" in missing

    wrong = text(
        submit_form(
            as_carol, workspace, definition_file=definition_file(PIPELINE.replace("dbx", "dbz"))
        )
    )
    assert "Step ‘count’: this workspace has no compute target 'dbz'" in wrong

    broken = text(submit_form(as_carol, workspace, definition_file=definition_file("steps: [")))
    assert "The pipeline file is not valid YAML" in broken

    no_source = text(
        as_carol.post(
            reverse("pipeline_submit", args=[workspace.slug]),
            {"definition_file": definition_file()},
        )
    )
    assert "choose the source folder" in no_source
    assert not Run.objects.exists()


@pytest.mark.usefixtures("cloud_targets")
def test_a_script_run_on_a_databricks_target_is_a_one_step_pipeline(workspace, as_carol):
    form = as_carol.get(reverse("run_submit", args=[workspace.slug])).content.decode()
    assert "dbx (Azure Databricks)" in form and "cpubatch (Azure Batch)" in form
    env = Environment.objects.get(name="trainyard-minimal-python")
    source = {"train.py": "print('hello from databricks', flush=True)\n"}
    response = as_carol.post(
        reverse("run_submit", args=[workspace.slug]),
        {
            "experiment": "dbx-runs",
            "target": "dbx",
            "source_archive": archive(source),
            "entry_script": "train.py",
            "environment": str(env.pk),
        },
        follow=True,
    )
    parent = Run.objects.get(pipeline__isnull=False)
    assert response.redirect_chain[-1][0] == reverse(
        "pipeline_detail", args=[workspace.slug, parent.pk]
    )
    assert "step" in Pipeline.objects.get(run=parent).definition
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)
    step = Pipeline.objects.get(run=parent).steps.get().run
    assert (parent.status, step.status, step.target_name) == ("Completed", "Completed", "dbx")
    assert "hello from databricks" in logstore.read(step.pk, "stdout", 0, 1 << 20)[0].decode()


@pytest.fixture
def adla(workspace, alice, datalake_emulator):
    from compute.cloud import services as cloud_services
    from tests.support.runs import minimal_environment

    minimal_environment()
    cloud_services.datalake_attach(
        workspace=workspace,
        user=alice,
        name="adla",
        resource_group="ml-rg",
        account_name=datalake_emulator.account_name,
        tenant_id=datalake_emulator.tenant_id,
        client_id=datalake_emulator.client_id,
        client_secret=datalake_emulator.client_secret,
        endpoint=datalake_emulator.url,
        authority_url=datalake_emulator.url,
    )


def usql_pipeline(user, workspace, script: str) -> Run:
    from pipelines import services

    definition = (
        "experiment: lake\nsteps:\n  - {name: lines, type: datalake, compute: adla, "
        "script: lines.usql, degree_of_parallelism: 2}\n"
    )
    return services.pipeline_submit(
        workspace=workspace,
        user=user,
        definition=definition,
        archive=archive({"lines.usql": script}),
    )


@pytest.mark.usefixtures("adla")
def test_a_usql_step_on_data_lake(workspace, carol):
    parent = usql_pipeline(carol, workspace, USQL)
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)
    step = Pipeline.objects.get(run=parent).steps.get().run
    assert (parent.status, step.status) == ("Completed", "Completed")
    log = logstore.read(step.pk, "stdout", 0, 1 << 20)[0].decode()
    assert "Result: Succeeded" in log
    prepare = logstore.read(step.pk, "prepare", 0, 1 << 20)[0].decode()
    assert "Submitted U-SQL job" in prepare


@pytest.mark.usefixtures("adla")
def test_a_usql_step_that_does_not_compile_shows_the_diagnostic_on_its_page(
    workspace, carol, as_bob
):
    parent = usql_pipeline(carol, workspace, USQL.replace("EXTRACT line", "extract line"))
    with running_monitor(), advancing_pipelines():
        parent = wait_final(parent, timeout=120)

    step = Pipeline.objects.get(run=parent).steps.get().run
    assert (parent.status, step.status) == ("Failed", "Failed")
    diagnostic = (
        "E_CSC_USER_SYNTAXERROR line 2: syntax error. Expected one of: COMBINE EXTRACT "
        "PROCESS REDUCE SELECT VALUES"
    )
    assert logstore.read(step.pk, "stderr", 0, 1 << 20)[0].decode() == diagnostic + "\n"
    page = text(as_bob.get(reverse("run_detail", args=[workspace.slug, step.pk])))
    assert "Why it failed" in page
    assert f"Last lines of stderr: {diagnostic}" in page
    assert parent.error.startswith("Step ‘lines’ failed: ")


@pytest.mark.usefixtures("adla")
def test_canceling_a_usql_pipeline_cancels_the_job_on_the_account(
    workspace, carol, datalake_emulator
):
    from pipelines import services
    from tests.support.cloud import wait_until
    from tests.support.runs import wait_for

    datalake_emulator.running_seconds = 300
    parent = usql_pipeline(carol, workspace, USQL)
    with running_monitor(), advancing_pipelines():
        step = Pipeline.objects.get(run=parent).steps.get().run
        wait_for(step, ["Running"], timeout=60)
        [job] = datalake_emulator.jobs.values()
        wait_until(lambda: job.state == "Running", timeout=60, what="the U-SQL job to run")
        parent_cancel(kind=services.PIPELINE, parent=Pipeline.objects.get(run=parent), user=carol)
        parent = wait_final(parent, timeout=60)

    step.refresh_from_db()
    assert (parent.status, step.status) == ("Canceled", "Canceled")
    assert (job.state, job.result) == ("Ended", "Cancelled")
    log = logstore.read(step.pk, "stdout", 0, 1 << 20)[0].decode()
    assert log.splitlines()[-1] == "Result: Cancelled"


# ---------------------------------------------------------------- permissions


@pytest.mark.usefixtures("cloud_targets")
def test_pages_by_role(workspace, as_alice, as_carol, as_bob, as_charlie):
    submit_form(as_carol, workspace)
    parent = Run.objects.get(pipeline__isnull=False)
    listing = reverse("pipeline_list", args=[workspace.slug])
    submit = reverse("pipeline_submit", args=[workspace.slug])
    detail = reverse("pipeline_detail", args=[workspace.slug, parent.pk])
    cancel = reverse("pipeline_cancel", args=[workspace.slug, parent.pk])

    for client in (as_alice, as_carol, as_bob):
        assert client.get(listing).status_code == 200
        assert client.get(detail).status_code == 200
    assert "Cancel pipeline" in as_carol.get(detail).content.decode()
    assert "Cancel pipeline" not in as_bob.get(detail).content.decode()
    assert submit_form(as_bob, workspace).status_code == 403
    assert as_bob.post(cancel).status_code == 403
    for url in (listing, submit, detail):
        assert as_charlie.get(url).status_code == 404
    assert as_charlie.post(cancel).status_code == 404
    assert submit_form(as_charlie, workspace).status_code == 404
    assert (
        as_charlie.get(reverse("pipeline_detail", args=[workspace.slug, 999999])).status_code == 404
    )

    assert as_alice.post(cancel).status_code == 302
    parent.refresh_from_db()
    assert parent.status in ("Canceled", "CancelRequested")


def api_submit(client, workspace, definition: str = PIPELINE):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        f"/api/v1/pipelines?workspace={workspace.slug}",
        {
            "definition": SimpleUploadedFile("pipeline.yml", definition.encode()),
            "snapshot": archive(SOURCE),
            "tags": "via=api",
        },
    )


@pytest.mark.usefixtures("cloud_targets")
def test_api_submit_follow_and_cancel(workspace, api_carol, api_bob, api_charlie):
    response = api_submit(api_carol, workspace)
    assert response.status_code == 201, response.content
    out = response.json()
    assert [s["name"] for s in out["steps"]] == ["prepare", "count", "report"]
    assert out["steps"][1]["depends_on"] == ["prepare"]
    assert out["steps"][1]["compute"] == "dbx"

    with running_monitor(), advancing_pipelines():
        wait_final(Run.objects.get(pk=out["id"]), timeout=120)

    got = api_bob.get(f"/api/v1/pipelines/{out['id']}?workspace={workspace.slug}").json()
    assert got["status"] == "Completed"
    assert [s["status"] for s in got["steps"]] == ["Completed"] * 3
    listed = api_bob.get(f"/api/v1/pipelines?workspace={workspace.slug}").json()
    assert [p["id"] for p in listed] == [out["id"]]

    assert (
        api_charlie.get(f"/api/v1/pipelines/{out['id']}?workspace={workspace.slug}").status_code
        == 404
    )
    assert (
        api_bob.post(f"/api/v1/pipelines/{out['id']}/cancel?workspace={workspace.slug}").status_code
        == 403
    )
    done = api_carol.post(f"/api/v1/pipelines/{out['id']}/cancel?workspace={workspace.slug}")
    assert done.status_code == 200 and done.json()["status"] == "Completed"


@pytest.mark.usefixtures("cloud_targets")
def test_api_submit_needs_contributor_and_a_good_file(workspace, api_carol, api_bob, api_charlie):
    assert api_submit(api_bob, workspace).status_code == 403
    assert api_submit(api_charlie, workspace).status_code == 404
    bad = api_submit(api_carol, workspace, PIPELINE.replace("type: batch", "type: hadoop"))
    assert bad.status_code == 400
    assert "type 'hadoop' is not one of" in bad.json()["detail"]
    assert not Run.objects.exists()


@pytest.fixture(params=["cluster", "pool"])
def unknown_cluster_or_pool(request, databricks_emulator, batch_emulator) -> tuple[str, str]:
    """A pipeline whose step names a cluster or pool the service lacks, and the answer to it."""
    if request.param == "cluster":
        return PIPELINE.replace("cluster_id: 0923-164208-meows279", "cluster_id: 0000-nothere"), (
            f"Step ‘count’: Databricks cluster '0000-nothere' does not exist in "
            f"{databricks_emulator.url}: pick one of: shared-autoscale (0923-164208-meows279), "
            "gpu-ml (1101-093012-bark123), or run on a new job cluster."
        )
    return PIPELINE.replace(
        "command: python3 report.py", "command: python3 report.py\n    pool: gpu-pool"
    ), (
        f"Step ‘report’: Batch pool 'gpu-pool' does not exist in account "
        f"'{batch_emulator.account_name}': create it in the Azure portal or pick one of: "
        "cpu-pool, empty-pool."
    )


@pytest.mark.usefixtures("cloud_targets")
def test_a_step_on_a_cluster_or_pool_the_service_lacks_is_refused_at_submit(
    workspace, as_carol, api_carol, unknown_cluster_or_pool
):
    definition, message = unknown_cluster_or_pool

    page = text(submit_form(as_carol, workspace, definition_file=definition_file(definition)))
    assert message in page
    answer = api_submit(api_carol, workspace, definition)
    assert answer.status_code == 400
    assert answer.json()["detail"] == f"definition: {message}"
    assert not Run.objects.exists()
