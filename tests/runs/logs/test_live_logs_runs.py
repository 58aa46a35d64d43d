"""Real runs streaming to Chromium through `manage.py up`: worker, run monitor, websocket.

The runs are submitted with the same service the form and the API call, in a
process with the stack's environment; the stack's own Celery worker launches
them and its run monitor (or an extra one started here) streams their output.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from django.conf import settings
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.runs.logs.test_log_viewer import python, shown, wait_for_text
from tests.services.live_stack import ROOT, login
from tests.support.runs import write_tree

pytestmark = pytest.mark.e2e

SUBMIT = """
import json, sys
from pathlib import Path
import django; django.setup()
from django.contrib.auth import get_user_model
from compute.models import ComputeTarget
from studio.models import Workspace
from tests.support.runs import submit
ws = Workspace.objects.get(slug=sys.argv[1])
alice = get_user_model().objects.get(username="alice")
target = ComputeTarget.objects.get(workspace=ws, name=sys.argv[2])
options = {}
if len(sys.argv) > 4:
    from runs.services.environments import environment_create
    from runs.models import EnvironmentKind
    options["environment"] = environment_create(
        workspace=ws, kind=EnvironmentKind.USER_MANAGED, **json.loads(sys.argv[4]))
run = submit(workspace=ws, user=alice, target=target, source=Path(sys.argv[3]),
             experiment="live-logs", **options)
print(run.pk)
"""

RUN_DIR = """
import sys
import django; django.setup()
from runs.models import Run
print(Run.objects.get(pk=int(sys.argv[1])).handle["run_dir"])
"""

# Put at a point of a run's script: it goes on once the test lets it (see `let_go`).
WAIT_FOR_THE_TEST = """\
while not os.path.exists("go"):
    time.sleep(0.05)
"""

ATTACH_VM = """
import sys
import django; django.setup()
from django.contrib.auth import get_user_model
from compute.models import AuthMethod, ComputeKind, ComputeState, ComputeTarget
from studio.models import Workspace
slug, name, host, port, username, password, fingerprint = sys.argv[1:]
ComputeTarget.objects.get_or_create(
    workspace=Workspace.objects.get(slug=slug), name=name,
    defaults=dict(kind=ComputeKind.VM, state=ComputeState.SUCCEEDED, address=host,
                  port=int(port), username=username, auth_method=AuthMethod.PASSWORD,
                  password=password, host_key_fingerprint=fingerprint,
                  created_by=get_user_model().objects.get(username="alice")))
"""

COUNT = """\
import time
for i in range(1, {lines} + 1):
    print(f"line {{i}}", flush=True)
    time.sleep({pause})
"""


def submit_run(stack, tmp_path, target: str, script: str, environment: dict | None = None) -> int:
    """Submit `script` as train.py; `environment`: a user-managed one's name and settings."""
    source = write_tree(tmp_path / "src", {"train.py": script})
    args = [stack.workspace_slug, target, str(source)]
    if environment:
        args.append(json.dumps(environment))
    return int(python(stack, SUBMIT, *args).strip())


def let_go(stack, run_id: int) -> None:
    """Let a run waiting at WAIT_FOR_THE_TEST go on (its target is this machine)."""
    run_dir = Path(python(stack, RUN_DIR, str(run_id)).strip())
    (run_dir / "wd" / "go").touch()


def expect_on_screen_while_running(page, run_id: int, text: str) -> None:
    """`text` is shown, and the run still runs: output comes as it is printed."""
    wait_for_text(page, run_id, text, timeout=60_000)
    viewer = page.locator(f"[data-log-viewer][data-config='log-config-{run_id}']")
    expect(viewer).to_have_attribute("data-status", "Running")
    expect(page.locator(".run-badge")).to_have_attribute("data-status", "Running")


def open_run(page, stack, run_id: int) -> None:
    page.goto(f"{stack.url}/w/{stack.workspace_slug}/runs/{run_id}/")
    page.wait_for_function(f"window.trainyardLogViewers && window.trainyardLogViewers[{run_id}]")


def wait_until_finished(page, run_id: int, status: str = "Completed") -> None:
    viewer = page.locator(f"[data-log-viewer][data-config='log-config-{run_id}']")
    expect(viewer).to_have_attribute("data-status", status, timeout=120_000)
    expect(viewer.get_by_text(f"Run {status}: complete log loaded.")).to_be_visible()


def stack_monitor(stack) -> psutil.Process:
    for child in psutil.Process(stack.process.pid).children(recursive=True):
        if "monitor" in child.cmdline() and any("manage.py" in a for a in child.cmdline()):
            return child
    raise AssertionError("manage.py up runs no monitor")


@pytest.fixture
def alice_page(page, live_stack):
    login(page, live_stack, "alice")
    return page


def test_every_line_once_and_in_order_while_a_monitor_is_killed_and_another_takes_over(
    alice_page, live_stack, tmp_path
):
    page, stack = alice_page, live_stack
    # The stack's monitor sleeps, so the extra one below follows the run; when that
    # one is killed mid-run, the stack's monitor wakes and takes the run over once
    # the dead monitor's lease expires, from the stored offsets.
    original = stack_monitor(stack)
    original.suspend()
    extra = subprocess.Popen(
        [sys.executable, "manage.py", "monitor"],
        cwd=ROOT,
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run_id = submit_run(stack, tmp_path, "local", COUNT.format(lines=300, pause=0.1))
        open_run(page, stack, run_id)
        wait_for_text(page, run_id, "line 20\n", timeout=60_000)
        os.kill(extra.pid, signal.SIGKILL)
        extra.wait()
        original.resume()
        wait_until_finished(page, run_id)
    finally:
        if extra.poll() is None:
            extra.kill()
        original.resume()
    assert shown(page, run_id).splitlines() == [f"line {i}" for i in range(1, 301)]


PROGRESS_AND_SECRET = (
    """\
import os, sys, time
for i in range(1, 51):
    print(f"line {{i}}", flush=True)
    time.sleep(0.02)
"""
    + WAIT_FOR_THE_TEST
    + """\
# stdout and stderr are separate files on the target: pauses keep their order plain.
time.sleep(1)
for done in range(0, 101, 5):
    bar = "#" * (done // 10)
    sys.stderr.write(f"\\r{{done:3d}}%|{{bar:<10}}| {{done}}/100")
    sys.stderr.flush()
    time.sleep(0.05)
sys.stderr.write("\\n")
time.sleep(1)
print("connecting with {password} to the data store", flush=True)
print("\\x1b[32mdone\\x1b[0m", flush=True)
"""
)


def test_a_run_on_an_ssh_target_streams_with_its_progress_bar_and_masked_password(
    alice_page, live_stack, tmp_path, sshd
):
    page, stack = alice_page, live_stack
    python(
        stack,
        ATTACH_VM,
        stack.workspace_slug,
        "logs-vm",
        sshd.host,
        str(sshd.port),
        sshd.username,
        sshd.password,
        sshd.host_key_fingerprint,
    )
    script = PROGRESS_AND_SECRET.format(password=sshd.password)
    run_id = submit_run(stack, tmp_path, "logs-vm", script)
    open_run(page, stack, run_id)
    expect_on_screen_while_running(page, run_id, "line 50")
    let_go(stack, run_id)
    wait_until_finished(page, run_id)

    text = shown(page, run_id)
    assert sshd.password not in text
    assert text.splitlines() == [
        *(f"line {i}" for i in range(1, 51)),
        "100%|##########| 100/100",
        "connecting with ****** to the data store",
        "done",
    ]
    api = page.request.get(f"{stack.url}/api/v1/runs/{run_id}/logs?stream=stdout")
    assert b"connecting with ****** to the data store" in api.body()
    assert sshd.password.encode() not in api.body()


ALTERNATING = """\
import sys, time
for i in range(1, 6):
    print(f"out {i}", flush=True)
    time.sleep(0.3)
    print(f"err {i}", file=sys.stderr, flush=True)
    time.sleep(0.3)
"""


def test_a_finished_run_reloads_with_stdout_and_stderr_interleaved_as_printed(
    page, live_stack, tmp_path
):
    login(page, live_stack, "alice")
    run_id = submit_run(live_stack, tmp_path, "local", ALTERNATING)
    open_run(page, live_stack, run_id)
    wait_until_finished(page, run_id)
    page.reload()
    page.wait_for_function(f"window.trainyardLogViewers && window.trainyardLogViewers[{run_id}]")
    wait_until_finished(page, run_id)
    wait_for_text(page, run_id, "err 5")
    lines = [line.strip() for line in shown(page, run_id).splitlines() if line.strip()]
    assert lines == [f"{kind} {i}" for i in range(1, 6) for kind in ("out", "err")]


IN_A_CONTAINER = (
    """\
import os, time
print("in a container:", os.path.exists("/.dockerenv"), flush=True)
"""
    + WAIT_FOR_THE_TEST
    + """\
print("let go", flush=True)
"""
)


@pytest.mark.docker
def test_a_run_in_a_docker_environment_streams_while_it_runs(
    alice_page, live_stack, tmp_path, docker_engine
):
    page, stack = alice_page, live_stack
    environment = {"name": "live-docker", "docker_image": settings.CLUSTER_NODE_IMAGE}
    run_id = submit_run(stack, tmp_path, "local", IN_A_CONTAINER, environment)
    open_run(page, stack, run_id)
    expect_on_screen_while_running(page, run_id, "in a container: True")
    let_go(stack, run_id)
    wait_until_finished(page, run_id)
    assert shown(page, run_id).splitlines() == ["in a container: True", "let go"]


TQDM = """\
import time
from tqdm import tqdm
print("training", flush=True)
for _ in tqdm(range(40), desc="epoch 1 of 3, learning rate 0.001"):
    time.sleep(0.05)
# Wider than the terminal however wide the page: it wraps, and still redraws in place.
for _ in tqdm(range(40), desc="evaluation", ncols=200):
    time.sleep(0.05)
# stdout and stderr are separate files on the target: a pause keeps their order plain.
time.sleep(1)
print("done", flush=True)
"""


def test_tqdm_bars_wider_than_the_page_or_the_terminal_redraw_in_place(
    alice_page, live_stack, tmp_path
):
    page, stack = alice_page, live_stack
    # The test's Python has tqdm (requirements-test.txt): the run uses it as it is.
    environment = {"name": "with-tqdm", "interpreter_path": sys.executable}
    run_id = submit_run(stack, tmp_path, "local", TQDM, environment)
    # Too narrow for the bar, which tqdm draws about 90 characters wide.
    page.set_viewport_size({"width": 560, "height": 800})
    open_run(page, stack, run_id)
    wait_until_finished(page, run_id)
    wait_for_text(page, run_id, "done")
    training, bar, wide, done = shown(page, run_id).splitlines()
    assert (training, done) == ("training", "done")
    assert bar.startswith("epoch 1 of 3, learning rate 0.001: 100%|██████████| 40/40 [")
    assert bar.count("%|") == 1
    assert wide.startswith("evaluation: 100%|████") and wide.endswith("it/s]")
    assert wide.count("%|") == 1 and len(wide) == 200
    # The page shows its start, and the rest is a sideways scroll away.
    wide = page.evaluate(
        """(() => {
        const box = document.querySelector('.logterminal');
        return [box.clientWidth, box.scrollWidth];
        })()"""
    )
    assert wide[0] < 560 and wide[0] < len(bar) * 7 < wide[1]


ENDS_WHEN_LET_GO = (
    """\
import os, time
print("working", flush=True)
"""
    + WAIT_FOR_THE_TEST
    + """\
print("finished", flush=True)
"""
)

# Notes, by the browser's clock, when the viewer first says the run completed and when the
# rest of the page first agrees: badge, last timeline entry, no Cancel button.
WATCH_THE_END = """(() => {
  const said = () => document.querySelector('[data-log-viewer] [data-role="state"]')
    .textContent.includes("Run Completed: complete log loaded.");
  const agrees = () => {
    const badge = document.querySelector("#run-status .run-badge");
    const entries = document.querySelectorAll("#run-status .timeline li");
    const cancel = [...document.querySelectorAll("#run-status button")]
      .some((button) => button.textContent.includes("Cancel run"));
    return badge.dataset.status === "Completed" && !cancel &&
      entries[entries.length - 1].textContent.includes("Completed");
  };
  const check = () => {
    if (window.endSaid === undefined && said()) window.endSaid = performance.now();
    if (window.endAgreed === undefined && agrees()) window.endAgreed = performance.now();
  };
  new MutationObserver(check).observe(document.body,
    { subtree: true, childList: true, characterData: true, attributes: true });
})()"""


def duration_shown(page) -> str:
    return page.locator("#run-status dt:text-is('Duration') + dd").inner_text()


def test_the_run_page_agrees_with_its_log_viewer_within_a_second_of_the_end(
    alice_page, live_stack, tmp_path
):
    page, stack = alice_page, live_stack
    run_id = submit_run(stack, tmp_path, "local", ENDS_WHEN_LET_GO)
    open_run(page, stack, run_id)
    expect_on_screen_while_running(page, run_id, "working")
    run_dir = Path(python(stack, RUN_DIR, str(run_id)).strip())
    expect(page.get_by_role("button", name="Cancel run")).to_be_visible()
    page.evaluate(WATCH_THE_END)

    # The run ends just after the page polled its status part: its next poll is 2 s away.
    status_part = f"/runs/{run_id}/status/"
    with page.expect_response(lambda response: response.url.endswith(status_part)):
        pass
    (run_dir / "wd" / "go").touch()

    page.wait_for_function("window.endSaid !== undefined", timeout=60_000)
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function("window.endAgreed !== undefined", timeout=3_000)
    said, agreed = page.evaluate("[window.endSaid, window.endAgreed]")
    assert agreed is not None, "the badge, timeline and Cancel button still say the run runs"
    assert agreed - said <= 1000, f"the page agreed {agreed - said:.0f} ms after the viewer"
    expect(page.locator("#run-status .timeline li").last).to_contain_text("Completed")
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    # The duration stopped with the run: it no longer grows.
    duration = duration_shown(page)
    page.wait_for_timeout(3_000)
    assert duration_shown(page) == duration
