"""What a run records can never wedge it, the monitor or the web process.

Real runs on the local target, followed by a real run monitor in this process
(so a pattern that held the interpreter would stall the pages asked for here too).
"""

import textwrap
import threading
import time

import pytest
from django.urls import reverse

from compute.models import ComputeTarget
from runs.logs import store as logstore
from runs.models import RunStatus
from runs.services.records import METRIC_WARNING_PREFIX
from tests.conftest import client_for
from tests.support.runs import running_monitor, submit, wait_final, write_tree

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]

BAD_METRICS = textwrap.dedent(
    """
    import json, os
    from trainyard import run
    run.log("loss", 0.5)
    run.log("x" * 300, 1.0)
    run.log("far", 1.0, step=2**40)
    run.log("before", 1.0, step=-1)
    for bad in (float("nan"), float("inf")):
        try:
            run.log("nan", bad)
        except ValueError as exc:
            print("the helper refused:", exc)
    lines = [
        '{"metric": "nan", "value": NaN}',
        '{"metric": "inf", "value": -Infinity}',
        '{"metric": "huge", "value": 1e999}',
        '{"metric": "half", "value": 1, "step": 1.5}',
        '{"metric": "word", "value": 1, "step": "three"}',
        '{"metric": "text", "value": "abc"}',
        '{"metric": "flag", "value": true}',
        '{"metric": ["a"], "value": 1}',
        '{"tag": "long", "value": "' + "v" * 5000 + '"}',
        '{"metric": "nul\\\\u0000", "value": 1}',
        '{"tag": "half", "value": "\\\\ud800"}',
        '{"metric": "big", "value": 1, "step": ' + "9" * 5000 + "}",
        "not json at all",
        "[1, 2]",
        '{"metric": ' + "[" * 50000,
        "x" * (9 * 1024 * 1024),
    ]
    path = os.environ["TRAINYARD_METRICS_FILE"]
    with open(path, "a") as f:
        f.write("\\n".join(lines) + "\\n")
    run.log("loss", 0.25)
    run.tag("model", "tiny")
    print("metrics file bytes", os.path.getsize(path))
    """
)


@pytest.fixture
def local(workspace):
    return ComputeTarget.objects.get(workspace=workspace, name="local")


def warnings_of(run) -> list[str]:
    return [e.message for e in run.events.all() if e.message.startswith(METRIC_WARNING_PREFIX)]


def test_bad_metric_records_are_skipped_with_a_warning_and_the_run_completes(
    tmp_path, workspace, alice, local
):
    source = write_tree(tmp_path / "src", {"train.py": BAD_METRICS})
    with running_monitor():
        run = wait_final(
            submit(workspace=workspace, user=alice, target=local, source=source), timeout=120
        )
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    loss = list(run.metrics.filter(name="loss").values_list("step", "value"))
    assert loss == [(0, 0.5), (1, 0.25)]
    assert set(run.metrics.values_list("name", flat=True)) == {"loss"}
    assert run.tags == {"model": "tiny"}
    stdout = run_stdout(run)
    assert "the helper refused: metric nan must be a finite number, not nan" in stdout
    size = int(stdout.split("metrics file bytes ")[1].split()[0])
    assert run.metrics_file_offset == size
    shown = "\n".join(warnings_of(run))
    for reason in [
        "metric name 'xxxxxxxx",
        "is longer than 255 characters",
        "step 1099511627776 of metric 'far' is outside 0 to 2147483647",
        "step -1 of metric 'before' is outside 0 to 2147483647",
        "value nan of metric 'nan' is not a finite number",
        "value -inf of metric 'inf' is not a finite number",
        "value inf of metric 'huge' is not a finite number",
        "step 1.5 of metric 'half' is not a whole number",
        "step 'three' of metric 'word' is not a whole number",
        "value 'abc' of metric 'text' is not a number",
        "value True of metric 'flag' is not a number",
        "a metric name must be non-empty text, not ['a']",
        "value of tag 'long' is longer than 1024 characters",
        "metric name 'nul\\x00' holds a NUL or an invalid character",
        "value of tag 'half' holds a NUL or an invalid character",
        "is not JSON",
        "is not a JSON object",
        "is longer than 64 KB",
    ]:
        assert reason in shown, reason
    assert shown.count("is not JSON") == 3
    page = client_for(alice).get(reverse("run_detail", args=[workspace.slug, run.pk]))
    assert "Metric record skipped: value nan of metric &#x27;nan&#x27;" in page.content.decode()


CATASTROPHIC = textwrap.dedent(
    """
    import sys
    print("a" * 30000 + "!", flush=True)
    print("b" * (1024 * 1024), flush=True)
    print("loss=0.5", flush=True)
    sys.stdout.write("c" * (5 * 1024 * 1024))
    print("", flush=True)
    print("loss=0.25 step 7", flush=True)
    """
)


def test_a_backtracking_pattern_and_megabyte_lines_leave_monitor_and_pages_responsive(
    tmp_path, workspace, alice, local
):
    source = write_tree(tmp_path / "src", {"train.py": CATASTROPHIC})
    viewer = client_for(alice)
    slowest = []
    stop = threading.Event()

    def keep_asking(url):
        while not stop.is_set():
            started = time.monotonic()
            assert viewer.get(url).status_code == 200
            slowest.append(time.monotonic() - started)
            time.sleep(0.05)

    with running_monitor():
        run = submit(
            workspace=workspace,
            user=alice,
            target=local,
            source=source,
            metric_patterns=[
                r"(?P<junk>(a+)+)$",
                r"loss=(?P<loss>[0-9.]+)( step (?P<step>\d+))?",
            ],
        )
        asker = threading.Thread(
            target=keep_asking, args=(reverse("run_detail", args=[workspace.slug, run.pk]),)
        )
        asker.start()
        try:
            run = wait_final(run, timeout=60)
        finally:
            stop.set()
            asker.join(timeout=30)
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert slowest and max(slowest) < 2, max(slowest or [0])
    loss = list(run.metrics.filter(name="loss").values_list("step", "value"))
    assert loss == [(0, 0.5), (7, 0.25)]
    assert any("stdout line(s) longer than 64 KB" in w for w in warnings_of(run)), warnings_of(run)


def run_stdout(run) -> str:
    return logstore.read(run.pk, "stdout")[0].decode()
