"""The live log websocket: `/ws/runs/<id>/logs/`.

The client says which streams it shows and how far it has each
(`{"type": "follow", "offsets": {"stdout": 1024, "stderr": 0}}`); the consumer
sends the stored bytes after those offsets, then new bytes as the run
monitor stores them. Bytes always come from `runs.logs.store`: a wake-up on the
run's group (or, should one be lost, the periodic check) only says that there
is more, so a reconnecting client resumes exactly where it stopped.

Frames to the client are JSON: `{"type": "log", "stream", "offset", "data"}`
with `data` base64 (a chunk may end inside a UTF-8 character; the browser
decodes each stream with a streaming TextDecoder), `{"type": "stream"}` when a
stream the client does not follow appears, `{"type": "synced"}` once the
stored bytes asked for by a follow were sent, and `{"type": "status"}`.

Close codes: 4400 when a message is not JSON text (JSON of another type than
"follow" is ignored); 4403 when the user may not (or no longer) see the run;
4429 when the client sends messages faster than a viewer does (a burst of
FOLLOW_BURST, then FOLLOW_PER_SECOND): each follow re-reads storage, so a loop
of them would keep the server busy. The browser reconnects after a 4429, with
back-off. docs/websocket.md is the protocol for client authors.
"""

import asyncio
import base64
import contextlib
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from runs import selectors
from runs.logs import store as logstore
from runs.logs.live import run_group
from runs.models import FINAL_STATUSES

BAD_MESSAGE = 4400
log = logging.getLogger(__name__)

NOT_ALLOWED = 4403
TOO_MANY_MESSAGES = 4429
# A viewer follows when it opens, reconnects or jumps to the end of the log.
FOLLOW_BURST = 10
FOLLOW_PER_SECOND = 2.0
CHUNK_BYTES = 512 * 1024
# A read this small comes from the page cache faster than a hop to a thread.
INLINE_READ_BYTES = 64 * 1024
# Status changes come as wake-ups too; the database is asked only every this many
# checks of storage, so a page full of viewers does not keep it busy.
STATUS_CHECK_EVERY = 10
# How long joining the run's group in Redis may take before the viewer goes on without it.
GROUP_JOIN_SECONDS = 5


class RunLogConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        self.offsets: dict[str, int] = {}
        self.announced: set[str] = set()
        self.status = ""
        self.lock = asyncio.Lock()
        self.poller: asyncio.Task | None = None
        self.joined = False
        self.in_group = False
        self.allowance = float(FOLLOW_BURST)
        self.allowance_at = time.monotonic()
        # Accept first so the browser sees our close code (a refused handshake
        # reaches it only as 1006) and knows not to retry.
        await self.accept()
        status = await database_sync_to_async(selectors.run_status_for_user)(
            user=self.scope["user"], run_id=self.run_id
        )
        if status is None:
            await self.close(code=NOT_ALLOWED)
            return
        self.joined = True
        try:
            # Wake-ups only make the viewer quicker: without Redis it catches up by polling.
            await asyncio.wait_for(
                self.channel_layer.group_add(run_group(self.run_id), self.channel_name),
                GROUP_JOIN_SECONDS,
            )
            self.in_group = True
        except Exception as exc:
            log.warning("run %s viewer gets no wake-ups, it polls: %r", self.run_id, exc)
        await self.send_status(status)
        self.poller = asyncio.create_task(self.poll())

    async def disconnect(self, code):
        if self.poller:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller
        if self.in_group:
            with contextlib.suppress(Exception):  # Redis away: the group entry expires
                await asyncio.wait_for(
                    self.channel_layer.group_discard(run_group(self.run_id), self.channel_name),
                    GROUP_JOIN_SECONDS,
                )

    def within_rate(self) -> bool:
        """Whether one more message keeps the client within its budget (a token bucket)."""
        now = time.monotonic()
        self.allowance = min(
            FOLLOW_BURST, self.allowance + (now - self.allowance_at) * FOLLOW_PER_SECOND
        )
        self.allowance_at = now
        if self.allowance < 1:
            return False
        self.allowance -= 1
        return True

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        # A client's mistake, not the server's: a close code of its own, not 1011.
        try:
            content = await self.decode_json(text_data)
        except (TypeError, ValueError):  # a binary frame, or text that is not JSON
            await self.close(code=BAD_MESSAGE)
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content, **kwargs):
        if not self.within_rate():
            await self.close(code=TOO_MANY_MESSAGES)
            return
        if not self.joined or not isinstance(content, dict) or content.get("type") != "follow":
            return
        offsets = content.get("offsets")
        if not isinstance(offsets, dict):
            return
        async with self.lock:
            self.offsets = {}
            for stream, offset in offsets.items():
                if (
                    isinstance(offset, int)
                    and offset >= 0
                    and logstore.STREAM_NAME.fullmatch(stream)
                ):
                    self.offsets[stream] = offset
                    self.announced.add(stream)
            # Stored bytes in the order they arrived, streams interleaved; then anything
            # the arrival index does not cover.
            order = await asyncio.to_thread(logstore.arrival_order, self.run_id, self.offsets)
            for stream, end in order:
                await self.catch_up(stream, end)
            for stream in self.offsets:
                await self.catch_up(stream)
            await self.send_json({"type": "synced"})

    async def log_stored(self, event):
        stream, size = event["stream"], event["size"]
        async with self.lock:
            if stream in self.offsets:
                if size > self.offsets[stream]:
                    await self.catch_up(stream, size)
            elif stream not in self.announced:
                self.announced.add(stream)
                await self.send_json({"type": "stream", "stream": stream, "size": size})

    async def run_status(self, event):
        async with self.lock:
            # The monitor stores a run's last bytes before it finishes the run.
            for stream in self.offsets:
                await self.catch_up(stream)
            await self.send_status(event["status"])

    async def catch_up(self, stream: str, size: int | None = None) -> None:
        """Send what is stored after the client's offset: up to `size` if known, else all."""
        while True:
            offset = self.offsets[stream]
            limit = CHUNK_BYTES if size is None else min(CHUNK_BYTES, size - offset)
            if limit <= 0:
                return
            if limit <= INLINE_READ_BYTES:
                data, after = logstore.read(self.run_id, stream, offset, limit)
            else:
                data, after = await asyncio.to_thread(
                    logstore.read, self.run_id, stream, offset, limit
                )
            if not data:
                return
            await self.send_json(
                {
                    "type": "log",
                    "stream": stream,
                    "offset": offset,
                    "data": base64.b64encode(data).decode("ascii"),
                }
            )
            self.offsets[stream] = after

    async def send_status(self, status: str) -> None:
        self.status = status
        await self.send_json(
            {"type": "status", "status": status, "final": status in FINAL_STATUSES}
        )

    async def poll(self) -> None:
        """Catch up without wake-ups too: they travel through Redis, which may drop them."""
        checks = 0
        while True:
            await asyncio.sleep(settings.LOG_POLL_SECONDS)
            sizes = await asyncio.to_thread(logstore.streams, self.run_id)
            for stream, size in sizes.items():
                await self.log_stored({"stream": stream, "size": size})
            checks += 1
            if checks % STATUS_CHECK_EVERY:
                continue
            status = await database_sync_to_async(selectors.run_status_for_user)(
                user=self.scope["user"], run_id=self.run_id
            )
            if status is None:
                await self.close(code=NOT_ALLOWED)
                return
            if status != self.status:
                await self.run_status({"status": status})
