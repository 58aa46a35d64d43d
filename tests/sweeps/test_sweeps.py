"""Sweeps end to end: child runs of one script on the local target with sampled arguments,
followed by a real run monitor; early termination; the pages and API, and who may use them.

Tasks run eagerly; `advancing_sweeps` plays the Celery beat that moves sweeps on.
"""

from __future__ import annotations

import html
import re
import textwrap
import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from runs.models import Run
from runs.parents import parent_cancel
from runs.services.submit import SubmitRequest
from studio.errors import ServiceError
from sweeps import services
from sweeps.models import Sweep, SweepChild
from tests.support.pipelines import archive
from tests.support.runs import minimal_environment, running_monitor, wait_final

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]

# Accuracy is best for --lr near 0.05; --units only shows that every argument arrives.
TRAIN = textwrap.dedent(
    """
    import argparse, time
    from trainyard import run
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--units", type=int)
    args = parser.parse_args()
    print("args", args.epochs, repr(args.lr), args.units, flush=True)
    for epoch in range(args.epochs):
        time.sleep(0.5)
        run.log("accuracy", round((1 - abs(args.lr - 0.05)) * (epoch + 1) / args.epochs, 6))
    """
)
RANDOM = textwrap.dedent(
    """
    sampling:
      type: random
      parameter_space:
      - name: --lr
        expression: uniform
        values: [0.001, 0.1]
      - name: --units
        expression: choice
        values: [8, 16, 32]
    policy:
      type: NoTerminationPolicy
    primary_metric_name: accuracy
    primary_metric_goal: Maximize
    max_total_runs: 4
    max_concurrent_runs: 2
    """
)
# A child logs its --quality once per step for a while.
STEADY = textwrap.dedent(
    """
    import sys, time
    from trainyard import run
    quality = float(sys.argv[sys.argv.index("--quality") + 1])
    for step in range(30):
        run.log("score", quality)
        time.sleep(0.3)
    """
)
GRID = textwrap.dedent(
    """
    sampling:
      type: grid
      parameter_space:
      - name: --quality
        expression: choice
        values: [0.9, 0.1]
    policy:
      type: NoTerminationPolicy
    primary_metric_name: score
    primary_metric_goal: maximize
    max_total_runs: 2
    max_concurrent_runs: 2
    """
)
BANDIT = GRID.replace(
    "type: NoTerminationPolicy",
    "type: BanditPolicy\n  evaluation_interval: 1\n  slack_amount: 0.2\n  delay_evaluation: 2",
)


@contextmanager
def advancing_sweeps(interval: float = 0.2):
    """What the Celery beat does in `manage.py up`: advance open sweeps now and then."""
    stop = threading.Event()

    def loop():
        from django.db import connection

        try:
            while not stop.is_set():
                services.sweeps_advance()
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


def hdconfig(text: str = RANDOM) -> SimpleUploadedFile:
    return SimpleUploadedFile("hdconfig.yml", text.encode(), content_type="application/x-yaml")


def sweep_submit(workspace, user, definition: str, source: str, **fields):
    request = SubmitRequest(
        experiment="tuning",
        target="local",
        entry_script="train.py",
        environment=minimal_environment(),
        **fields,
    )
    return services.sweep_submit(
        workspace=workspace,
        user=user,
        request=request,
        definition=definition,
        archive=archive({"train.py": source}),
    )


def children_of(parent: Run) -> list[SweepChild]:
    return list(SweepChild.objects.filter(sweep__run=parent).select_related("run"))


def text(response) -> str:
    words = re.sub(r"<[^>]+>", " ", response.content.decode())
    return re.sub(r"\s+", " ", html.unescape(words))


def stdout_of(run: Run) -> str:
    from runs.logs import store as logstore

    return logstore.read(run.pk, "stdout", 0, 1 << 20)[0].decode()


def test_a_random_sweep_runs_four_children_two_at_a_time_and_picks_the_best(
    workspace, carol, bob, api_bob
):
    parent = sweep_submit(workspace, carol, RANDOM, TRAIN, arguments=["--epochs", "3"])
    with running_monitor(), advancing_sweeps():
        parent = wait_final(parent, timeout=240)

    children = children_of(parent)
    assert parent.status == "Completed", (parent.error, [c.run.error for c in children])
    assert [c.run.status for c in children] == ["Completed"] * 4
    assert all(c.run.parent_id == parent.pk for c in children)
    for child in children:
        lr, units = child.hyperparameters["--lr"], child.hyperparameters["--units"]
        assert 0.001 <= lr <= 0.1 and units in (8, 16, 32)
        assert child.run.arguments == ["--epochs", "3", "--lr", str(lr), "--units", str(units)]
        # What the script parsed is what the child records.
        assert f"args 3 {lr!r} {units}" in stdout_of(child.run)
    assert len({c.hyperparameters["--lr"] for c in children}) == 4
    # Never more than two children at once.
    spans = [(s, e) for c in children if (s := c.run.started_at) and (e := c.run.ended_at)]
    assert len(spans) == len(children)
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 2

    closest = min(children, key=lambda c: abs(c.hyperparameters["--lr"] - 0.05))
    sweep = Sweep.objects.get(run=parent)
    got = api_bob.get(f"/api/v1/sweeps/{parent.pk}?workspace={workspace.slug}").json()
    assert got["status"] == "Completed"
    assert got["seed"] == sweep.seed
    assert got["best_child"] == closest.run_id
    assert [c["hyperparameters"] for c in got["children"]] == [c.hyperparameters for c in children]
    best = next(c for c in got["children"] if c["best"])
    assert best["primary_metric"] == pytest.approx(
        1 - abs(closest.hyperparameters["--lr"] - 0.05), abs=1e-6
    )
    assert f"Best: #{closest.run.number}" in parent.events.latest("at", "pk").message

    from tests.conftest import client_for

    page = client_for(bob).get(reverse("sweep_detail", args=[workspace.slug, parent.pk]))
    words = text(page)
    assert f"Best so far: #{closest.run.number} with accuracy" in words
    row = re.search(r'<tr data-child="\d+" class="best">(.*?)</tr>', page.content.decode(), re.S)
    assert row is not None and f"#{closest.run.number}" in row.group(1)
    assert str(closest.hyperparameters["--lr"]) in row.group(1)
    assert '<figure class="metric-chart" data-metric="accuracy">' in page.content.decode()
    assert 'hx-trigger="every 2s"' not in page.content.decode()


def test_a_bandit_policy_stops_the_child_that_falls_far_behind(workspace, carol):
    parent = sweep_submit(workspace, carol, BANDIT, STEADY)
    with running_monitor(), advancing_sweeps():
        parent = wait_final(parent, timeout=240)

    good, poor = children_of(parent)
    assert good.hyperparameters == {"--quality": 0.9}
    assert good.run.status == "Completed"
    assert poor.run.status == "Canceled"
    assert poor.run.cancel_reason.startswith("Stopped early by BanditPolicy at interval ")
    assert "score 0.1 < best 0.9 - slack_amount 0.2 = 0.7" in poor.run.cancel_reason
    assert poor.run.cancel_reason in [e.message for e in poor.run.events.all()]
    # Stopped well before its 30 steps.
    assert poor.run.metrics.filter(name="score").count() < 20
    assert parent.status == "Completed"
    assert "1 completed, 1 canceled" in parent.events.latest("at", "pk").message


def test_canceling_the_sweep_stops_its_running_children(workspace, carol):
    parent = sweep_submit(workspace, carol, GRID, STEADY)
    with running_monitor(), advancing_sweeps():
        from tests.support.runs import wait_for

        wait_for(parent, ["Running"], timeout=60)
        for child in children_of(parent):
            wait_for(child.run, ["Running"], timeout=60)
        parent_cancel(kind=services.SWEEP, parent=Sweep.objects.get(run=parent), user=carol)
        parent = wait_final(parent, timeout=60)
    assert parent.status == "Canceled"
    assert [c.run.status for c in children_of(parent)] == ["Canceled", "Canceled"]
    assert all(c.run.cancel_reason == "The sweep was canceled" for c in children_of(parent))


def test_a_malformed_hdconfig_names_the_key_on_the_form_and_the_api(workspace, as_carol, api_carol):
    bad = RANDOM.replace("max_concurrent_runs: 2", "max_concurrent_runs: two")
    response = as_carol.post(
        reverse("sweep_submit", args=[workspace.slug]),
        {
            "hyperdrive_config": hdconfig(bad),
            "source_archive": archive({"train.py": TRAIN}),
            "experiment": "tuning",
            "target": "local",
            "entry_script": "train.py",
            "environment": str(minimal_environment().pk),
        },
    )
    assert response.status_code == 200
    assert "max_concurrent_runs is 'two': give a whole number from 1 to 1000." in text(response)
    response = api_carol.post(
        f"/api/v1/sweeps?workspace={workspace.slug}",
        {
            "hyperdrive_config": hdconfig(RANDOM.replace("uniform", "unif")),
            "snapshot": archive({"train.py": TRAIN}),
            "experiment": "tuning",
            "target": "local",
            "entry_script": "train.py",
        },
    )
    assert response.status_code == 400
    assert (
        "hyperdrive_config: sampling.parameter_space --lr: expression 'unif'"
        in (response.json()["detail"])
    )
    assert not Sweep.objects.exists()


def test_a_sampled_argument_given_as_an_argument_too_is_refused(workspace, carol):
    with pytest.raises(ServiceError) as caught:
        sweep_submit(workspace, carol, RANDOM, TRAIN, arguments=["--lr", "0.1"])
    assert caught.value.field == "arguments"
    assert "--lr is sampled by the sweep" in str(caught.value)


def test_submit_from_the_form_then_readers_see_and_strangers_do_not(
    workspace, as_carol, as_bob, as_charlie, api_bob, api_charlie
):
    minimal = minimal_environment()
    response = as_carol.post(
        reverse("sweep_submit", args=[workspace.slug]),
        {
            "hyperdrive_config": hdconfig(),
            "source_archive": archive({"train.py": TRAIN}),
            "experiment": "tuning",
            # Target and environment left at their defaults.
            "target": "",
            "entry_script": "train.py",
            "arguments": "--epochs 1",
            "environment": "",
        },
    )
    assert response.status_code == 302, text(response)
    parent = Run.objects.get(sweep__isnull=False)
    assert parent.target_name == "local"
    assert parent.environment == minimal
    detail = reverse("sweep_detail", args=[workspace.slug, parent.pk])
    assert response["Location"] == detail
    page = as_bob.get(detail)
    assert page.status_code == 200
    assert 'hx-trigger="every 2s"' in page.content.decode()
    assert "Cancel sweep" not in page.content.decode()
    assert "<code>--lr</code>" in page.content.decode()
    # The page's refresh fetches only the status part.
    part = as_bob.get(detail, headers={"HX-Request": "true"}).content.decode()
    assert part.lstrip().startswith('<div id="sweep-status"') and "<html" not in part
    assert as_bob.get(reverse("sweep_list", args=[workspace.slug])).status_code == 200
    assert "Sweeps" in text(as_bob.get(reverse("run_list", args=[workspace.slug])))

    assert as_charlie.get(detail).status_code == 404
    assert as_charlie.get(reverse("sweep_list", args=[workspace.slug])).status_code == 404
    api_url = f"/api/v1/sweeps/{parent.pk}?workspace={workspace.slug}"
    assert api_charlie.get(api_url).status_code == 404
    assert api_bob.get(api_url).status_code == 200

    submit = reverse("sweep_submit", args=[workspace.slug])
    form = as_carol.get(submit).content.decode()
    assert 'name="hyperdrive_config"' in form and 'name="node_count"' not in form
    assert '<option value="" selected>— local</option>' in form
    assert '<option value="" selected>— trainyard-minimal-python</option>' in form
    assert "primary_metric_goal: maximize" in form
    assert as_bob.post(submit, {"hyperdrive_config": hdconfig()}).status_code == 403
    assert as_charlie.post(submit, {"hyperdrive_config": hdconfig()}).status_code == 404
    assert as_bob.post(reverse("sweep_cancel", args=[workspace.slug, parent.pk])).status_code == (
        403
    )
    fields = {
        "hyperdrive_config": hdconfig(),
        "snapshot": archive({"train.py": TRAIN}),
        "target": "local",
        "entry_script": "train.py",
        "experiment": "tuning",
    }
    assert api_bob.post(f"/api/v1/sweeps?workspace={workspace.slug}", fields).status_code == 403
    fields |= {"hyperdrive_config": hdconfig(), "snapshot": archive({"train.py": TRAIN})}
    assert api_charlie.post(f"/api/v1/sweeps?workspace={workspace.slug}", fields).status_code == (
        404
    )
    assert Sweep.objects.count() == 1


def test_a_sweep_whose_children_all_fail_fails_and_each_child_links_to_it(workspace, carol, as_bob):
    parent = sweep_submit(workspace, carol, GRID, "import sys\nsys.exit('no data here')\n")
    with running_monitor(), advancing_sweeps():
        parent = wait_final(parent, timeout=120)

    assert [c.run.status for c in children_of(parent)] == ["Failed", "Failed"]
    assert parent.status == "Failed"
    assert parent.error.startswith("All 2 child run(s) failed; the first: ")
    run_page = reverse("run_detail", args=[workspace.slug, parent.pk])
    assert as_bob.get(run_page)["Location"] == reverse(
        "sweep_detail", args=[workspace.slug, parent.pk]
    )
    child = children_of(parent)[0].run
    words = text(as_bob.get(reverse("run_detail", args=[workspace.slug, child.pk])))
    assert f"Sweep tuning #{parent.number} · sweep of train.py (hyperparameters --quality 0.9" in (
        words
    )


def test_a_sweep_past_its_max_duration_stops_its_children_and_draws_no_more(workspace, carol):
    definition = GRID.replace("max_concurrent_runs: 2", "max_concurrent_runs: 1") + (
        "max_duration_minutes: 1\n"
    )
    parent = sweep_submit(workspace, carol, definition, STEADY)
    with running_monitor(), advancing_sweeps():
        from tests.support.runs import wait_for

        first = children_of(parent)[0]
        wait_for(first.run, ["Running"], timeout=60)
        # As if the sweep had started a minute ago.
        Run.objects.filter(pk=parent.pk).update(
            started_at=timezone.now() - timedelta(minutes=1, seconds=1)
        )
        parent = wait_final(parent, timeout=60)

    children = children_of(parent)
    assert len(children) == 1
    assert children[0].run.status == "Canceled"
    assert children[0].run.cancel_reason == "The sweep reached its max duration of 1 minute(s)"
    assert parent.status == "Completed"
    last = parent.events.latest("at", "pk").message
    assert last.startswith("All 1 child run(s) ended: 1 canceled")


def test_a_bayesian_sweep_draws_each_child_after_learning_from_the_last(workspace, carol):
    definition = (
        RANDOM.replace("type: random", "type: bayesian")
        .replace("max_total_runs: 4", "max_total_runs: 3")
        .replace("max_concurrent_runs: 2", "max_concurrent_runs: 1")
    )
    parent = sweep_submit(workspace, carol, definition, TRAIN, arguments=["--epochs", "1"])
    with running_monitor(), advancing_sweeps():
        parent = wait_final(parent, timeout=180)

    children = children_of(parent)
    assert parent.status == "Completed", [c.run.error for c in children]
    assert [c.run.status for c in children] == ["Completed"] * 3
    # One at a time: each child was drawn after the one before had ended.
    for before, after in zip(children, children[1:], strict=False):
        assert before.run.ended_at is not None
        assert before.run.ended_at <= after.run.created_at
    for child in children:
        assert 0.001 <= child.hyperparameters["--lr"] <= 0.1
        assert child.run.arguments[2:] == [
            "--lr",
            str(child.hyperparameters["--lr"]),
            "--units",
            str(child.hyperparameters["--units"]),
        ]


def test_submit_through_the_api_and_follow_the_children(workspace, api_carol):
    minimal_environment()
    response = api_carol.post(
        f"/api/v1/sweeps?workspace={workspace.slug}",
        {
            "hyperdrive_config": hdconfig(),
            "snapshot": archive({"train.py": TRAIN}),
            "experiment": "tuning",
            "target": "local",
            "entry_script": "train.py",
            "arguments": "--epochs 1",
            "tags": "team=vision",
        },
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert (created["sampling"], created["max_total_runs"], created["target"]) == (
        "random",
        4,
        "local",
    )
    parent = Run.objects.get(pk=created["id"])
    with running_monitor(), advancing_sweeps():
        wait_final(parent, timeout=180)
    got = api_carol.get(f"/api/v1/sweeps/{parent.pk}?workspace={workspace.slug}").json()
    assert got["status"] == "Completed"
    assert len(got["children"]) == 4
    assert all(c["status"] == "Completed" for c in got["children"])
    assert all(c["arguments"][:2] == ["--epochs", "1"] for c in got["children"])
    assert sum(c["best"] for c in got["children"]) == 1
    assert Run.objects.get(pk=got["children"][0]["run_id"]).tags == {"team": "vision"}
