"""Run logs over HTTP: `GET /api/v1/runs/{id}/logs` (what the CLI's "show output" reads).

Bytes are returned as they were stored (`application/octet-stream`), with
where they start and where to continue in headers, so a client can poll with
`offset=<X-Next-Offset>` or ask for `follow=1` and read one chunked response
until the run ends.
"""

import asyncio
from typing import Annotated

from channels.db import database_sync_to_async
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from ninja import Router, Schema
from ninja.errors import HttpError
from ninja.security import django_auth
from pydantic import Field

from runs import logstore
from runs.models import FINAL_STATUSES, Run
from studio.api import TokenAuth, api_membership

# The browser's viewer pages backwards with the session it already has.
router: Router = Router(auth=[TokenAuth(), django_auth], tags=["runs"])

MAX_LIMIT = 16 * 1024 * 1024
# No log is a terabyte: an offset beyond is a mistake, not a place a file can be read at.
MAX_OFFSET = 1 << 40
FOLLOW_POLL_SECONDS = 0.1
# Storage is polled often; the run's status (a database read) less so.
FOLLOW_STATUS_EVERY = 10


class LogStreamOut(Schema):
    name: str
    size: int


def visible_run(request, run_id: int) -> Run:
    run = Run.objects.select_related("workspace").filter(pk=run_id).first()
    if run is None:
        raise HttpError(404, "No such run")
    api_membership(request, run.workspace.slug)
    return run


def checked_stream(stream: str) -> str:
    if not logstore.STREAM_NAME.match(stream):
        raise HttpError(
            400, f"{stream!r} is not a log stream: see GET /api/v1/runs/{{id}}/logs/streams."
        )
    return stream


@router.get("/runs/{run_id}/logs/streams", response=list[LogStreamOut])
def run_log_streams(request, run_id: int):
    """The run's log streams (driver stdout/stderr, each node's) and their sizes in bytes."""
    run = visible_run(request, run_id)
    return [LogStreamOut(name=n, size=s) for n, s in logstore.streams(run.pk).items()]


@router.get("/runs/{run_id}/logs")
def run_logs(
    request,
    run_id: int,
    stream: str = "stdout",
    offset: Annotated[int, Field(ge=-MAX_OFFSET, le=MAX_OFFSET)] = 0,
    limit: int = 1024 * 1024,
    follow: bool = False,
):
    """Bytes of a log stream from `offset` (negative: that many bytes before the end).

    Without `follow`, at most `limit` bytes; the headers `X-Log-Offset` (where they
    start), `X-Next-Offset` (where to continue), `X-Log-Size` and `X-Run-Status`
    say the rest. With `follow=1` the response goes on, chunked, as the run
    prints, and ends when the run has ended and every stored byte was sent.
    """
    run = visible_run(request, run_id)
    checked_stream(stream)
    size = logstore.size(run.pk, stream)
    start = max(0, size + offset) if offset < 0 else offset
    headers = {"X-Log-Offset": str(start), "X-Run-Status": run.status}
    response: HttpResponseBase
    if follow:
        response = StreamingHttpResponse(
            follow_bytes(run.pk, stream, start), content_type="application/octet-stream"
        )
    else:
        data, after = logstore.read(run.pk, stream, start, max(0, min(limit, MAX_LIMIT)))
        response = HttpResponse(data, content_type="application/octet-stream")
        headers.update({"X-Next-Offset": str(after), "X-Log-Size": str(size)})
    for name, value in headers.items():
        response[name] = value
    return response


@database_sync_to_async
def run_is_final(run_id: int) -> bool:
    status = Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
    return status is None or status in FINAL_STATUSES


async def follow_bytes(run_id: int, stream: str, offset: int):
    polls = 0
    while True:
        # Read the status before storage: the monitor stores a run's last bytes
        # before it finishes the run, so an empty read after a final status is the end.
        final = polls % FOLLOW_STATUS_EVERY == 0 and await run_is_final(run_id)
        data, offset = await asyncio.to_thread(logstore.read, run_id, stream, offset)
        if data:
            yield data
            continue
        if final:
            return
        polls += 1
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
