"""Wake-ups for live viewers of a run: the channel layer carries only news, storage the bytes.

A wake-up says how far a stream has been stored; every viewer then reads the
bytes it lacks from `runs.logs.store`, so a lost or late wake-up loses nothing.

The monitor sends many wake-ups a second from its follower threads. They are
handed to one event loop per process, in a thread of its own (`async_to_sync`
would build a new loop, and with it a new Redis connection, for every one),
where a few senders drain them. Wake-ups of a stream not yet sent are merged:
only the newest size matters to a viewer.
"""

import asyncio
import logging
import os
import threading

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

SENDERS = 4


def run_group(run_id: int) -> str:
    return f"run-{run_id}"


def notify_log(run_id: int, stream: str, offset: int, data: bytes) -> None:
    """Tell the run's viewers that `data` was stored at `offset` of `stream`."""
    message = {"type": "log.stored", "stream": stream, "size": offset + len(data)}
    _send((run_id, "log", stream), message)


def notify_status(run_id: int, status: str) -> None:
    _send((run_id, "status", ""), {"type": "run.status", "status": status})


def _send(key: tuple, message: dict) -> None:
    if get_channel_layer() is not None:
        _outbox().put(key, message)


class Outbox:
    def __init__(self) -> None:
        self.pending: dict[tuple, dict] = {}
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.ready = asyncio.Event()
        threading.Thread(target=self.loop.run_forever, name="live-wake-ups", daemon=True).start()
        for _ in range(SENDERS):
            asyncio.run_coroutine_threadsafe(self.drain(), self.loop)

    def put(self, key: tuple, message: dict) -> None:
        with self.lock:
            self.pending[key] = message
        self.loop.call_soon_threadsafe(self.ready.set)

    def take(self) -> tuple[tuple, dict] | None:
        with self.lock:
            if not self.pending:
                return None
            key = next(iter(self.pending))
            return key, self.pending.pop(key)

    async def drain(self) -> None:
        layer = get_channel_layer()
        while True:
            item = self.take()
            if item is None:
                self.ready.clear()
                item = self.take()
                if item is None:
                    await self.ready.wait()
                    continue
            (run_id, _, _), message = item
            try:
                await layer.group_send(run_group(run_id), message)
            except Exception as exc:  # viewers catch up from storage; a lost wake-up only delays
                log.warning("live update for run %s not sent: %s", run_id, exc)


_outboxes: dict[int, Outbox] = {}
_outboxes_lock = threading.Lock()


def _outbox() -> Outbox:
    """This process's outbox (a forked child, like a Celery worker, starts its own)."""
    with _outboxes_lock:
        pid = os.getpid()
        if pid not in _outboxes:
            _outboxes[pid] = Outbox()
        return _outboxes[pid]
