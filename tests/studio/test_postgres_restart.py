"""PostgreSQL restarts while a run prints: every Trainyard process reconnects.

Trainyard is started with `manage.py up` against a PostgreSQL cluster of the test's own
(DATABASE_URL); the test stops the server (fast: every connection is cut, open
transactions roll back) while a run prints, keeps it down a few seconds, and starts it
again on the same port. Meanwhile the API answers 503, saying to try again. The web
server, the Celery worker and beat and the run monitor must all carry on: the run
completes with its log exact, and a run submitted afterwards is started and followed
to its end.
"""

import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

import pytest

from tests.services.postgres import start_postgres, start_postgres_again, stop_postgres
from tests.support.live_runs import (
    api_session,
    counted_lines,
    has_status,
    run_of,
    stack_started,
    stored_log,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

DOWN_SECONDS = 5


@pytest.fixture
def postgres_and_stack():
    root = Path(tempfile.mkdtemp(prefix="ty-pg-restart-"))
    root.chmod(0o755)  # the server runs as the postgres user
    try:
        url = start_postgres(root / "pg")
        stack = stack_started(root / "data", extra_env={"DATABASE_URL": url})
        try:
            yield root / "pg", stack
        finally:
            stack.stop()
    finally:
        stop_postgres(root / "pg")
        shutil.rmtree(root, ignore_errors=True)


def test_every_process_reconnects_after_postgresql_restarts_mid_run(
    postgres_and_stack, shared_dir, record_property
):
    pg_dir, stack = postgres_and_stack
    api = api_session(stack)
    go = shared_dir / "go"
    run_id = submit(stack, api, go)
    wait_until(
        lambda: (
            run_of(stack, api, run_id)["status"] == "Running"
            and stored_log(stack, api, run_id).count("\n") >= 5
        ),
        "the run to be Running with output stored",
    )
    printed = stored_log(stack, api, run_id).count("\n")

    stop_postgres(pg_dir)
    down_at = time.monotonic()
    # Meanwhile a request is answered at once, saying to send it again.
    away = api.get(f"{stack.url}/api/v1/runs/{run_id}", timeout=30)
    assert away.status_code == 503, away.text
    assert "send the request again in a moment" in away.json()["detail"]
    time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_at)))
    start_postgres_again(pg_dir)
    back_at = time.monotonic()
    # Connections kept from before the restart are checked before use, not used and failed.
    for _ in range(8):
        again = api.get(f"{stack.url}/api/v1/runs/{run_id}", timeout=30)
        assert again.status_code == 200, again.text
    # The monitor stores what the run printed while the database was away, and goes on.
    wait_until(lambda: api.get(f"{stack.url}/healthz", timeout=30).ok, "/healthz")
    web = time.monotonic() - back_at
    wait_until(
        lambda: stored_log(stack, api, run_id).count("\n") > printed + 5 * DOWN_SECONDS,
        "the monitor to store the output printed meanwhile",
    )
    stored = time.monotonic() - back_at
    # The worker and beat reconnect too: a new run is dispatched, started and followed.
    after = submit(stack, api, go)
    wait_until(lambda: run_of(stack, api, after)["status"] == "Running", "the new run to start")
    started = time.monotonic() - back_at

    go.touch()
    for each in (run_id, after):
        wait_until(partial(has_status, stack, api, each, "Completed", "Failed"), "the end")
        run = run_of(stack, api, each)
        assert (run["status"], run["exit_code"]) == ("Completed", 0), run
        counted_lines(stored_log(stack, api, each))
    record_property("healthz_after_seconds", round(web, 1))
    record_property("log_caught_up_after_seconds", round(stored, 1))
    record_property("new_run_running_after_seconds", round(started, 1))
    print(f"healthz {web:.1f} s, log {stored:.1f} s, new run Running {started:.1f} s")
