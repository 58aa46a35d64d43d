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
from tests.conftest import client_for
from tests.integration.test_runs_vm import vm  # noqa: F401 - the VM fixture on the test sshd

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
