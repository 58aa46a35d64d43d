"""Run logs over HTTP: `GET /api/v1/runs/{id}/logs` (what the CLI's "show output" reads).

Bytes are returned as they were stored (`application/octet-stream`), with
where they start and where to continue in headers, so a client can poll with
`offset=<X-Next-Offset>` or ask for `follow=1` and read one chunked response
until the run ends. A followed response also ends as soon as its caller may no
longer read the run: removed from the workspace, deactivated, or their token
revoked or expired (checked every FOLLOW_CHECK_SECONDS).
"""

import asyncio
import time
from typing import Annotated

from channels.db import database_sync_to_async
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from ninja.security import django_auth

from runs import selectors
from runs.logs import store as logstore
from runs.models import FINAL_STATUSES, Run
from studio.api_auth import TokenAuth, api_membership
from studio.models import ApiToken

# The browser's viewer pages backwards with the session it already has.
router: Router = Router(auth=[TokenAuth(), django_auth], tags=["runs"])

MAX_LIMIT = 16 * 1024 * 1024
# Byte offsets from either end of a stream; a file is never near this large.
MAX_LOG_OFFSET = 2**53
LogOffset = Annotated[int, Query(ge=-MAX_LOG_OFFSET, le=MAX_LOG_OFFSET)]
LogLimit = Annotated[int, Query(ge=0, le=MAX_LIMIT, description=f"At most {MAX_LIMIT} bytes.")]
FOLLOW_POLL_SECONDS = 0.1
# Storage is polled often; the run's status and the caller's access (database reads) less so.
FOLLOW_CHECK_SECONDS = 1.0


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
    if not logstore.STREAM_NAME.fullmatch(stream):
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
    offset: LogOffset = 0,
    limit: LogLimit = 1024 * 1024,
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
            follow_bytes(run.pk, stream, start, request.user, getattr(request, "api_token", None)),
            content_type="application/octet-stream",
        )
    else:
        data, after = logstore.read(run.pk, stream, start, limit)
        response = HttpResponse(data, content_type="application/octet-stream")
        headers.update({"X-Next-Offset": str(after), "X-Log-Size": str(size)})
    for name, value in headers.items():
        response[name] = value
    return response


@database_sync_to_async
def follow_status(run_id: int, user, token: ApiToken | None) -> str | None:
    """The run's status while `user` (through `token`, if one) may still read it, else None."""
    if token is not None:
        token = ApiToken.objects.filter(pk=token.pk).first()
        if token is None or not token.is_usable:
            return None
    return selectors.run_status_for_user(user=user, run_id=run_id)


async def follow_bytes(run_id: int, stream: str, offset: int, user, token: ApiToken | None):
    checked_at = -FOLLOW_CHECK_SECONDS
    while True:
        # Read the status before storage: the monitor stores a run's last bytes
        # before it finishes the run, so an empty read after a final status is the end.
        final = False
        if time.monotonic() - checked_at >= FOLLOW_CHECK_SECONDS:
            checked_at = time.monotonic()
            status = await follow_status(run_id, user, token)
            if status is None:
                return
            final = status in FINAL_STATUSES
        data, offset = await asyncio.to_thread(logstore.read, run_id, stream, offset)
        if data:
            yield data
            continue
        if final:
            return
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
