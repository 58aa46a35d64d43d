"""Patterns users write cannot stall the web process: ignore rules, tag filters, metric patterns.

Each hostile input below backtracks for seconds to minutes in Python's `re` (or
in the database's regular expressions); the studio answers it within a second.
"""

import json
import time

import pytest
from django.urls import reverse

from runs.models import Run
from runs.services.experiments import experiment_create
from runs.services.snapshots import snapshot_create
from runs.services.submit import run_submit
from runs.snapshots.capture import MAX_IGNORE_RULES
from tests.runs.test_run_pages import folder, submit_data
from tests.runs.test_runs_api import archive
from tests.support.runs import minimal_environment, write_tree

# `*a*a…*ab` becomes `[^/]*a[^/]*a…` in Python's re: minutes on a name of 40 a's.
STARS = "*a" * 12 + "b"
BACKTRACKING_NAME = "a" * 40


def quickly(call):
    started = time.monotonic()
    response = call()
    assert time.monotonic() - started < 1
    return response


def plan(client, workspace, body):
    return client.post(
        reverse("snapshot_plan", args=[workspace.slug]),
        json.dumps(body),
        content_type="application/json",
    )


def test_a_backtracking_ignore_rule_is_matched_in_linear_time(workspace, as_carol):
    body = {
        "paths": [BACKTRACKING_NAME, f"{BACKTRACKING_NAME}b", "train.py"],
        "ignore": {".amlignore": f"{STARS}\n"},
    }
    response = quickly(lambda: plan(as_carol, workspace, body))
    assert response.json() == {"ignored": [f"{BACKTRACKING_NAME}b"]}


def test_a_folder_with_a_backtracking_ignore_rule_is_submitted(workspace, as_carol):
    files = [
        ("p/train.py", b"print(1)\n"),
        ("p/.amlignore", f"{STARS}\n".encode()),
        (f"p/{BACKTRACKING_NAME}", b"kept"),
        (f"p/{BACKTRACKING_NAME}b", b"left out"),
    ]
    data = submit_data(source_paths="\n".join(name for name, _ in files))
    data["source_folder"] = folder(*files)
    url = reverse("run_submit", args=[workspace.slug])
    response = quickly(lambda: as_carol.post(url, data))
    assert response.status_code == 302, response.content.decode()
    snapshot = Run.objects.get().snapshot
    assert snapshot is not None
    manifest = [entry[0] for entry in snapshot.manifest]
    assert manifest == [".amlignore", BACKTRACKING_NAME, "train.py"]


def test_a_folder_captured_from_disk_follows_the_rule_as_quickly(workspace, tmp_path):
    source = write_tree(
        tmp_path / "src",
        {"train.py": "", ".gitignore": STARS, BACKTRACKING_NAME: "", f"{BACKTRACKING_NAME}b": ""},
    )
    snapshot, _ = quickly(lambda: snapshot_create(workspace=workspace, root=source))
    assert [entry[0] for entry in snapshot.manifest] == [
        ".gitignore",
        BACKTRACKING_NAME,
        "train.py",
    ]


def test_too_many_or_too_long_ignore_rules_are_refused_with_the_limit(workspace, as_carol):
    many = "\n".join(f"file-{i}.txt" for i in range(MAX_IGNORE_RULES + 1))
    response = plan(as_carol, workspace, {"paths": ["a"], "ignore": {".gitignore": many}})
    assert response.status_code == 400
    assert response.json()["error"] == (
        ".gitignore has 1,001 rules, more than the 1,000 read: leave out whole folders "
        "(data/) rather than each file."
    )
    response = plan(as_carol, workspace, {"paths": ["a"], "ignore": {".amlignore": "*" * 2000}})
    assert ".amlignore has a rule longer than 1024 characters" in response.json()["error"]


@pytest.fixture
def tagged_runs(workspace, alice, tmp_path):
    source = write_tree(tmp_path / "src", {"train.py": "print(1)\n"})
    snapshot, _ = snapshot_create(workspace=workspace, root=source)
    experiment = experiment_create(workspace=workspace, name="tags", user=alice)
    runs = {}
    for name, tags in [("cnn", {"model": "cnn"}), ("slow", {"note": "a" * 25 + "!"})]:
        runs[name] = run_submit(
            workspace=workspace,
            user=alice,
            experiment=experiment,
            target=workspace.compute_targets.get(name="local"),
            snapshot=snapshot,
            entry_script="train.py",
            environment=minimal_environment(),
            tags=tags,
            display_name=f"run-{name}",
        )
    return runs


@pytest.mark.parametrize(
    ("tag", "listed"),
    [
        ("model=cnn", ["run-cnn"]),
        ("model", ["run-cnn"]),
        ("model=cn", []),
        ("model__contains=c", []),
        ("model__startswith=c", []),
        ("note__regex=(a+)+$", []),
        ("note__iregex=(a+)+$", []),
        ("note=(a+)+$", []),
        ('a"b=c', []),
        ("__class__=x", []),
        ("=x", []),
    ],
)
def test_the_runs_list_filters_tags_by_exact_key_and_value(
    workspace, tagged_runs, as_bob, tag, listed
):
    url = reverse("run_list", args=[workspace.slug])
    response = quickly(lambda: as_bob.get(url, {"tag": tag}))
    assert response.status_code == 200
    page = response.content.decode()
    assert [name for name in ("run-cnn", "run-slow") if name in page] == listed


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (
            r"loss=(?P<loss>[0-9.]+)(?=\s)",
            "is not a valid regular expression: invalid perl operator: (?= (patterns run on "
            "RE2, which has no look-around or back-references).",
        ),
        (r"(?P<a>x)\1", "invalid escape sequence: \\1"),
        ("(?P<x>" + "a" * 1000 + ")", "A metric pattern is at most 1000 characters"),
        (
            "\n".join(f"m{i}=(?P<m{i}>[0-9]+)" for i in range(21)),
            "A run takes at most 20 metric patterns",
        ),
    ],
)
def test_metric_patterns_the_linear_engine_cannot_run_are_refused_on_submit(
    api_carol, patterns, message
):
    data = {
        "experiment": "api-exp",
        "target": "local",
        "entry_script": "train.py",
        "snapshot": archive({"train.py": b"print(1)\n"}),
        "metric_patterns": patterns,
    }
    response = api_carol.post("/api/v1/runs?workspace=vision", data)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Run.objects.exists()


def test_a_backtracking_metric_pattern_is_accepted(api_carol):
    data = {
        "experiment": "api-exp",
        "target": "local",
        "entry_script": "train.py",
        "snapshot": archive({"train.py": b"print(1)\n"}),
        "metric_patterns": r"(?P<junk>(a+)+)$",
    }
    response = api_carol.post("/api/v1/runs?workspace=vision", data)
    assert response.status_code == 201, response.content
