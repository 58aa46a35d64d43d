import html
import threading
import time
from datetime import datetime, timedelta

from django.test import Client
from django.urls import reverse

from studio.health import HIDDEN_ERROR, WHILE_DOWN
from tests.conftest import client_for


def test_healthz_reports_a_stopped_redis_as_down(db, client, settings, spare_redis):
    settings.REDIS_URL = spare_redis.url
    up = client.get("/healthz").json()
    assert up["checks"]["redis"]["ok"] is True
    assert up["checks"]["database"]["ok"] is True

    spare_redis.stop()
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["checks"]["redis"]["ok"] is False
    assert "runs submitted meanwhile wait Queued" in body["checks"]["redis"]["detail"]
    assert body["checks"]["database"]["ok"] is True


def test_healthz_shows_why_a_part_is_down_only_to_staff(db, settings, spare_redis, alice, bob):
    settings.REDIS_URL = spare_redis.url
    spare_redis.stop()
    socket_path = spare_redis.url.removeprefix("unix://")
    alice.is_staff = True
    alice.save()
    for caller in (Client(), client_for(bob)):
        response = caller.get("/healthz")
        assert response.status_code == 503
        redis_check = response.json()["checks"]["redis"]
        assert redis_check == {"ok": False, "detail": f"{WHILE_DOWN['redis']} ({HIDDEN_ERROR})"}
        assert socket_path not in response.content.decode()

    staff_sees = client_for(alice).get("/healthz").json()["checks"]["redis"]
    assert staff_sees["ok"] is False
    assert staff_sees["detail"].startswith(f"{WHILE_DOWN['redis']} (ConnectionError")
    assert socket_path in staff_sees["detail"]


def test_healthz_without_worker_or_monitor_is_503(db, client):
    body = client.get("/healthz")
    assert body.status_code == 503
    checks = body.json()["checks"]
    assert checks["worker"]["ok"] is False and "no Celery worker" in checks["worker"]["detail"]
    assert checks["monitor"]["ok"] is False and "manage.py monitor" in checks["monitor"]["detail"]


def test_healthz_pings_the_workers_at_most_once_a_second(db):
    """Many callers at once, for 2.5 s: each answer says when its ping was, and there are
    at most one such time per second however many answers there are."""
    answers: list[dict] = []
    lock = threading.Lock()
    started = time.monotonic()

    def ask() -> None:
        client = Client()
        while time.monotonic() - started < 2.5:
            worker = client.get("/healthz").json()["checks"]["worker"]
            with lock:
                answers.append(worker)

    callers = [threading.Thread(target=ask) for _ in range(8)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    pings = sorted({answer["checked_at"] for answer in answers})
    assert len(answers) >= 4 * len(pings), (len(answers), pings)
    assert len(pings) <= 4, pings
    times = [datetime.fromisoformat(p) for p in pings]
    assert all(b - a >= timedelta(seconds=1) for a, b in zip(times, times[1:], strict=False))


def test_healthz_and_the_settings_page_warn_when_data_dir_runs_low_on_space(
    db, client, settings, small_disk, as_alice, workspace
):
    settings.DATA_DIR = small_disk.path
    settings.DISK_FREE_WARN_MB = 4
    body = client.get("/healthz").json()
    assert body["checks"]["disk"] == {"ok": True, "detail": "8.0 MB free in DATA_DIR"}
    assert body["warnings"] == []
    settings_page = reverse("workspace_settings", args=[workspace.slug])
    assert "The studio's disk" not in html.unescape(as_alice.get(settings_page).content.decode())

    small_disk.fill(leave=1024 * 1024)
    body = client.get("/healthz").json()
    warning = (
        "only 1.0 MB free in DATA_DIR (below DISK_FREE_WARN_MB = 4 MB): free space there "
        "before runs' logs and outputs and new snapshots have to wait for it"
    )
    assert body["checks"]["disk"] == {"ok": True, "warning": True, "detail": warning}
    assert body["warnings"] == ["disk"]
    page = html.unescape(as_alice.get(settings_page).content.decode())
    assert f"The studio's disk: {warning}." in page

    small_disk.free()
    assert client.get("/healthz").json()["warnings"] == []
