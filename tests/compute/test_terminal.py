"""The terminal websocket through the real ASGI application, against a real sshd."""

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from compute import consumers
from compute.models import ComputeKind, ComputeTarget, TerminalEnd, TerminalSession
from studio.asgi import application
from tests.compute.backends.test_runs_cluster import engine  # noqa: F401 - removes node containers
from tests.compute.backends.test_runs_vm import vm  # noqa: F401 - the VM fixture on the test sshd
from tests.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)


def session_of(user) -> str:
    return client_for(user).cookies["sessionid"].value


def socket_for(session: str | None, slug: str, name: str) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if session is not None:
        headers.append((b"cookie", f"sessionid={session}".encode()))
    path = f"/ws/w/{slug}/compute/{name}/terminal/"
    return WebsocketCommunicator(application, path, headers=headers)


async def text(socket: WebsocketCommunicator) -> dict:
    message = await socket.receive_output(timeout=10)
    assert message["type"] == "websocket.send" and message.get("text"), message
    return json.loads(message["text"])


async def output_until(socket: WebsocketCommunicator, wanted: bytes, timeout: float = 10) -> bytes:
    """The shell's output (binary frames) until `wanted` appears in it."""
    seen = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while wanted not in seen:
        message = await socket.receive_output(timeout=max(deadline - loop.time(), 0.1))
        assert message["type"] == "websocket.send", (message, seen)
        seen += message.get("bytes") or b""
    return seen


async def typed(socket: WebsocketCommunicator, keys: str) -> None:
    await socket.send_to(text_data=json.dumps({"type": "input", "data": keys}))


def test_reader_stranger_and_anonymous_are_closed_with_4403(vm, workspace, bob, charlie):  # noqa: F811
    async def first(session):
        socket = socket_for(session, workspace.slug, vm.name)
        connected, _ = await socket.connect()
        assert connected
        message = await socket.receive_output(timeout=10)
        await socket.disconnect()
        return message

    for session in (None, session_of(bob), session_of(charlie)):
        assert async_to_sync(first)(session) == {"type": "websocket.close", "code": 4403}
    # A target of another workspace is no different from one that does not exist.
    assert async_to_sync(first)(session_of(charlie)) == {
        "type": "websocket.close",
        "code": 4403,
    }
    assert not TerminalSession.objects.exists()


def test_contributor_types_a_command_and_the_session_is_recorded(vm, workspace, carol):  # noqa: F811
    async def scenario(session):
        socket = socket_for(session, workspace.slug, vm.name)
        await socket.connect()
        assert await text(socket) == {"type": "ready", "target": vm.name}
        await socket.send_to(text_data=json.dumps({"type": "resize", "cols": 132, "rows": 41}))
        await typed(socket, "stty size; echo hello-$((6*7))\r")
        seen = await output_until(socket, b"hello-42")
        assert b"41 132" in seen  # the resize reached the pty before the command ran
        await typed(socket, "exit\r")
        message = await text_after_output(socket)
        assert message["type"] == "ended" and message["reason"] == "exit"
        closed = await socket.receive_output(timeout=10)
        assert closed == {"type": "websocket.close", "code": 1000}
        await socket.disconnect()

    async_to_sync(scenario)(session_of(carol))
    recorded = TerminalSession.objects.get()
    assert (recorded.target, recorded.username, recorded.end) == (
        vm,
        "carol",
        TerminalEnd.SHELL_EXIT,
    )
    assert recorded.ended_at is not None
    assert recorded.ended_at >= recorded.started_at
    page = client_for(carol).get(reverse("compute_detail", args=[workspace.slug, vm.name]))
    text_page = page.content.decode()
    assert "Terminal sessions" in text_page and "<td>carol</td>" in text_page
    assert "the shell exited" in text_page
    assert reverse("compute_terminal", args=[workspace.slug, vm.name]) in text_page


async def text_after_output(socket: WebsocketCommunicator) -> dict:
    """The next JSON frame, skipping the shell's remaining output."""
    while True:
        message = await socket.receive_output(timeout=10)
        if message.get("text"):
            return json.loads(message["text"])


def test_idle_terminal_is_closed_and_recorded(vm, workspace, carol, settings):  # noqa: F811
    settings.TERMINAL_IDLE_SECONDS = 1

    async def scenario(session):
        socket = socket_for(session, workspace.slug, vm.name)
        await socket.connect()
        assert (await text(socket))["type"] == "ready"
        message = await text_after_output(socket)
        assert message["reason"] == "idle"
        assert message["message"] == "Closed after 1 seconds without input: open it again."
        assert (await socket.receive_output(timeout=10))["code"] == consumers.IDLE
        await socket.disconnect()

    async_to_sync(scenario)(session_of(carol))
    assert TerminalSession.objects.get().end == TerminalEnd.IDLE


def test_oversized_frames_and_floods_of_input_are_refused(vm, workspace, carol):  # noqa: F811
    async def closed_by(session, frames):
        socket = socket_for(session, workspace.slug, vm.name)
        await socket.connect()
        assert (await text(socket))["type"] == "ready"
        for frame in frames:
            await socket.send_to(text_data=frame)
        while True:
            message = await socket.receive_output(timeout=10)
            if message["type"] == "websocket.close":
                await socket.disconnect()
                return message["code"]

    session = session_of(carol)
    huge = json.dumps({"type": "input", "data": "x" * (consumers.MAX_FRAME + 1)})
    assert async_to_sync(closed_by)(session, [huge]) == consumers.TOO_LARGE
    chunk = json.dumps({"type": "input", "data": "#" * 8000})
    flood = [chunk] * (consumers.INPUT_BURST_BYTES // 8000 + 2)
    assert async_to_sync(closed_by)(session, flood) == consumers.TOO_MUCH_INPUT
    assert TerminalSession.objects.filter(end=TerminalEnd.CLOSED).count() == 2


def test_local_target_has_no_terminal_and_says_why(workspace, carol):
    async def scenario(session):
        socket = socket_for(session, workspace.slug, "local")
        await socket.connect()
        message = await text(socket)
        closed = await socket.receive_output(timeout=10)
        await socket.disconnect()
        return message, closed

    message, closed = async_to_sync(scenario)(session_of(carol))
    assert message["reason"] == "unavailable"
    assert "a shell there would run as the studio's own account" in message["message"]
    assert closed["code"] == consumers.UNAVAILABLE
    client = client_for(carol)
    page = client.get(reverse("compute_detail", args=[workspace.slug, "local"])).content.decode()
    assert "a shell here would run as the studio's own account" in page
    assert ">Terminal</a>" not in page
    terminal = client.get(reverse("compute_terminal", args=[workspace.slug, "local"]))
    assert "a shell there would run as the studio&#x27;s own account" in terminal.content.decode()
    assert ComputeTarget.objects.get(workspace=workspace, name="local").kind == ComputeKind.LOCAL


def test_terminal_page_is_for_contributors(vm, workspace, as_bob, as_carol, as_charlie):  # noqa: F811
    url = reverse("compute_terminal", args=[workspace.slug, vm.name])
    assert as_charlie.get(url).status_code == 404
    assert as_bob.get(url).status_code == 403
    page = as_carol.get(url).content.decode()
    assert f'data-socket="/ws/w/{workspace.slug}/compute/{vm.name}/terminal/"' in page
    detail = as_bob.get(reverse("compute_detail", args=[workspace.slug, vm.name])).content
    assert b">Terminal</a>" not in detail


def shell_session(session: str, path: str, command: str, wanted: bytes) -> tuple[dict, bytes]:
    """Open the terminal at `path`, type `command`; the ready frame and output up to `wanted`."""

    async def scenario():
        headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
        headers.append((b"cookie", f"sessionid={session}".encode()))
        socket = WebsocketCommunicator(application, path, headers=headers)
        await socket.connect()
        ready = await text(socket)
        assert ready["type"] == "ready", ready
        await typed(socket, command)
        seen = await output_until(socket, wanted, timeout=20)
        await socket.disconnect()
        return ready, seen

    return async_to_sync(scenario)()


SLEEPER = {"train.py": "import time\nopen('marker-file', 'w').close()\ntime.sleep(120)\n"}


def test_a_running_runs_terminal_opens_in_its_working_directory(
    tmp_path,
    workspace,
    alice,
    carol,
    vm,  # noqa: F811
):
    from runs.models import RunStatus
    from runs.services.lifecycle import run_cancel
    from tests.support.runs import running_monitor, submit, wait_for, write_tree

    source = write_tree(tmp_path / "src", SLEEPER)
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=vm, source=source)
        run = wait_for(run, [RunStatus.RUNNING])
        page = client_for(carol).get(reverse("run_detail", args=[workspace.slug, run.pk]))
        terminal_url = reverse("run_terminal", args=[workspace.slug, run.pk])
        assert f'href="{terminal_url}"' in page.content.decode()
        path = f"/ws/w/{workspace.slug}/runs/{run.pk}/terminal/"
        ready, seen = shell_session(
            session_of(carol), path, "pwd; ls; echo done-$((1+1))\r", b"done-2"
        )
        assert ready["target"] == f"run {run.pk} on {vm.name}"
        assert run.handle is not None
        assert f"{run.handle['run_dir']}/wd".encode() in seen
        assert b"marker-file" in seen and b"train.py" in seen
        run_cancel(run=run, user=alice)
        wait_for(run, [RunStatus.CANCELED])
    recorded = TerminalSession.objects.get()
    assert (recorded.target, recorded.run_id, recorded.username) == (vm, run.pk, "carol")
    # Once the run has ended, its page offers no terminal and the socket says why.
    page = client_for(carol).get(reverse("run_detail", args=[workspace.slug, run.pk]))
    assert f'href="{terminal_url}"' not in page.content.decode()
    assert "a terminal opens in the working directory of a running run" in (
        client_for(carol).get(terminal_url).content.decode()
    )


@pytest.mark.docker
def test_terminals_on_a_cluster_node_and_its_run_are_nobodys(
    tmp_path,
    workspace,
    alice,
    carol,
    engine,  # noqa: F811
):
    from compute.models import Node
    from runs.models import RunStatus
    from runs.services.lifecycle import run_cancel
    from tests.compute.backends.test_runs_cluster import dispatch_until_started, make_cluster
    from tests.support.runs import running_monitor, submit, wait_for, write_tree

    cluster = make_cluster(workspace, alice)
    source = write_tree(tmp_path / "src", SLEEPER)
    with running_monitor():
        run = submit(workspace=workspace, user=alice, target=cluster, source=source)
        run = wait_for(dispatch_until_started(run), [RunStatus.RUNNING])
        node = Node.objects.get(target=cluster, name=run.node_name)
        status = client_for(carol).get(
            reverse("cluster_status", args=[workspace.slug, cluster.name])
        )
        node_url = reverse("compute_terminal", args=[workspace.slug, cluster.name])
        assert f'href="{node_url}?node={node.name}"' in status.content.decode()

        socket = f"/ws/w/{workspace.slug}/compute/{cluster.name}/terminal/?node={node.name}"
        ready, seen = shell_session(session_of(carol), socket, "echo uid-$(id -u)\r", b"uid-65534")
        assert ready["target"] == f"node {node.name} of {cluster.name}"

        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING, (run.error, run.stderr_tail)
        socket = f"/ws/w/{workspace.slug}/runs/{run.pk}/terminal/"
        command = "echo uid-$(id -u) in-$(pwd); ls\r"
        ready, seen = shell_session(session_of(carol), socket, command, b"marker-file")
        assert run.handle is not None
        assert f"uid-65534 in-{run.handle['run_dir']}/wd".encode() in seen
        run_cancel(run=run, user=alice)
        wait_for(run, [RunStatus.CANCELED])
    sessions = TerminalSession.objects.order_by("started_at")
    assert [(s.node_name, s.run_id) for s in sessions] == [(node.name, None), (node.name, run.pk)]
    page = client_for(carol).get(reverse("compute_detail", args=[workspace.slug, cluster.name]))
    assert f"node {node.name}, run" in page.content.decode()


def test_a_cluster_terminal_needs_a_node_that_exists(workspace, alice, carol):
    ComputeTarget.objects.create(
        workspace=workspace,
        name="cpu",
        kind=ComputeKind.CLUSTER,
        state="Succeeded",
        created_by=alice,
    )
    session = session_of(carol)

    async def said(query):
        headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
        headers.append((b"cookie", f"sessionid={session}".encode()))
        path = f"/ws/w/{workspace.slug}/compute/cpu/terminal/{query}"
        socket = WebsocketCommunicator(application, path, headers=headers)
        await socket.connect()
        message = await text(socket)
        closed = await socket.receive_output(timeout=10)
        await socket.disconnect()
        assert closed["code"] == consumers.UNAVAILABLE
        return message["message"]

    assert async_to_sync(said)("") == (
        "Choose a node in the node table of cpu to open a terminal on it."
    )
    assert async_to_sync(said)("?node=cpu-9") == "cpu has no node cpu-9 any more."
    assert (
        async_to_sync(said)("?node=" + "x" * 5000) == "cpu has no node " + "x" * 64 + " any more."
    )


def test_an_hdinsight_head_node_offers_a_terminal(workspace, alice, as_carol):
    ComputeTarget.objects.create(
        workspace=workspace,
        name="spark",
        kind=ComputeKind.HDINSIGHT,
        state="Succeeded",
        address="127.0.0.1",
        username="sshuser",
        created_by=alice,
    )
    page = as_carol.get(reverse("compute_detail", args=[workspace.slug, "spark"])).content
    terminal_url = reverse("compute_terminal", args=[workspace.slug, "spark"])
    assert f'href="{terminal_url}"'.encode() in page
    assert b"A shell as sshuser." in as_carol.get(terminal_url).content
