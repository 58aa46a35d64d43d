"""Wake-ups for live viewers of a run: the channel layer carries only news, storage the bytes.

A wake-up says how far a stream has been stored; every viewer then reads the
bytes it lacks from `runs.logstore`, so a lost or late wake-up loses nothing.

The monitor sends many wake-ups a second from its follower threads. They go
through one event loop per process, kept in a thread of its own: `async_to_sync`
would build a new loop, and with it a new Redis connection, for every one.
"""

import asyncio
import logging
import os
import threading

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

_sender: tuple[int, asyncio.AbstractEventLoop] | None = None
_sender_lock = threading.Lock()


def run_group(run_id: int) -> str:
    return f"run-{run_id}"


def notify_log(run_id: int, stream: str, offset: int, data: bytes) -> None:
    """Tell the run's viewers that `data` was stored at `offset` of `stream`."""
    _send(run_id, {"type": "log.stored", "stream": stream, "size": offset + len(data)})


def notify_status(run_id: int, status: str) -> None:
    _send(run_id, {"type": "run.status", "status": status})


def _sender_loop() -> asyncio.AbstractEventLoop:
    """This process's sending loop (a forked child, like a Celery worker, starts its own)."""
    global _sender
    with _sender_lock:
        if _sender is None or _sender[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="live-wake-ups", daemon=True).start()
            _sender = (os.getpid(), loop)
        return _sender[1]


def _send(run_id: int, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    future = asyncio.run_coroutine_threadsafe(
        layer.group_send(run_group(run_id), message), _sender_loop()
    )
    future.add_done_callback(lambda done: _report(run_id, done))


def _report(run_id: int, done) -> None:
    # Viewers catch up from storage on their own; a lost wake-up only delays them.
    if not done.cancelled() and done.exception() is not None:
        log.warning("live update for run %s not sent: %s", run_id, done.exception())
