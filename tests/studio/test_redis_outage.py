"""Redis (external, as REDIS_URL names it) goes away for 30 s mid-run, then returns.

Trainyard is started with `manage.py up` against a redis-server of the test's own on a
loopback port; the test stops that server while a run prints and a viewer follows it
live, submits a run during the outage, and starts Redis again on the same port.
"""

import tempfile
import time
from functools import partial
from pathlib import Path

import pytest

from tests.services.live_stack import free_port
from tests.services.redis_server import RedisServer
from tests.support.live_runs import (
    LogViewer,
    api_session,
    counted_lines,
    has_status,
    run_of,
    session_cookie,
    stack_started,
    stored_log,
    submit,
    submit_request,
    wait_until,
)

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 30


@pytest.fixture
def redis_and_stack():
    with tempfile.TemporaryDirectory(prefix="ty-redis-outage-") as tmp:
        redis = RedisServer(Path(tmp) / "redis" / "redis.sock", port=free_port()).start()
        stack = stack_started(Path(tmp) / "data", extra_env={"REDIS_URL": redis.tcp_url})
        try:
            yield redis, stack
        finally:
            stack.stop()
            redis.stop()


def test_runs_viewers_and_submits_survive_redis_going_away_for_30_s(
    redis_and_stack, shared_dir, record_property
):
    redis, stack = redis_and_stack
    api = api_session(stack)
    go = shared_dir / "go"
    before = submit(stack, api, go)
    wait_until(
        lambda: (
            run_of(stack, api, before)["status"] == "Running"
            and stored_log(stack, api, before).count("\n") >= 5
        ),
        "the run to be Running with output stored",
    )
    viewer = LogViewer(stack, session_cookie(stack), before)
    wait_until(lambda: viewer.data.count(b"\n") >= 5, "the viewer to show the output")

    redis.stop()
    down_at = time.monotonic()
    # A submit meanwhile is taken at once, never hangs nor fails: the run waits Queued.
    started = time.monotonic()
    response = submit_request(stack, api, go)
    submit_seconds = time.monotonic() - started
    assert response.status_code == 201, response.text
    assert submit_seconds < 10, submit_seconds
    during = response.json()["id"]
    # What no periodic task would do later says to try again.
    attach = api.post(
        f"{stack.url}/api/v1/computes/vm",
        json={
            "name": "later-vm",
            "address": "127.0.0.1",
            "port": 1,
            "username": "nobody",
            "authentication": "password",
            "password": "x",
        },
        timeout=30,
    )
    assert attach.status_code == 503, attach.text
    assert attach.json()["code"] == "queue_unavailable"
    assert "Try again in a minute" in attach.json()["detail"]
    health = api.get(f"{stack.url}/healthz", timeout=30)
    assert health.status_code == 503
    assert health.json()["checks"]["redis"]["ok"] is False
    assert health.json()["checks"]["database"]["ok"] is True
    # Pages do not need Redis: the run's page still shows, and the run goes on printing.
    page = api.get(f"{stack.url}/api/v1/runs/{before}", timeout=30)
    assert page.ok and page.json()["status"] == "Running"
    printed = stored_log(stack, api, before).count("\n")
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
    assert stored_log(stack, api, before).count("\n") > printed, "the monitor stopped storing"
    assert run_of(stack, api, during)["status"] == "Queued"

    redis.start()
    back_at = time.monotonic()
    wait_until(lambda: viewer.received_at > back_at, "the viewer to get new output")
    resumed = viewer.received_at - back_at
    wait_until(lambda: run_of(stack, api, during)["status"] == "Running", "the run submitted")
    dispatched = time.monotonic() - back_at
    healthy = wait_until(
        lambda: api.get(f"{stack.url}/healthz", timeout=30).status_code == 200,
        "/healthz to say every part answers again",
        timeout=60,
    )

    go.touch()
    for run_id in (before, during):
        wait_until(partial(has_status, stack, api, run_id, "Completed"), "the end")
    # Every line once, in order, in storage and in the viewer that lived through it.
    log = stored_log(stack, api, before)
    counted_lines(log)
    assert viewer.wait(timeout=30) == log
    counted_lines(stored_log(stack, api, during))
    record_property("submit_seconds", round(submit_seconds, 2))
    record_property("dispatched_after_seconds", round(dispatched, 1))
    record_property("viewer_resumed_after_seconds", round(resumed, 1))
    print(
        f"submit {submit_seconds:.2f} s, dispatch {dispatched:.1f} s, "
        f"viewer {resumed:.1f} s, healthz {healthy:.1f} s after the dispatch"
    )
