"""The live log websocket, through the real ASGI application and the real Redis channel layer."""

import asyncio
import base64
import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator

from runs.logs import live
from runs.logs import store as logstore
from runs.logs.consumer import FOLLOW_BURST, FOLLOW_PER_SECOND, TOO_MANY_MESSAGES
from runs.models import Experiment, Run, RunStatus
from studio.asgi import application
from tests.conftest import client_for

# The consumer reaches the database from other threads and closes its connections.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


@pytest.fixture(autouse=True)
def log_dir(settings, tmp_path):
    settings.LOG_DIR = tmp_path
    # Wake-ups alone must carry these tests; the periodic check has its own test.
    settings.LOG_POLL_SECONDS = 3600


@pytest.fixture
def run(workspace, alice):
    experiment = Experiment.objects.create(workspace=workspace, name="mnist", created_by=alice)
    return Run.objects.create(
        workspace=workspace,
        experiment=experiment,
        number=1,
        status=RunStatus.RUNNING,
        target_name="local",
        submitted_by=alice,
    )


def session_of(user) -> str:
    """A signed-in browser's session cookie (made outside the event loop, where the test DB is)."""
    return client_for(user).cookies["sessionid"].value


def socket_for(session: str | None, run_id: int) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if session is not None:
        headers.append((b"cookie", f"sessionid={session}".encode()))
    return WebsocketCommunicator(application, f"/ws/runs/{run_id}/logs/", headers=headers)


def stored(run_id: int, stream: str, data: bytes) -> None:
    """What the run monitor does with each piece of output: store it, then wake viewers."""
    offset = logstore.size(run_id, stream)
    logstore.append(run_id, stream, offset, data)
    live.notify_log(run_id, stream, offset, data)


async def receive(socket: WebsocketCommunicator, kind: str) -> dict:
    message = await socket.receive_json_from(timeout=5)
    assert message["type"] == kind, message
    return message


async def receive_log(socket: WebsocketCommunicator) -> tuple[str, int, bytes]:
    message = await receive(socket, "log")
    return message["stream"], message["offset"], base64.b64decode(message["data"])


async def follow(socket: WebsocketCommunicator, offsets: dict) -> None:
    await socket.send_json_to({"type": "follow", "offsets": offsets})


def test_strangers_and_anonymous_visitors_are_closed_with_4403(run, charlie):
    async def scenario(session):
        socket = socket_for(session, run.pk)
        connected, _ = await socket.connect()
        assert connected
        closed = await socket.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4403}
        await socket.wait()

    async_to_sync(scenario)(session_of(charlie))
    async_to_sync(scenario)(None)


def test_a_missing_run_looks_like_a_forbidden_one(run, alice):
    session = session_of(alice)

    async def scenario():
        socket = socket_for(session, run.pk + 1000)
        await socket.connect()
        assert (await socket.receive_output(timeout=5))["code"] == 4403
        await socket.wait()

    async_to_sync(scenario)()


def test_a_foreign_origin_is_refused(run, alice):
    session = session_of(alice)

    async def scenario():
        socket = WebsocketCommunicator(
            application,
            f"/ws/runs/{run.pk}/logs/",
            headers=[
                (b"origin", b"http://evil.example"),
                (b"cookie", f"sessionid={session}".encode()),
            ],
        )
        connected, _ = await socket.connect()
        assert not connected

    async_to_sync(scenario)()


@pytest.mark.parametrize("username", ["alice", "carol", "bob"])
def test_members_get_stored_bytes_then_live_ones(run, request, username):
    session = session_of(request.getfixturevalue(username))
    logstore.append(run.pk, "stdout", 0, b"epoch 1\n")
    logstore.append(run.pk, "stderr", 0, b"warning: slow disk\n")

    async def scenario():
        socket = socket_for(session, run.pk)
        assert (await socket.connect())[0]
        assert await receive(socket, "status") == {
            "type": "status",
            "status": "Running",
            "final": False,
        }
        await follow(socket, {"stdout": 0, "stderr": 0})
        assert await receive_log(socket) == ("stdout", 0, b"epoch 1\n")
        assert await receive_log(socket) == ("stderr", 0, b"warning: slow disk\n")
        await receive(socket, "synced")

        await sync_to_async(stored)(run.pk, "stdout", b"epoch 2\n")
        assert await receive_log(socket) == ("stdout", 8, b"epoch 2\n")
        await socket.disconnect()

    async_to_sync(scenario)()


def test_a_reconnect_resumes_at_the_offset_without_losing_or_repeating_a_byte(run, alice):
    session = session_of(alice)

    async def scenario():
        seen = b""
        socket = socket_for(session, run.pk)
        await socket.connect()
        await receive(socket, "status")
        await follow(socket, {"stdout": 0})
        await receive(socket, "synced")
        for n in range(1, 4):
            await sync_to_async(stored)(run.pk, "stdout", f"line {n}\n".encode())
            _, offset, data = await receive_log(socket)
            assert offset == len(seen)
            seen += data
        await socket.disconnect()

        # Output goes on while nobody watches.
        for n in range(4, 7):
            await sync_to_async(stored)(run.pk, "stdout", f"line {n}\n".encode())

        socket = socket_for(session, run.pk)
        await socket.connect()
        await receive(socket, "status")
        await follow(socket, {"stdout": len(seen)})
        _, offset, data = await receive_log(socket)
        assert offset == len(seen)
        seen += data
        await receive(socket, "synced")
        await sync_to_async(stored)(run.pk, "stdout", b"line 7\n")
        seen += (await receive_log(socket))[2]
        await socket.disconnect()
        return seen

    seen = async_to_sync(scenario)()
    assert seen.decode() == "".join(f"line {n}\n" for n in range(1, 8))
    assert seen == logstore.read(run.pk, "stdout")[0]


def test_a_character_split_between_two_stores_arrives_byte_exact(run, alice):
    session = session_of(alice)
    text = "loss ↓ 0.25 — ok ✓\n".encode()
    cut = text.index("↓".encode()) + 1

    async def scenario():
        socket = socket_for(session, run.pk)
        await socket.connect()
        await receive(socket, "status")
        await follow(socket, {"stdout": 0})
        await receive(socket, "synced")
        await sync_to_async(stored)(run.pk, "stdout", text[:cut])
        first = await receive_log(socket)
        await sync_to_async(stored)(run.pk, "stdout", text[cut:])
        second = await receive_log(socket)
        await socket.disconnect()
        return first, second

    first, second = async_to_sync(scenario)()
    assert first[2] == text[:cut] and second[1] == cut
    assert (first[2] + second[2]).decode() == "loss ↓ 0.25 — ok ✓\n"


def test_a_new_stream_is_announced_and_the_end_of_the_run_reported(run, alice):
    session = session_of(alice)

    async def scenario():
        socket = socket_for(session, run.pk)
        await socket.connect()
        await receive(socket, "status")
        await follow(socket, {"stdout": 0})
        await receive(socket, "synced")
        await sync_to_async(stored)(run.pk, "node-1.stdout", b"node 1 ready\n")
        assert await receive(socket, "stream") == {
            "type": "stream",
            "stream": "node-1.stdout",
            "size": 13,
        }
        # The monitor stores the last bytes, then finishes the run.
        await sync_to_async(logstore.append)(run.pk, "stdout", 0, b"done\n")
        await sync_to_async(Run.objects.filter(pk=run.pk).update)(status=RunStatus.COMPLETED)
        await sync_to_async(live.notify_status)(run.pk, RunStatus.COMPLETED)
        assert await receive_log(socket) == ("stdout", 0, b"done\n")
        assert await receive(socket, "status") == {
            "type": "status",
            "status": "Completed",
            "final": True,
        }
        await socket.disconnect()

    async_to_sync(scenario)()


def test_bytes_arrive_even_when_a_wake_up_is_lost(run, alice, settings):
    settings.LOG_POLL_SECONDS = 1
    session = session_of(alice)

    async def scenario():
        socket = socket_for(session, run.pk)
        await socket.connect()
        await receive(socket, "status")
        await follow(socket, {"stdout": 0})
        await receive(socket, "synced")
        await sync_to_async(logstore.append)(run.pk, "stdout", 0, b"stored, nobody told\n")
        log = await receive_log(socket)
        await socket.disconnect()
        return log

    assert async_to_sync(scenario)() == ("stdout", 0, b"stored, nobody told\n")


def test_a_stored_log_is_replayed_with_its_streams_interleaved_as_they_arrived(run, alice):
    session = session_of(alice)
    for stream, line in [
        ("stdout", b"epoch 1\n"),
        ("stderr", b"warning: slow disk\n"),
        ("stdout", b"epoch 2\n"),
        ("stdout", b"saving\n"),
        ("stderr", b"Traceback: disk full\n"),
    ]:
        logstore.append(run.pk, stream, logstore.size(run.pk, stream), line)

    async def replay(offsets: dict) -> list:
        socket = socket_for(session, run.pk)
        assert (await socket.connect())[0]
        await receive(socket, "status")
        await follow(socket, offsets)
        frames = []
        while (message := await socket.receive_json_from(timeout=5))["type"] == "log":
            frames.append((message["stream"], base64.b64decode(message["data"])))
        assert message["type"] == "synced"
        await socket.disconnect()
        return frames

    assert async_to_sync(replay)({"stdout": 0, "stderr": 0}) == [
        ("stdout", b"epoch 1\n"),
        ("stderr", b"warning: slow disk\n"),
        ("stdout", b"epoch 2\nsaving\n"),
        ("stderr", b"Traceback: disk full\n"),
    ]
    # From the middle, as the viewer asks for a long log's tail: the same order after it.
    assert async_to_sync(replay)({"stdout": 10, "stderr": 0}) == [
        ("stderr", b"warning: slow disk\n"),
        ("stdout", b"och 2\nsaving\n"),
        ("stderr", b"Traceback: disk full\n"),
    ]


def test_a_log_stored_without_an_arrival_index_is_replayed_stream_by_stream(run, alice):
    session = session_of(alice)
    logstore.append(run.pk, "stdout", 0, b"epoch 1\n")
    logstore.append(run.pk, "stderr", 0, b"warning\n")
    (logstore.stream_path(run.pk, "stdout").parent / logstore.ARRIVAL_INDEX).unlink()

    async def scenario():
        socket = socket_for(session, run.pk)
        await socket.connect()
        await receive(socket, "status")
        await follow(socket, {"stdout": 0, "stderr": 0})
        assert await receive_log(socket) == ("stdout", 0, b"epoch 1\n")
        assert await receive_log(socket) == ("stderr", 0, b"warning\n")
        await receive(socket, "synced")
        await socket.disconnect()

    async_to_sync(scenario)()


def test_a_client_sending_follows_in_a_loop_is_closed_with_4429(run, alice):
    session = session_of(alice)
    logstore.append(run.pk, "stdout", 0, b"epoch 1\n")

    async def scenario():
        socket = socket_for(session, run.pk)
        await socket.connect()
        await receive(socket, "status")
        for _ in range(FOLLOW_BURST * 5):
            await follow(socket, {"stdout": 0})
        kinds = []
        while True:
            output = await socket.receive_output(timeout=5)
            if output["type"] == "websocket.close":
                break
            kinds.append(json.loads(output["text"])["type"])
        await socket.wait()
        return output["code"], kinds

    code, kinds = async_to_sync(scenario)()
    assert code == TOO_MANY_MESSAGES == 4429
    # Within the burst every follow was answered; then the socket was closed.
    assert FOLLOW_BURST <= kinds.count("synced") < FOLLOW_BURST + 3


def test_a_viewer_following_now_and_then_is_not_throttled(run, alice):
    session = session_of(alice)

    async def scenario():
        socket = socket_for(session, run.pk)
        await socket.connect()
        await receive(socket, "status")
        for _ in range(FOLLOW_BURST - 1):
            await follow(socket, {"stdout": 0})
            await receive(socket, "synced")
        # The allowance comes back at FOLLOW_PER_SECOND.
        await asyncio.sleep(1)
        for _ in range(int(FOLLOW_PER_SECOND)):
            await follow(socket, {"stdout": 0})
            await receive(socket, "synced")
        await sync_to_async(stored)(run.pk, "stdout", b"still here\n")
        assert (await receive_log(socket))[2] == b"still here\n"
        await socket.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize("frame", [{"text_data": "follow stdout"}, {"bytes_data": b"\x00\x01"}])
def test_a_message_that_is_not_json_is_refused_with_4400(run, alice, frame):
    session = session_of(alice)

    async def scenario():
        socket = socket_for(session, run.pk)
        await socket.connect()
        await receive(socket, "status")
        await socket.send_to(**frame)
        output = await socket.receive_output(timeout=5)
        await socket.wait()
        return output

    assert async_to_sync(scenario)() == {"type": "websocket.close", "code": 4400}


def test_a_quiet_viewer_stays_connected_past_the_layers_blocking_read(run, alice):
    session = session_of(alice)

    async def scenario():
        socket = socket_for(session, run.pk)
        await socket.connect()
        await receive(socket, "status")
        await follow(socket, {"stdout": 0})
        await receive(socket, "synced")
        # The channel layer waits 5 s at a time for news: a run silent for longer is common.
        assert await socket.receive_nothing(timeout=8)
        await sync_to_async(stored)(run.pk, "stdout", b"after a quiet spell\n")
        assert (await receive_log(socket))[2] == b"after a quiet spell\n"
        await socket.disconnect()

    async_to_sync(scenario)()
