"""The terminal websockets: `/ws/w/<slug>/compute/<name>/terminal/` (`?node=NAME` for a
node of a managed cluster); runs.terminal subclasses it for
`/ws/w/<slug>/runs/<run_id>/terminal/` (in a running run's working directory).

The browser sends JSON text frames: `{"type": "input", "data": "ls\\r"}` for
keystrokes and pastes, `{"type": "resize", "cols": 120, "rows": 40}` when the
terminal's size changes. The server sends the shell's output as binary frames
(bytes as the pty wrote them; xterm.js decodes the UTF-8) and JSON text frames
`{"type": "ready"}` once the shell is open and `{"type": "ended", "reason",
"message"}` before it closes.

Close codes: 4403 when the user is not a Contributor or Owner of the workspace
(or it does not exist for them); 4409 when the target has no terminal or it
cannot be opened; 4408 after TERMINAL_IDLE_SECONDS without input; 4413 for a
frame over MAX_FRAME characters; 4429 when input arrives faster than
INPUT_BYTES_PER_SECOND after a burst of INPUT_BURST_BYTES.

The session (who, on what, from when to when, how it ended) is stored as a
TerminalSession; what is typed or shown is never stored nor logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import queue
import threading
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from compute.models import TerminalEnd, TerminalSession
from compute.terminal import (
    DockerShell,
    Place,
    SshShell,
    TerminalError,
    clamp_size,
    open_shell,
    target_place,
)
from studio.models import Role

NOT_ALLOWED = 4403
IDLE = 4408
UNAVAILABLE = 4409
TOO_LARGE = 4413
TOO_MUCH_INPUT = 4429
MAX_FRAME = 16 * 1024
INPUT_BURST_BYTES = 256 * 1024
INPUT_BYTES_PER_SECOND = 64 * 1024
# Output waiting for a slow browser: the shell is paused (no reads) beyond this.
OUTPUT_QUEUE = 64


def _session_start(place: Place, user) -> TerminalSession:
    return TerminalSession.objects.create(
        target=place.target,
        user=user,
        username=user.get_username(),
        node_name=place.node.name if place.node else "",
        run_id=place.run_id,
    )


def _session_end(session: TerminalSession, end: str) -> None:
    TerminalSession.objects.filter(pk=session.pk, ended_at__isnull=True).update(
        ended_at=timezone.now(), end=end
    )


class TerminalConsumer(AsyncWebsocketConsumer):
    """A shell on a target or one of its nodes."""

    # Who may connect, for the authorization matrix: readers are refused too.
    required_role = Role.CONTRIBUTOR

    def place(self, user) -> Place | None:
        kwargs = self.scope["url_route"]["kwargs"]
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        node = (query.get("node") or [""])[0][:64]
        return target_place(user, kwargs["slug"], kwargs["name"], node)

    async def connect(self) -> None:
        self.shell: SshShell | DockerShell | None = None
        self.session: TerminalSession | None = None
        self.end = TerminalEnd.CLOSED
        self.tasks: list[asyncio.Task] = []
        self.writes: queue.Queue = queue.Queue()
        self.closed = threading.Event()
        self.last_input = time.monotonic()
        self.allowance = float(INPUT_BURST_BYTES)
        self.allowance_at = time.monotonic()
        # Accept first so the browser sees our close code (a refused handshake reaches it as 1006).
        await self.accept()
        user = self.scope["user"]
        place = await database_sync_to_async(self.place)(user)
        if place is None:
            await self.close(code=NOT_ALLOWED)
            return
        if place.problem:
            await self.finish("unavailable", place.problem, UNAVAILABLE)
            return
        try:
            self.shell = await asyncio.to_thread(open_shell, place, cols=80, rows=24)
        except TerminalError as exc:
            await self.finish("unavailable", str(exc), UNAVAILABLE)
            return
        self.session = await database_sync_to_async(_session_start)(place, user)
        await self.send(text_data=json.dumps({"type": "ready", "target": place.label}))
        loop = asyncio.get_running_loop()
        output: asyncio.Queue = asyncio.Queue(OUTPUT_QUEUE)
        threading.Thread(target=self._read, args=(loop, output), daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()
        self.tasks = [
            asyncio.create_task(self.forward(output)),
            asyncio.create_task(self.watch_idle()),
        ]

    def _read(self, loop: asyncio.AbstractEventLoop, output: asyncio.Queue) -> None:
        """The shell's output into `output`, waiting while the browser is behind."""
        shell = self.shell
        assert shell is not None
        while not self.closed.is_set():
            data = shell.read()
            try:
                delivered = asyncio.run_coroutine_threadsafe(output.put(data), loop)
            except RuntimeError:
                return  # the loop is gone
            while not self.closed.is_set():
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    delivered.result(timeout=1)
                    break
            else:
                delivered.cancel()
                return
            if not data:
                return

    def _write(self) -> None:
        """Input and resizes, in order, on their own thread: a shell not reading blocks only it."""
        shell = self.shell
        assert shell is not None
        while (item := self.writes.get()) is not None:
            try:
                if isinstance(item, bytes):
                    shell.write(item)
                else:
                    shell.resize(*item)
            except OSError:
                return

    async def forward(self, output: asyncio.Queue) -> None:
        while data := await output.get():
            await self.send(bytes_data=data)
        self.end = TerminalEnd.SHELL_EXIT
        await self.finish("exit", "The shell exited.", 1000)

    async def watch_idle(self) -> None:
        limit = settings.TERMINAL_IDLE_SECONDS
        while True:
            quiet = time.monotonic() - self.last_input
            if quiet >= limit:
                break
            await asyncio.sleep(limit - quiet)
        self.end = TerminalEnd.IDLE
        minutes = f"{limit / 60:g} minutes" if limit >= 60 else f"{limit} seconds"
        await self.finish("idle", f"Closed after {minutes} without input: open it again.", IDLE)

    async def finish(self, reason: str, message: str, code: int) -> None:
        await self.send(
            text_data=json.dumps({"type": "ended", "reason": reason, "message": message})
        )
        await self.close(code=code)

    def within_budget(self, size: int) -> bool:
        """Whether `size` more bytes of input keep the client within its budget (a token bucket)."""
        now = time.monotonic()
        self.allowance = min(
            INPUT_BURST_BYTES,
            self.allowance + (now - self.allowance_at) * INPUT_BYTES_PER_SECOND,
        )
        self.allowance_at = now
        if size > self.allowance:
            return False
        self.allowance -= size
        return True

    async def receive(self, text_data=None, bytes_data=None):
        if self.shell is None:
            return
        if text_data is None or len(text_data) > MAX_FRAME:
            await self.close(code=TOO_LARGE)
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "input" and isinstance(message.get("data"), str):
            data = message["data"].encode("utf-8", errors="replace")
            if not self.within_budget(len(data)):
                await self.close(code=TOO_MUCH_INPUT)
                return
            self.last_input = time.monotonic()
            self.writes.put(data)
        elif message.get("type") == "resize":
            size = clamp_size(message.get("cols"), message.get("rows"))
            if size is not None:
                self.writes.put(size)

    async def disconnect(self, code):
        self.closed.set()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.shell is not None:
            self.writes.put(None)
            await asyncio.to_thread(self.shell.close)
        if self.session is not None:
            await database_sync_to_async(_session_end)(self.session, self.end)
