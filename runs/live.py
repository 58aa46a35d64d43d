"""Wake-ups for live viewers of a run: the channel layer carries only news, storage the bytes.

A wake-up says how far a stream has been stored; every viewer then reads the
bytes it lacks from `runs.logstore`, so a lost or late wake-up loses nothing.
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def run_group(run_id: int) -> str:
    return f"run-{run_id}"


def notify_log(run_id: int, stream: str, offset: int, data: bytes) -> None:
    """Tell the run's viewers that `data` was stored at `offset` of `stream`."""
    _send(run_id, {"type": "log.stored", "stream": stream, "size": offset + len(data)})


def notify_status(run_id: int, status: str) -> None:
    _send(run_id, {"type": "run.status", "status": status})


def _send(run_id: int, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(run_group(run_id), message)
    except Exception as exc:  # viewers catch up from storage; a lost wake-up loses nothing
        log.warning("live update for run %s not sent: %s", run_id, exc)
