"""`manage.py up` restarts a Trainyard process that dies, and nothing is lost.

Runs print on the local target and on an attached VM while the web server, a
Celery worker, beat and the run monitor are SIGKILLed one at a time; a
websocket client follows a run as the browser's viewer does, and a client
keeps asking the API while the web server is down.
"""

import asyncio
import re
import signal
import threading
import time
from functools import partial
from pathlib import Path

import psutil
import pytest
import redis
import requests

from studio.launcher import wait_for_port
from tests.services.live_stack import LiveStack, start_stack
from tests.studio.test_up_restart import (
    FINAL_STATUSES,
    attach_vm,
    get,
    stored_lines,
    submit,
    wait_until,
)
from tests.support.viewer import Viewer, session_cookie

pytestmark = pytest.mark.e2e

# The supervisor restarts a dead process within this many seconds.
RESTARTED_WITHIN = 5.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("ty-supervise"))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def api(stack) -> requests.Session:
    token = stack.manage("create_token", "alice", "--name", "supervise").stdout.strip()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    session.params = {"workspace": stack.workspace_slug}
    return session


@pytest.fixture(scope="module")
def staff(stack) -> requests.Session:
    """alice (staff) signed in, as the browser is: she sees /healthz's details."""
    session = requests.Session()
    session.cookies.set("sessionid", session_cookie(stack))
    return session


def role(process: psutil.Process) -> str:
    command = " ".join(process.cmdline())
    for name, word in (("web", "daphne"), ("beat", " beat "), ("worker", " worker ")):
        if word in command:
            return name
    return "monitor" if command.endswith(" monitor") else "redis"


def children(stack: LiveStack) -> dict[str, int]:
    """The pid of each process `up` started, by what it is."""
    found = {}
    for process in psutil.Process(stack.process.pid).children():
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                found[role(process)] = process.pid
        except psutil.NoSuchProcess:
            pass
    return found


def processes_check(staff: requests.Session, stack: LiveStack) -> dict:
    return staff.get(f"{stack.url}/healthz", timeout=30).json()["checks"]["processes"]


def kill(stack: LiveStack, name: str) -> tuple[int, float]:
    pid = children(stack)[name]
    psutil.Process(pid).send_signal(signal.SIGKILL)
    return pid, time.monotonic()


def restarted_after(stack: LiveStack, name: str, old_pid: int, killed_at: float) -> float:
    """Seconds from the kill until `up` runs a new process in the dead one's place."""
    wait_until(
        lambda: children(stack).get(name, old_pid) != old_pid, f"{name} to restart", timeout=90
    )
    return time.monotonic() - killed_at


def kill_and_wait_back(stack: LiveStack, staff: requests.Session, name: str) -> dict:
    old_pid, killed_at = kill(stack, name)
    restarted = restarted_after(stack, name, old_pid, killed_at)
    assert restarted < RESTARTED_WITHIN, f"{name} restarted after {restarted:.1f} s"
    assert wait_for_port("127.0.0.1", stack.port, timeout=60)
    answering = time.monotonic() - killed_at
    state = processes_check(staff, stack)["processes"][name]
    assert state["state"] == "running" and state["pid"] == children(stack)[name]
    assert state["last_exit"] == "killed by SIGKILL" and state["restarts"] >= 1
    return {"restarted": restarted, "answering": answering}


def follow(
    stack: LiveStack, cookie: str, run_id: int, into: bytearray
) -> tuple[Viewer, threading.Thread]:
    """A viewer of the run's stdout in a thread of its own, until the run ends."""
    viewer = Viewer(stack, cookie, run_id)

    def on_bytes(stream: str, data: bytes) -> None:
        into.extend(data)

    thread = threading.Thread(
        target=asyncio.run, args=(viewer.follow({"stdout": 0}, on_bytes),), daemon=True
    )
    thread.start()
    return viewer, thread


class Asker(threading.Thread):
    """Reads a run's log through the API over and over, as a client polling it does."""

    def __init__(self, stack: LiveStack, api: requests.Session, run_id: int) -> None:
        super().__init__(daemon=True)
        self.url = f"{stack.url}/api/v1/runs/{run_id}/logs"
        self.api, self.stop = api, threading.Event()
        self.answers: list[list[str]] = []
        self.refused: list[Exception] = []
        self.wrong: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                response = self.api.get(self.url, params={"stream": "stdout"}, timeout=30)
            except requests.ConnectionError as exc:
                self.refused.append(exc)
                time.sleep(0.05)
                continue
            except Exception as exc:  # anything else is an answer the client cannot retry
                self.wrong.append(repr(exc))
                continue
            if response.status_code != 200:
                self.wrong.append(f"{response.status_code} {response.text[:200]}")
            else:
                self.answers.append(response.text.splitlines())


def test_each_process_killed_mid_run_is_back_within_5_s_and_nothing_is_lost(
    stack, api, staff, sshd, shared_dir
):
    attach_vm(stack, api, sshd, "supervise-vm")
    go = shared_dir / "go"
    runs = {target: submit(stack, api, target, go) for target in ("local", "supervise-vm")}

    def printing(run_id: int) -> bool:
        status = get(stack, api, f"/runs/{run_id}").json()["status"]
        assert status not in FINAL_STATUSES, status
        return status == "Running" and len(stored_lines(stack, api, run_id)) >= 3

    def stored_more(run_id: int, count: int) -> bool:
        return len(stored_lines(stack, api, run_id)) > count + 2

    def ended(run_id: int) -> bool:
        return get(stack, api, f"/runs/{run_id}").json()["status"] in FINAL_STATUSES

    for run_id in runs.values():
        wait_until(partial(printing, run_id), f"run {run_id} to print")
    cookie = session_cookie(stack)
    seen = {target: bytearray() for target in runs}
    viewers = {
        target: follow(stack, cookie, run_id, seen[target]) for target, run_id in runs.items()
    }
    asker = Asker(stack, api, runs["local"])
    asker.start()

    figures = {}
    for name in ("web", "worker", "beat", "monitor"):
        counts = {run_id: len(stored_lines(stack, api, run_id)) for run_id in runs.values()}
        figures[name] = kill_and_wait_back(stack, staff, name)
        # The runs' output is still being stored after each kill.
        for run_id, count in counts.items():
            wait_until(
                partial(stored_more, run_id, count),
                f"run {run_id} to store more output after {name} restarted",
                timeout=60,
            )
    asker.stop.set()
    asker.join()
    print("\nrecovery seconds (restarted, answering):", figures)

    wait_until(lambda: staff.get(f"{stack.url}/healthz", timeout=30).ok, "/healthz to be ok", 60)
    go.touch()
    for target, run_id in runs.items():
        wait_until(partial(ended, run_id), f"run {run_id} to end")
        run = get(stack, api, f"/runs/{run_id}").json()
        assert (run["status"], run["exit_code"]) == ("Completed", 0), run
        count = int(get(stack, api, f"/runs/{run_id}/files/outputs/lines.txt").text)
        printed = [f"line {i}" for i in range(1, count + 1)]
        assert stored_lines(stack, api, run_id) == printed
        viewer, thread = viewers[target]
        thread.join(timeout=60)
        assert not thread.is_alive(), f"the viewer of {target} did not finish"
        assert seen[target].decode().splitlines() == printed
        assert viewer.misplaced == 0
        # It lost its websocket with the web server and resumed from its offsets.
        assert viewer.connections >= 2

    # A request in flight or sent while the web server was down was refused, never answered
    # wrongly: every answer is the log as it stood.
    assert asker.refused, "no request met the dead web server"
    assert not asker.wrong
    for answer in asker.answers:
        assert answer == [f"line {i}" for i in range(1, len(answer) + 1)]


RESTART_LINE = re.compile(
    r"monitor \(pid (?P<pid>\d+)\) killed by SIGKILL after \d+ s; "
    r"restarting in (?P<delay>[\d.]+) s"
)


def test_a_process_that_keeps_dying_is_restarted_later_each_time(stack, staff):
    waits = []
    for kill_number in range(3):
        old_pid, killed_at = kill(stack, "monitor")
        if kill_number == 2:
            # While it waits (4 s or more by now), /healthz fails and tells staff why.
            wait_until(lambda: not processes_check(staff, stack)["ok"], "/healthz to fail", 4)
            check = processes_check(staff, stack)
            assert check["detail"].startswith("monitor restarting")
            monitor = check["processes"]["monitor"]
            assert (monitor["state"], monitor["last_exit"]) == ("restarting", "killed by SIGKILL")
            assert monitor["next_restart_at"]
            anonymous = requests.get(f"{stack.url}/healthz", timeout=30)
            assert anonymous.status_code == 503
            assert anonymous.json()["checks"]["processes"] == {
                "ok": False,
                "detail": check["detail"],
            }
        waits.append(restarted_after(stack, "monitor", old_pid, killed_at))

    planned = {int(m["pid"]): float(m["delay"]) for m in RESTART_LINE.finditer(stack.output())}
    delays = list(planned.values())[-3:]
    # Each wait doubles the last (how far the series is depends on earlier deaths).
    assert delays[1] == 2 * delays[0] and delays[2] == 2 * delays[1], delays
    for took, delay in zip(waits, delays, strict=True):
        assert delay <= took < delay + RESTARTED_WITHIN, (waits, delays)
    log = Path(stack.data_dir / "logs" / "monitor.log").read_text()
    assert all(f"restarting in {delay:g} s" in log for delay in delays)
    print("\nmonitor restart waits:", waits)


def test_the_embedded_redis_restarts_on_its_data_and_everyone_reconnects(
    stack, api, staff, shared_dir
):
    socket = stack.data_dir / "redis.sock"
    before = redis.Redis(unix_socket_path=str(socket))
    before.set("supervise-kept", "yes")
    before.save()
    old_pid, killed_at = kill(stack, "redis")
    restarted = restarted_after(stack, "redis", old_pid, killed_at)
    assert restarted < RESTARTED_WITHIN
    # The web server, the worker (through the broker) and the monitor (its heartbeat in
    # the new Redis) all answer again by themselves.
    wait_until(lambda: staff.get(f"{stack.url}/healthz", timeout=30).ok, "/healthz to be ok", 60)
    healthy = time.monotonic() - killed_at
    print(f"\nredis back after {restarted:.1f} s, /healthz ok after {healthy:.1f} s")
    # Same socket, same data directory.
    assert redis.Redis(unix_socket_path=str(socket)).get("supervise-kept") == b"yes"

    # A run submitted now is dispatched by the worker and followed by the monitor.
    go = shared_dir / "go"
    go.touch()
    run_id = submit(stack, api, "local", go)
    wait_until(
        lambda: get(stack, api, f"/runs/{run_id}").json()["status"] in FINAL_STATUSES,
        f"run {run_id} to end",
    )
    run = get(stack, api, f"/runs/{run_id}").json()
    assert run["status"] == "Completed", run
    assert stored_lines(stack, api, run_id) == [f"line {i}" for i in range(1, 11)]
