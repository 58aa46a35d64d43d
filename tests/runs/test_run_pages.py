"""Run pages and forms: who may see and do what, and what the submit form accepts.

Runs stay Queued here (tasks enqueued on commit never run inside a test
transaction); the tests under tests/compute/backends run them for real.
"""

import io
import json
import tarfile
import zipfile
from html.parser import HTMLParser
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compute.models import ComputeKind, ComputeTarget
from runs.models import Environment, Experiment, Metric, Run, RunFile, RunStatus
from runs.services.experiments import experiment_create
from runs.services.snapshots import snapshot_create
from runs.services.submit import run_submit
from studio.blobs import blob_store_bytes
from tests.support.runs import minimal_environment, write_tree


@pytest.fixture
def run(workspace, alice, tmp_path):
    source = write_tree(tmp_path / "src", {"train.py": "print('hi')\n", "lib/util.py": "X = 1\n"})
    snapshot, _ = snapshot_create(workspace=workspace, root=source)
    experiment = experiment_create(workspace=workspace, name="mnist", user=alice)
    run = run_submit(
        workspace=workspace,
        user=alice,
        experiment=experiment,
        target=workspace.compute_targets.get(name="local"),
        snapshot=snapshot,
        entry_script="train.py",
        environment=minimal_environment(),
        tags={"model": "cnn"},
    )
    sha, _ = blob_store_bytes(b"model weights")
    RunFile.objects.create(run=run, path="outputs/model.bin", sha256=sha, size=13)
    Metric.objects.bulk_create(
        [Metric(run=run, name="loss", step=i, value=1 / (i + 1)) for i in range(3)]
    )
    return run


def pages(workspace, run):
    slug = workspace.slug
    return [
        reverse("experiment_list", args=[slug]),
        reverse("experiment_detail", args=[slug, "mnist"]),
        reverse("run_list", args=[slug]),
        reverse("run_submit", args=[slug]),
        reverse("run_detail", args=[slug, run.pk]),
        reverse("run_status", args=[slug, run.pk]),
        reverse("run_file", args=[slug, run.pk, "outputs/model.bin"]),
        reverse("run_snapshot_file", args=[slug, run.pk, "lib/util.py"]),
        reverse("run_snapshot_zip", args=[slug, run.pk]),
        reverse("environment_list", args=[slug]),
        reverse("environment_create", args=[slug]),
    ]


def test_members_see_the_run_pages_and_strangers_get_404(
    workspace, run, as_alice, as_bob, as_carol, as_charlie
):
    for url in pages(workspace, run):
        for client in (as_alice, as_bob, as_carol):
            assert client.get(url).status_code == 200, url
        assert as_charlie.get(url).status_code == 404, url


def test_run_page_shows_status_timeline_metrics_files_and_snapshot(workspace, run, as_bob):
    page = as_bob.get(reverse("run_detail", args=[workspace.slug, run.pk])).content.decode()
    assert "mnist #1" in page
    assert 'data-status="Queued"' in page
    assert "Submitted to local" in page
    assert 'data-metric="loss"' in page and "<svg" in page
    assert "outputs/model.bin" in page
    assert "lib/util.py" in page
    assert "data-log-viewer" in page
    assert 'hx-trigger="every 2s, run-status from:body"' in page
    # A reader cannot cancel.
    assert "Cancel run" not in page


def test_downloads_return_the_stored_bytes(workspace, run, as_bob):
    file_url = reverse("run_file", args=[workspace.slug, run.pk, "outputs/model.bin"])
    assert b"".join(as_bob.get(file_url).streaming_content) == b"model weights"
    source_url = reverse("run_snapshot_file", args=[workspace.slug, run.pk, "lib/util.py"])
    assert b"".join(as_bob.get(source_url).streaming_content) == b"X = 1\n"
    missing = reverse("run_file", args=[workspace.slug, run.pk, "outputs/none"])
    assert as_bob.get(missing).status_code == 404


@pytest.fixture
def big_run(workspace, alice, tmp_path):
    files = {f"data/part-{i:03}.txt": f"row {i}\n" for i in range(249)} | {"train.py": "print(1)\n"}
    source = write_tree(tmp_path / "big", files)
    (source / "train.py").chmod(0o755)
    snapshot, _ = snapshot_create(workspace=workspace, root=source)
    return run_submit(
        workspace=workspace,
        user=alice,
        experiment=experiment_create(workspace=workspace, name="big", user=alice),
        target=workspace.compute_targets.get(name="local"),
        snapshot=snapshot,
        entry_script="train.py",
        environment=minimal_environment(),
    )


def test_the_run_page_pages_through_a_big_snapshot(workspace, big_run, as_bob):
    url = reverse("run_detail", args=[workspace.slug, big_run.pk])
    first = as_bob.get(url).content.decode()
    assert "Page 1 of 2 · 250 files" in first
    assert "data/part-000.txt" in first and "data/part-230.txt" not in first
    second = as_bob.get(url, {"files": 2}).content.decode()
    assert "Page 2 of 2 · 250 files" in second
    assert "data/part-230.txt" in second and "train.py</a>" in second
    assert "data/part-000.txt" not in second


def test_the_snapshot_zip_holds_every_file_with_its_bytes(workspace, big_run, as_bob):
    response = as_bob.get(reverse("run_snapshot_zip", args=[workspace.slug, big_run.pk]))
    assert response["Content-Disposition"] == 'attachment; filename="big-1-snapshot.zip"'
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        assert archive.testzip() is None
        contents = {name: archive.read(name) for name in archive.namelist()}
        mode = archive.getinfo("train.py").external_attr >> 16
    assert len(contents) == 250
    assert contents["train.py"] == b"print(1)\n"
    assert contents["data/part-123.txt"] == b"row 123\n"
    assert mode & 0o111


def test_the_run_page_offers_the_snapshot_zip(workspace, run, as_bob):
    page = as_bob.get(reverse("run_detail", args=[workspace.slug, run.pk])).content.decode()
    assert reverse("run_snapshot_zip", args=[workspace.slug, run.pk]) in page
    assert "Download snapshot (.zip)" in page
    assert "Page 1 of" not in page


def test_cancel_needs_a_contributor(workspace, run, as_bob, as_charlie, as_carol):
    url = reverse("run_cancel", args=[workspace.slug, run.pk])
    assert as_bob.post(url).status_code == 403
    assert as_charlie.post(url).status_code == 404
    response = as_carol.post(url, follow=True)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELED
    assert "Canceled by carol" in response.content.decode()


def test_experiment_create(workspace, as_alice, as_bob, as_charlie, as_carol):
    url = reverse("experiment_list", args=[workspace.slug])
    assert as_bob.post(url, {"name": "x"}).status_code == 403
    assert as_charlie.post(url, {"name": "x"}).status_code == 404
    bad = as_carol.post(url, {"name": "has space"})
    assert "letters, digits, dashes and underscores" in bad.content.decode()
    response = as_carol.post(url, {"name": "cifar-10"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse(
        "experiment_detail", args=[workspace.slug, "cifar-10"]
    )
    again = as_alice.post(url, {"name": "cifar-10"})
    assert "already exists" in again.content.decode()


def test_environment_create_adds_versions(workspace, as_carol, as_bob):
    url = reverse("environment_create", args=[workspace.slug])
    data = {"name": "sk", "kind": "system", "pip_requirements": "scikit-learn==1.5.2\n"}
    assert as_bob.post(url, data).status_code == 403
    as_carol.post(url, data)
    as_carol.post(url, data | {"pip_requirements": "scikit-learn==1.6.0\n"})
    assert list(
        Environment.objects.filter(workspace=workspace, name="sk").values_list("version", flat=True)
    ) == [2, 1]
    empty = as_carol.post(url, {"name": "sk", "kind": "system"})
    assert "pip requirements list or a conda" in empty.content.decode()


def submit_data(**overrides):
    data = {
        "experiment": "mnist",
        "target": "local",
        "entry_script": "train.py",
        "environment": str(minimal_environment().pk),
        "arguments": "--epochs 3 --name 'a b'",
        "tags": "model=cnn, lr=0.1",
        "node_count": "1",
    }
    data.update(overrides)
    return data


def folder(*files):
    return [SimpleUploadedFile(name.rsplit("/", 1)[-1], content) for name, content in files]


def test_submit_a_folder_through_the_form(workspace, as_carol, as_bob):
    url = reverse("run_submit", args=[workspace.slug])
    files = [("proj/train.py", b"print(1)\n"), ("proj/pkg/__init__.py", b"")]
    data = submit_data(source_paths="\n".join(name for name, _ in files))
    data["source_folder"] = folder(*files)
    assert as_bob.post(url, data).status_code == 403
    response = as_carol.post(url, data)
    run = Run.objects.get(experiment__name="mnist")
    assert response["Location"] == reverse("run_detail", args=[workspace.slug, run.pk])
    assert run.status == RunStatus.QUEUED and run.snapshot is not None
    assert [entry[0] for entry in run.snapshot.manifest] == ["pkg/__init__.py", "train.py"]
    assert run.arguments == ["--epochs", "3", "--name", "a b"]
    assert run.tags == {"model": "cnn", "lr": "0.1"}


def test_submit_with_a_missing_entry_script_says_which_scripts_exist(workspace, as_carol):
    url = reverse("run_submit", args=[workspace.slug])
    data = submit_data(entry_script="main.py", source_paths="src/train.py")
    data["source_folder"] = folder(("src/train.py", b"print(1)\n"))
    page = as_carol.post(url, data).content.decode()
    assert "main.py is not in the source folder. Python files in it: train.py." in page
    assert not Run.objects.exists()


def test_submit_refuses_a_path_traversal_archive(workspace, as_carol):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.py")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    data = submit_data()
    data["source_archive"] = SimpleUploadedFile("src.tar.gz", buffer.getvalue())
    page = as_carol.post(reverse("run_submit", args=[workspace.slug]), data).content.decode()
    assert "points outside the source folder" in page
    assert not Run.objects.exists()


def test_the_git_facts_the_page_sends_are_recorded_without_credentials(workspace, as_carol):
    commit = "c0ffee" + "1" * 34
    git = {
        "HEAD": "ref: refs/heads/main\n",
        "config": '[remote "origin"]\n\turl = https://bot:s3cr3t-pat@example.com/team/repo.git\n',
        "refs/heads/main": commit + "\n",
    }
    data = submit_data(source_paths="p/train.py", source_git=json.dumps(git))
    data["source_folder"] = folder(("p/train.py", b"print('git')\n"))
    response = as_carol.post(reverse("run_submit", args=[workspace.slug]), data)
    assert response.status_code == 302, response.content.decode()
    run = Run.objects.get()
    assert run.git == {
        "repository": "https://example.com/team/repo.git",
        "branch": "main",
        "commit": commit,
    }
    page = as_carol.get(response["Location"]).content.decode()
    assert "git https://example.com/team/repo.git main <code>c0ffee1111</code>" in page
    assert "s3cr3t-pat" not in page


def test_the_same_tree_from_two_commits_keeps_each_runs_git_facts(workspace, as_carol):
    url = reverse("run_submit", args=[workspace.slug])
    commits = ["a" * 40, "b" * 40]
    for commit in commits:
        git = {"HEAD": "ref: refs/heads/main\n", "refs/heads/main": commit}
        data = submit_data(source_paths="p/train.py", source_git=json.dumps(git))
        data["source_folder"] = folder(("p/train.py", b"print('same tree')\n"))
        assert as_carol.post(url, data).status_code == 302
    first, second = Run.objects.order_by("number")
    assert first.snapshot == second.snapshot
    assert [first.git["commit"], second.git["commit"]] == commits
    page = as_carol.get(reverse("run_detail", args=[workspace.slug, first.pk])).content.decode()
    assert "<code>aaaaaaaaaa</code>" in page


def test_malformed_git_facts_ask_to_choose_the_folder_again(workspace, as_carol):
    data = submit_data(source_paths="p/train.py", source_git='{"objects/ab/cd": "x"}')
    data["source_folder"] = folder(("p/train.py", b"print(1)\n"))
    page = as_carol.post(reverse("run_submit", args=[workspace.slug]), data).content.decode()
    assert "malformed git facts: reload the page and choose the folder again" in page
    assert not Run.objects.exists()


def test_submit_with_both_a_folder_and_an_archive_asks_for_one(workspace, as_carol):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.py", "print(2)\n")
    data = submit_data(source_paths="p/train.py")
    data["source_folder"] = folder(("p/train.py", b"print(1)\n"))
    data["source_archive"] = SimpleUploadedFile("src.zip", buffer.getvalue())
    page = as_carol.post(reverse("run_submit", args=[workspace.slug]), data).content.decode()
    assert "Choose the source folder or upload it as an archive, not both." in page
    assert not Run.objects.exists()


def test_submit_refuses_an_oversize_folder(workspace, as_carol, settings):
    settings.SNAPSHOT_MAX_BYTES = 1000
    data = submit_data(source_paths="p/train.py\np/data.bin")
    data["source_folder"] = folder(("p/train.py", b"print(1)"), ("p/data.bin", b"\0" * 2000))
    page = as_carol.post(reverse("run_submit", args=[workspace.slug]), data).content.decode()
    assert "over the limit of 1000 B" in page
    assert "data.bin (2.0 KB)" in page


RUNCONFIG = b"""\
script: train.py
arguments: [--lr, '0.5']
target: local
framework: Python
maxRunDurationSeconds: 600
nodeCount: 1
environment:
  python:
    interpreterPath: /usr/bin/python3
    userManagedDependencies: true
history:
  outputCollection: true
"""


def test_a_runconfig_fills_the_fields_left_empty(workspace, as_carol):
    data = submit_data(entry_script="", target="", environment="", arguments="")
    data["source_paths"] = "p/train.py"
    data["source_folder"] = folder(("p/train.py", b"print(1)"))
    data["runconfig"] = SimpleUploadedFile("local.runconfig", RUNCONFIG)
    response = as_carol.post(reverse("run_submit", args=[workspace.slug]), data)
    assert response.status_code == 302, response.content.decode()
    run = Run.objects.get()
    assert (run.entry_script, run.arguments, run.target_name) == (
        "train.py",
        ["--lr", "0.5"],
        "local",
    )
    assert run.max_duration_seconds == 600 and run.environment is not None
    assert run.environment.kind == "user"
    assert run.environment.interpreter_path == "/usr/bin/python3"


class UntouchedForm(HTMLParser):
    """What a browser sends for a form nobody edited: each field's pre-filled value."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, str] = {}
        self.select = ""
        self.textarea = ""

    def handle_starttag(self, tag, attrs):
        attr = dict(attrs)
        name = attr.get("name") or ""
        if tag == "input" and attr.get("type") not in ("file", "checkbox", "radio", "submit"):
            self.values[name] = attr.get("value") or ""
        elif tag == "select":
            self.select = name
        elif tag == "option" and self.select:
            # The first option counts until one says it is selected.
            if self.select not in self.values or "selected" in attr:
                self.values[self.select] = attr.get("value") or ""
        elif tag == "textarea":
            self.textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self.select = ""
        elif tag == "textarea":
            self.textarea = ""

    def handle_data(self, data):
        if self.textarea:
            self.values[self.textarea] += data.removeprefix("\n")


def untouched_submit_form(client, workspace) -> dict[str, Any]:
    parser = UntouchedForm()
    parser.feed(client.get(reverse("run_submit", args=[workspace.slug])).content.decode())
    parser.values.pop("csrfmiddlewaretoken", None)
    return parser.values


CLUSTER_RUNCONFIG = b"""\
script: train.py
target: gpu-cluster
nodeCount: 2
environment:
  name: torch-env
  python:
    interpreterPath: /opt/torch/bin/python
    userManagedDependencies: true
"""


@pytest.fixture
def gpu_cluster(workspace):
    return ComputeTarget.objects.create(
        workspace=workspace, name="gpu-cluster", kind=ComputeKind.CLUSTER, config={"max_nodes": 2}
    )


def test_a_runconfig_sets_target_environment_and_nodes_of_an_untouched_form(
    workspace, gpu_cluster, as_carol
):
    data = untouched_submit_form(as_carol, workspace)
    data |= {"experiment": "mnist", "source_paths": "p/train.py"}
    data["source_folder"] = folder(("p/train.py", b"print(1)"))
    data["runconfig"] = SimpleUploadedFile("gpu-cluster.runconfig", CLUSTER_RUNCONFIG)
    response = as_carol.post(reverse("run_submit", args=[workspace.slug]), data)
    assert response.status_code == 302, response.content.decode()
    run = Run.objects.get()
    assert (run.target_name, run.node_count) == ("gpu-cluster", 2)
    assert run.environment is not None
    assert (run.environment.name, run.environment.interpreter_path) == (
        "torch-env",
        "/opt/torch/bin/python",
    )


def test_what_the_user_picks_in_the_form_wins_over_the_runconfig(workspace, gpu_cluster, as_carol):
    data = untouched_submit_form(as_carol, workspace)
    data |= {
        "experiment": "mnist",
        "source_paths": "p/train.py",
        "target": "local",
        "environment": str(minimal_environment().pk),
        "node_count": "1",
    }
    data["source_folder"] = folder(("p/train.py", b"print(1)"))
    data["runconfig"] = SimpleUploadedFile("gpu-cluster.runconfig", CLUSTER_RUNCONFIG)
    response = as_carol.post(reverse("run_submit", args=[workspace.slug]), data)
    assert response.status_code == 302, response.content.decode()
    run = Run.objects.get()
    assert (run.target_name, run.node_count) == ("local", 1)
    assert run.environment == minimal_environment()


def test_an_untouched_form_without_a_runconfig_runs_locally_in_the_minimal_environment(
    workspace, as_carol
):
    page = as_carol.get(reverse("run_submit", args=[workspace.slug])).content.decode()
    assert "Left empty: the runconfig's, else local." in page
    data = untouched_submit_form(as_carol, workspace)
    data |= {"experiment": "mnist", "entry_script": "train.py", "source_paths": "p/train.py"}
    data["source_folder"] = folder(("p/train.py", b"print(1)"))
    response = as_carol.post(reverse("run_submit", args=[workspace.slug]), data)
    assert response.status_code == 302, response.content.decode()
    run = Run.objects.get()
    assert (run.target_name, run.node_count) == ("local", 1)
    assert run.environment == minimal_environment()


def test_a_bad_runconfig_is_explained(workspace, as_carol):
    data = submit_data()
    data["runconfig"] = SimpleUploadedFile("x.runconfig", b"framework: TensorFlow\n")
    page = as_carol.post(reverse("run_submit", args=[workspace.slug]), data).content.decode()
    assert "framework TensorFlow is not supported here: use Python, or PySpark" in page


def test_run_list_filters_sorts_and_pages(workspace, run, alice, as_bob):
    for _ in range(30):
        run_submit(
            workspace=workspace,
            user=alice,
            experiment=run.experiment,
            target=run.target,
            snapshot=run.snapshot,
            entry_script="train.py",
            environment=run.environment,
        )
    url = reverse("run_list", args=[workspace.slug])
    first = as_bob.get(url).content.decode()
    assert "Page 1 of 2 · 31 runs" in first
    assert "mnist #31" in first and "mnist #1<" not in first
    tagged = as_bob.get(url, {"tag": "model=cnn"}).content.decode()
    assert "1 run<" in tagged or "· 1 run" in tagged
    oldest = as_bob.get(url, {"sort": "number"}).content.decode()
    assert oldest.index("mnist #1<") < oldest.index("mnist #2<")
    fragment = as_bob.get(url, {"status": "Canceled"}, headers={"HX-Request": "true"})
    assert "No runs match these filters" in fragment.content.decode()
    assert "<html" not in fragment.content.decode()


def test_experiment_page_compares_a_metric_across_runs(workspace, run, alice, as_bob):
    other = run_submit(
        workspace=workspace,
        user=alice,
        experiment=run.experiment,
        target=run.target,
        snapshot=run.snapshot,
        entry_script="train.py",
        environment=run.environment,
    )
    Metric.objects.create(run=other, name="loss", step=0, value=0.2)
    url = reverse("experiment_detail", args=[workspace.slug, "mnist"])
    page = as_bob.get(url, {"metric": "loss", "compare": [run.pk, other.pk]}).content.decode()
    assert 'data-metric="loss"' in page
    assert "#1" in page and "#2" in page
    assert page.count("<polyline") == 2
    assert Experiment.objects.get(name="mnist").runs.count() == 2


def test_numbered_folder_files_take_their_paths_from_the_hidden_field(workspace, as_carol):
    # What the page's script sends: files named by index, paths joined with CRLF.
    data = submit_data(source_paths="proj/src/b.py\r\nproj/train.py")
    data["source_folder"] = [
        SimpleUploadedFile("1", b"print('train')\n"),
        SimpleUploadedFile("0", b"B = 2\n"),
    ]
    response = as_carol.post(reverse("run_submit", args=[workspace.slug]), data)
    assert response.status_code == 302, response.content.decode()
    snapshot = Run.objects.get().snapshot
    assert snapshot is not None
    manifest = snapshot.manifest
    assert [(entry[0], entry[2]) for entry in manifest] == [("src/b.py", 6), ("train.py", 15)]
