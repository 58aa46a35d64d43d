"""The state of each part Trainyard needs, for /healthz and the Settings page."""

import os
import socket
import threading
import time
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.db import connection

from studio.celery import app
from studio.disk import disk_free_bytes, disk_free_warning
from studio.supervisor import supervisor_state
from studio.units import human_bytes

MONITOR_KEY_PREFIX = "trainyard:monitor:"


def redis_client(timeout: float = 1.0) -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout
    )


def monitor_heartbeat(client: redis.Redis | None = None) -> None:
    """Called by each run monitor every MONITOR_HEARTBEAT_SECONDS."""
    client = client or redis_client()
    key = f"{MONITOR_KEY_PREFIX}{socket.gethostname()}:{os.getpid()}"
    client.set(key, str(time.time()), ex=settings.MONITOR_HEARTBEAT_SECONDS * 3)


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True, "detail": connection.vendor}


def check_redis() -> dict:
    redis_client().ping()
    return {"ok": True, "detail": "embedded" if settings.REDIS_EMBEDDED else "external"}


# A ping goes to every worker through the broker and waits up to a second for their
# answers: however often /healthz is asked, each process pings at most once per this.
WORKER_CHECK_SECONDS = 1.0
_worker_lock = threading.Lock()
_worker_last: tuple[float, dict | Exception] | None = None


def ping_workers() -> dict:
    replies = app.control.ping(timeout=1.0)
    checked_at = datetime.now(UTC).isoformat()
    if not replies:
        return {
            "ok": False,
            "detail": "no Celery worker answered within 1 s",
            "checked_at": checked_at,
        }
    return {"ok": True, "detail": f"{len(replies)} worker(s) answered", "checked_at": checked_at}


def check_worker() -> dict:
    """The last ping's answer (or error) while it is under WORKER_CHECK_SECONDS old."""
    global _worker_last
    with _worker_lock:
        if _worker_last is None or time.monotonic() - _worker_last[0] >= WORKER_CHECK_SECONDS:
            answer: dict | Exception
            try:
                answer = ping_workers()
            except Exception as exc:  # the error is the answer, until the next ping
                answer = exc
            _worker_last = (time.monotonic(), answer)
        answer = _worker_last[1]
    if isinstance(answer, Exception):
        raise answer
    return answer


def check_monitor() -> dict:
    keys = list(redis_client().scan_iter(match=f"{MONITOR_KEY_PREFIX}*", count=100))
    if not keys:
        return {"ok": False, "detail": "no run monitor heartbeat: is `manage.py monitor` running?"}
    return {"ok": True, "detail": f"{len(keys)} monitor(s) alive"}


def check_processes() -> dict:
    state = supervisor_state()
    if state is None:
        return {
            "ok": True,
            "detail": "not started by `manage.py up`: what started Trainyard's processes "
            "restarts them",
        }
    processes = state["processes"]
    down = [name for name, p in processes.items() if p["state"] != "running"]
    if down:
        detail = ", ".join(
            f"{name} restarting (restart {processes[name]['restarts'] + 1})" for name in down
        )
    else:
        detail = f"{', '.join(processes)} running"
    return {"ok": not down, "detail": detail, "processes": processes}


def check_disk() -> dict:
    """Free space in DATA_DIR: a warning, not a failure, below DISK_FREE_WARN_MB (the studio
    still answers, and freeing space is done through it as much as beside it)."""
    warning = disk_free_warning()
    if warning:
        return {"ok": True, "warning": True, "detail": warning}
    return {"ok": True, "detail": f"{human_bytes(disk_free_bytes())} free in DATA_DIR"}


CHECKS = {
    "database": check_database,
    "redis": check_redis,
    "worker": check_worker,
    "monitor": check_monitor,
    "processes": check_processes,
    "disk": check_disk,
}


# An error names hosts, users and paths: only staff see it, anyone else this.
HIDDEN_ERROR = "not answering: sign in as staff to see the error"
# Parts of a check's answer that only staff see, for the same reason.
STAFF_ONLY = ("processes",)
# What a part being down means to users, said before its error.
WHILE_DOWN = {
    "redis": (
        "Redis is not answering: live logs refresh every few seconds instead of at once, "
        "and runs submitted meanwhile wait Queued until it is back"
    ),
}


def health(*, show_errors: bool) -> dict:
    results = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
            if not show_errors:
                for key in STAFF_ONLY:
                    results[name].pop(key, None)
        except Exception as exc:  # a failing part is the answer here, not an error
            detail = f"{type(exc).__name__}: {exc}" if show_errors else HIDDEN_ERROR
            if name in WHILE_DOWN:
                detail = f"{WHILE_DOWN[name]} ({detail})"
            results[name] = {"ok": False, "detail": detail}
    return {
        "ok": all(r["ok"] for r in results.values()),
        "warnings": [name for name, r in results.items() if r.get("warning")],
        "checks": results,
    }
