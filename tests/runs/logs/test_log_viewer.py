"""The log viewer in Chromium against `manage.py up`, fed the way the run monitor feeds it.

A helper process in the stack's environment stores output with
`logstore.append` and wakes viewers with `live.notify_log`: the real path
from the monitor to the browser. Runs launched through the runs code are in
test_live_logs_runs.py.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from studio.launcher import wait_for_port
from tests.services.live_stack import ROOT, login, start_stack

pytestmark = pytest.mark.e2e

NEW_RUN = """
import django; django.setup()
from django.contrib.auth import get_user_model
from runs.models import Experiment, Run
from studio.models import Workspace
ws = Workspace.objects.get(slug=%r)
alice = get_user_model().objects.get(username="alice")
experiment, _ = Experiment.objects.get_or_create(workspace=ws, name="viewer", created_by=alice)
number = experiment.runs.count() + 1
run = Run.objects.create(workspace=ws, experiment=experiment, number=number, status=%r,
                         target_name="local", submitted_by=alice)
print(run.pk)
"""

# Stores each piece of output as the monitor does: append at the stream's end, then wake viewers.
WRITER = r"""
import sys, time, django; django.setup()
from runs.logs import live
from runs.logs import store as logstore
from runs.models import Run
run_id = int(sys.argv[1])
for line in sys.stdin.buffer:
    command, _, rest = line.rstrip(b"\n").partition(b" ")
    if command == b"sleep":
        time.sleep(float(rest))
        continue
    if command == b"status":
        Run.objects.filter(pk=run_id).update(status=rest.decode())
        live.notify_status(run_id, rest.decode())
        continue
    stream, data = command.decode(), eval(rest)
    offset = logstore.size(run_id, stream)
    logstore.append(run_id, stream, offset, data)
    live.notify_log(run_id, stream, offset, data)
"""


def python(stack, code: str, *args: str, stdin: bytes = b"") -> str:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=stack.env,
        input=stdin,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout.decode()


def new_run(stack, status: str = "Running") -> int:
    return int(python(stack, NEW_RUN % (stack.workspace_slug, status)).strip())


def store(stack, run_id: int, *steps: tuple) -> None:
    """Each step: (stream, bytes), ("sleep", seconds) or ("status", name)."""
    lines = []
    for kind, value in steps:
        lines.append(f"{kind} {value!r}" if isinstance(value, bytes) else f"{kind} {value}")
    python(stack, WRITER, str(run_id), stdin=("\n".join(lines) + "\n").encode())


def start_storing(stack, run_id: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(run_id)],
        cwd=ROOT,
        env=stack.env,
        stdin=subprocess.PIPE,
    )


def open_logs(page, stack, run_id: int) -> None:
    page.goto(f"{stack.url}/w/{stack.workspace_slug}/runs/{run_id}/logs/")
    page.wait_for_function(f"window.trainyardLogViewers && window.trainyardLogViewers[{run_id}]")


def shown(page, run_id: int) -> str:
    return page.evaluate(f"window.trainyardLogViewers[{run_id}].text()")


def wait_for_text(page, run_id: int, text: str, timeout: float = 15000) -> None:
    page.wait_for_function(
        f"window.trainyardLogViewers[{run_id}].text().includes({text!r})", timeout=timeout
    )


@pytest.fixture
def alice_page(page, live_stack):
    login(page, live_stack, "alice")
    return page


def test_live_lines_arrive_once_and_in_order_across_dropped_connections(alice_page, live_stack):
    page, stack = alice_page, live_stack
    run_id = new_run(stack)
    store(stack, run_id, ("stdout", b"line 1\n"))
    open_logs(page, stack, run_id)
    wait_for_text(page, run_id, "line 1")
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()

    writer = start_storing(stack, run_id)
    assert writer.stdin is not None
    for n in range(2, 301):
        data = f"line {n}\n".encode()
        writer.stdin.write(f"stdout {data!r}\nsleep 0.01\n".encode())
        if n in (80, 160, 240):
            writer.stdin.flush()
            # A network drop: the viewer reconnects by itself and resumes at its offset.
            page.wait_for_function(
                f"window.trainyardLogViewers[{run_id}].text().includes('line {n - 30}')"
            )
            page.evaluate(f"window.trainyardLogViewers[{run_id}].socket.close()")
    writer.stdin.close()
    assert writer.wait(timeout=60) == 0

    wait_for_text(page, run_id, "line 300")
    assert shown(page, run_id).splitlines() == [f"line {n}" for n in range(1, 301)]


def test_progress_bars_redraw_in_place_colours_render_and_stderr_stands_out(alice_page, live_stack):
    page, stack = alice_page, live_stack
    run_id = new_run(stack)
    open_logs(page, stack, run_id)
    bar = [f"\r{p:3d}%|{'#' * (p // 10):<10}| {p}/100".encode() for p in range(0, 101, 10)]
    # stdout and stderr are separate streams: let the first line land before the bar starts,
    # as it would from a script that prints a header and then starts tqdm.
    store(stack, run_id, ("stdout", b"\x1b[32mtraining\x1b[0m started\n"))
    wait_for_text(page, run_id, "training started")
    steps: list = []
    for piece in bar:
        steps += [("stderr", piece), ("sleep", "0.02")]
    steps += [("stderr", b"\n"), ("stdout", b"done \xe2\x9c"), ("stdout", b"\x93\n")]
    store(stack, run_id, *steps)
    wait_for_text(page, run_id, "done ✓")
    assert shown(page, run_id).splitlines() == [
        "training started",
        "100%|##########| 100/100",
        "done ✓",
    ]
    colours = page.evaluate(
        f"""(() => {{
        const buffer = window.trainyardLogViewers[{run_id}].term.buffer.active;
        const cell = (y, x) => buffer.getLine(y).getCell(x);
        return {{ green: cell(0, 0).getFgColor(), plain: cell(0, 10).isFgDefault(),
                 stderr: cell(1, 0).getFgColor(), stdout: cell(2, 0).isFgDefault() }};
        }})()"""
    )
    assert colours == {"green": 2, "plain": True, "stderr": 209, "stdout": True}


def test_a_finished_long_log_loads_its_tail_first_then_pages_back(alice_page, live_stack):
    page, stack = alice_page, live_stack
    run_id = new_run(stack, status="Completed")
    lines = b"".join(b"record %06d " % n + b"." * 50 + b"\n" for n in range(1, 40001))
    python(
        stack,
        "import sys, django; django.setup()\n"
        "from runs.logs import store as logstore\n"
        "logstore.append(int(sys.argv[1]), 'stdout', 0, sys.stdin.buffer.read())",
        str(run_id),
        stdin=lines,
    )
    open_logs(page, stack, run_id)
    wait_for_text(page, run_id, "record 040000")
    expect(page.get_by_role("status").filter(has_text="Run Completed")).to_be_visible()
    first = shown(page, run_id).splitlines()
    # The tail: whole lines only, ending with the last one.
    assert first[-1].startswith("record 040000") and len(first) < 40000
    earliest = int(first[0].split()[1])
    assert first == [(b"record %06d " % n).decode() + "." * 50 for n in range(earliest, 40001)]

    earlier = page.get_by_role("button", name="Load earlier output")
    for _ in range(10):
        if not earlier.is_visible():
            break
        earlier.click()
        expect(page.get_by_label("Log output")).to_have_attribute("aria-busy", "false")
        earliest = int(shown(page, run_id).split()[1])
    assert earliest == 1
    expect(earlier).to_be_hidden()
    every = shown(page, run_id).splitlines()
    assert every == [(b"record %06d " % n).decode() + "." * 50 for n in range(1, 40001)]

    download = page.get_by_role("link", name="Download stdout")
    with page.expect_download() as info:
        download.click()
    assert Path(info.value.path()).read_bytes() == lines


def on_screen(page, run_id: int) -> list[str]:
    """The lines in the terminal's viewport."""
    return page.evaluate(
        f"""(() => {{
        const term = window.trainyardLogViewers[{run_id}].term;
        const buffer = term.buffer.active;
        const lines = [];
        for (let y = buffer.viewportY; y < buffer.viewportY + term.rows; y++) {{
            lines.push(buffer.getLine(y).translateToString(true));
        }}
        return lines;
        }})()"""
    )


def test_a_log_longer_than_the_scrollback_pages_back_to_its_first_line_and_to_the_end(
    alice_page, live_stack
):
    page, stack = alice_page, live_stack
    run_id = new_run(stack, status="Completed")
    count = 250_000
    record = [f"line {n:06d}" for n in range(1, count + 1)]
    python(
        stack,
        "import sys, django; django.setup()\n"
        "from runs.logs import store as logstore\n"
        "logstore.append(int(sys.argv[1]), 'stdout', 0, sys.stdin.buffer.read())",
        str(run_id),
        stdin="".join(line + "\n" for line in record).encode(),
    )
    open_logs(page, stack, run_id)
    wait_for_text(page, run_id, record[-1])
    expect(page.get_by_role("status").filter(has_text="Run Completed")).to_be_visible()

    def contiguous() -> list[str]:
        lines = shown(page, run_id).splitlines()
        first = int(lines[0].split()[1])
        assert lines == record[first - 1 : first - 1 + len(lines)]
        return lines

    earlier = page.get_by_role("button", name="Load earlier output")
    later = page.get_by_role("button", name="Load later output")
    terminal = page.get_by_label("Log output")
    pages = 0
    while earlier.is_visible():
        earlier.click()
        expect(terminal).to_have_attribute("aria-busy", "false")
        pages += 1
        assert pages <= 4
        # The window holds no more than the terminal keeps, and nothing is missing from it.
        assert len(contiguous()) < 100_000
    assert contiguous()[0] == record[0]
    page.evaluate(f"window.trainyardLogViewers[{run_id}].term.scrollToTop()")
    assert on_screen(page, run_id)[0] == record[0]
    assert record[-1] not in shown(page, run_id)
    expect(page.get_by_role("button", name="Paused: follow the end of the log")).to_be_hidden()

    last = contiguous()[-1]
    later.click()
    expect(terminal).to_have_attribute("aria-busy", "false")
    assert contiguous()[-1] > last
    page.get_by_role("button", name="Jump to the end").click()
    wait_for_text(page, run_id, record[-1])
    assert contiguous()[-1] == record[-1]
    assert record[-1] in on_screen(page, run_id)
    expect(later).to_be_hidden()
    expect(earlier).to_be_visible()


def test_following_a_run_past_the_scrollback_keeps_the_tail_and_offers_the_rest(
    alice_page, live_stack
):
    page, stack = alice_page, live_stack
    run_id = new_run(stack)
    open_logs(page, stack, run_id)
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    record = [f"row {n:06d}" for n in range(1, 120_001)]
    for part in range(4):
        lines = record[part * 30_000 : (part + 1) * 30_000]
        store(stack, run_id, ("stdout", "".join(line + "\n" for line in lines).encode()))
    wait_for_text(page, run_id, record[-1], timeout=60_000)

    def contiguous() -> list[str]:
        lines = shown(page, run_id).splitlines()
        first = int(lines[0].split()[1])
        assert lines == record[first - 1 : first - 1 + len(lines)]
        return lines

    # More than the terminal keeps arrived: it holds the tail, the rest is a click away.
    tail = contiguous()
    assert tail[-1] == record[-1] and tail[0] != record[0]
    expect(page.locator("[data-log-viewer]")).to_have_attribute("data-following", "yes")
    earlier = page.get_by_role("button", name="Load earlier output")
    expect(earlier).to_be_visible()
    earlier.click()
    expect(page.get_by_label("Log output")).to_have_attribute("aria-busy", "false")
    assert contiguous()[0] < tail[0]

    page.get_by_role("button", name="Jump to the end").click()
    wait_for_text(page, run_id, record[-1])
    store(stack, run_id, ("stdout", b"after the jump\n"))
    wait_for_text(page, run_id, "after the jump")
    assert shown(page, run_id).splitlines()[-2:] == [record[-1], "after the jump"]


def test_search_finds_text_and_a_node_log_is_chosen_from_the_selector(alice_page, live_stack):
    page, stack = alice_page, live_stack
    run_id = new_run(stack)
    store(
        stack,
        run_id,
        ("stdout", b"driver: starting 2 nodes\nneedle in the driver log\n"),
        ("node-1.stdout", b"node 1: rank 0 ready\n"),
    )
    open_logs(page, stack, run_id)
    wait_for_text(page, run_id, "needle")

    page.get_by_label("Search the log").fill("needle")
    page.get_by_role("button", name="Next").click()
    assert page.evaluate(f"window.trainyardLogViewers[{run_id}].term.getSelection()") == "needle"
    page.get_by_label("Search the log").fill("haystack")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Not found")).to_be_visible()

    store(stack, run_id, ("node-2.stdout", b"node 2: rank 1 ready\n"))
    expect(page.get_by_label("Log", exact=True).locator("option")).to_have_text(
        ["Driver", "Node 1", "Node 2"]
    )
    page.get_by_label("Log", exact=True).select_option("node-2")
    wait_for_text(page, run_id, "rank 1 ready")
    assert shown(page, run_id) == "node 2: rank 1 ready"
    store(stack, run_id, ("node-2.stderr", b"node 2: warning\n"))
    wait_for_text(page, run_id, "node 2: warning")


def test_scrolling_up_pauses_following_until_the_reader_asks_for_the_end(alice_page, live_stack):
    page, stack = alice_page, live_stack
    run_id = new_run(stack)
    store(stack, run_id, ("stdout", b"".join(b"row %d\n" % n for n in range(1, 201))))
    open_logs(page, stack, run_id)
    wait_for_text(page, run_id, "row 200")
    viewer = page.locator("[data-log-viewer]")
    expect(viewer).to_have_attribute("data-following", "yes")

    page.get_by_label("Log output").hover()
    page.mouse.wheel(0, -2000)
    expect(viewer).to_have_attribute("data-following", "no")
    viewport = f"window.trainyardLogViewers[{run_id}].term.buffer.active.viewportY"
    top = page.evaluate(viewport)
    store(stack, run_id, ("stdout", b"".join(b"more %d\n" % n for n in range(1, 101))))
    wait_for_text(page, run_id, "more 100")
    # New output arrived, and the reader still sees what they scrolled to.
    assert page.evaluate(viewport) == top
    expect(viewer).to_have_attribute("data-following", "no")

    page.get_by_role("button", name="Paused: follow the end of the log").click()
    expect(viewer).to_have_attribute("data-following", "yes")
    expect(page.get_by_role("button", name="Paused: follow the end of the log")).to_be_hidden()


def test_the_viewer_resumes_after_the_server_restarts(page):
    with tempfile.TemporaryDirectory(prefix="ty-restart-") as tmp:
        stack = start_stack(Path(tmp))
        try:
            login(page, stack, "alice")
            run_id = new_run(stack)
            store(stack, run_id, ("stdout", b"".join(b"line %d\n" % n for n in range(1, 51))))
            open_logs(page, stack, run_id)
            wait_for_text(page, run_id, "line 50")

            assert stack.stop() == 0
            expect(page.get_by_text("Connection lost; reconnecting…")).to_be_visible()
            # The run goes on printing while the studio is down.
            logstore_append(stack, run_id, b"".join(b"line %d\n" % n for n in range(51, 101)))

            with open(Path(tmp) / "up-again.out", "wb") as out:
                stack.process = subprocess.Popen(
                    [sys.executable, "manage.py", "up"], cwd=ROOT, env=stack.env, stdout=out
                )
            assert wait_for_port("127.0.0.1", stack.port, timeout=60)
            store(stack, run_id, ("stdout", b"".join(b"line %d\n" % n for n in range(101, 151))))
            wait_for_text(page, run_id, "line 150", timeout=60_000)
            assert shown(page, run_id).splitlines() == [f"line {n}" for n in range(1, 151)]
        finally:
            stack.stop()


def logstore_append(stack, run_id: int, data: bytes) -> None:
    python(
        stack,
        "import sys, django; django.setup()\n"
        "from runs.logs import store as logstore\n"
        "run = int(sys.argv[1])\n"
        "logstore.append(run, 'stdout', logstore.size(run, 'stdout'), sys.stdin.buffer.read())",
        str(run_id),
        stdin=data,
    )


def osc8(uri: str, text: str) -> bytes:
    return f"\x1b]8;;{uri}\x1b\\{text}\x1b]8;;\x1b\\\n".encode()


def cell_point(page, run_id: int, line: int) -> tuple[float, float]:
    """Where the second cell of `line` is on the screen (the log starts at the top)."""
    box = page.locator(".xterm-screen").bounding_box()
    cols, rows = page.evaluate(
        f"(t => [t.cols, t.rows])(window.trainyardLogViewers[{run_id}].term)"
    )
    return box["x"] + 1.5 * box["width"] / cols, box["y"] + (line + 0.5) * box["height"] / rows


def offers_link(page, run_id: int, line: int) -> bool:
    """Point at `line`; whether the viewer then shows a link there (the pointer cursor)."""
    x, y = cell_point(page, run_id, line)
    page.mouse.move(x, y - 4)
    page.mouse.move(x, y)
    try:
        page.locator(".xterm-cursor-pointer").wait_for(timeout=1500)
    except PlaywrightTimeout:
        return False
    return True


HOSTILE_LINKS = [
    "javascript:window.pwned=1",
    "JaVaScRiPt:window.pwned=2",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
    "vbscript:msgbox(1)",
    "//evil.invalid/x",
]


def test_only_http_links_in_a_run_s_output_can_be_opened(alice_page, live_stack):
    page, stack = alice_page, live_stack
    run_id = new_run(stack)
    open_logs(page, stack, run_id)
    web = f"{stack.url}/healthz"
    output = b"".join(osc8(uri, f"click-{i}") for i, uri in enumerate(HOSTILE_LINKS))
    output += b"javascript:window.pwned=3 data:text/html,x https://example.invalid/\n"
    output += osc8(web, "click-web")
    store(stack, run_id, ("stdout", output))
    wait_for_text(page, run_id, "click-web")
    dialogs: list[str] = []

    def answer(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    popups: list = []
    page.context.on("page", lambda opened: popups.append(opened))
    start = page.url

    for line in range(len(HOSTILE_LINKS) + 1):
        assert not offers_link(page, run_id, line), line
        page.mouse.click(*cell_point(page, run_id, line))
    page.wait_for_timeout(500)
    assert dialogs == [] and popups == []
    assert page.url == start
    assert page.evaluate("window.pwned") is None

    # A web link is one: the reader is shown its address, then it opens in a new tab.
    web_line = len(HOSTILE_LINKS) + 1
    assert offers_link(page, run_id, web_line)
    with page.context.expect_page() as opened:
        page.mouse.click(*cell_point(page, run_id, web_line))
    opened.value.wait_for_load_state()
    assert opened.value.url == web
    assert dialogs == [f"Open {web} in a new tab?"]
    assert page.url == start
