"""The chaos soak: many short runs on several targets while Trainyard's processes are killed.

A `Soak` drives a stack started by `manage.py up` through the API only, as a user's
script would: it keeps a few runs in flight on each target, and a killer thread sends
SIGKILL to one of `up`'s processes (web server, Celery worker, beat, run monitor,
embedded Redis) at a fixed interval and times how long until a new one runs (and, for
the web server, answers). Every run prints a known text and writes a known output file,
so at the end each stored log is compared with what the script printed, by SHA-256.
Used by `tests/studio/test_chaos.py` (short) and `bench/bench_chaos.py` (long).
"""

from __future__ import annotations

import hashlib
import io
import random
import signal
import socket
import statistics
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

import docker
import psutil
import requests

from tests.services.live_stack import LiveStack

FINAL_STATUSES = ("Completed", "Failed", "Canceled")

# Prints a text fixed by its seed, a line every few ms, then writes it as an output too.
SCRIPT = """\
import hashlib, sys, time
from pathlib import Path
seed = sys.argv[1]
lines = [f"{seed} {i} {hashlib.sha256(f'{seed}:{i}'.encode()).hexdigest()}" for i in range(60)]
for line in lines:
    print(line, flush=True)
    time.sleep(0.02)
Path("outputs").mkdir(exist_ok=True)
Path("outputs/result.txt").write_text(seed)
"""


def expected_log(seed: str) -> bytes:
    lines = [f"{seed} {i} {hashlib.sha256(f'{seed}:{i}'.encode()).hexdigest()}" for i in range(60)]
    return "".join(line + "\n" for line in lines).encode()


ROLES = {
    "web": lambda cmd: "daphne" in cmd,
    "worker": lambda cmd: "celery" in cmd and "worker" in cmd,
    "beat": lambda cmd: "celery" in cmd and "beat" in cmd,
    "monitor": lambda cmd: "manage.py" in cmd and "monitor" in cmd,
    "redis": lambda cmd: "redis-server" in cmd,
}


def role_of(process: psutil.Process) -> str | None:
    try:
        cmd = " ".join(process.cmdline())
    except psutil.Error:
        return None
    return next((role for role, match in ROLES.items() if match(cmd)), None)


def processes(stack: LiveStack) -> dict[str, psutil.Process]:
    """`up`'s direct children by role."""
    found = {}
    for child in psutil.Process(stack.process.pid).children():
        role = role_of(child)
        if role and child.status() != psutil.STATUS_ZOMBIE:
            found[role] = child
    return found


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Kill:
    role: str
    at: float
    recovered_after: float | None = None


@dataclass
class Soak:
    stack: LiveStack
    api: requests.Session
    targets: list[str]
    runs: int
    in_flight: int = 4
    kill_every: float = 20.0
    recover_within: float = 30.0
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    submitted: dict[int, tuple[str, str]] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)
    retries: int = 0

    # The API, retried while a process is down: a request in flight then fails
    # with a connection error or a 502/503, never with a wrong answer.
    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        deadline = time.monotonic() + self.recover_within * 3
        while True:
            response = self.attempt(method, path, **kwargs)
            if response is not None:
                return response
            assert time.monotonic() < deadline, f"{method} {path} kept failing"
            self.retries += 1
            time.sleep(0.5)

    def attempt(self, method: str, path: str, **kwargs) -> requests.Response | None:
        """One try; None when it is to be tried again."""
        try:
            response = self.api.request(
                method, f"{self.stack.url}/api/v1{path}", timeout=60, **kwargs
            )
        except requests.ConnectionError:
            return None
        return None if response.status_code in (502, 503, 504) else response

    def submit(self, target: str, seed: str) -> int:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as source:
            source.writestr("train.py", SCRIPT)
        body = {
            "experiment": "chaos",
            "target": target,
            "entry_script": "train.py",
            "arguments": seed,
            "tags": f"seed={seed}",
        }
        deadline = time.monotonic() + self.recover_within * 3
        while True:
            response = self.attempt(
                "POST",
                "/runs",
                data=body,
                files={"snapshot": ("source.zip", archive.getvalue(), "application/zip")},
            )
            if response is not None and response.status_code == 201:
                return response.json()["id"]
            assert response is None or response.status_code >= 500, response.text
            # Not answered: the run may have been stored all the same. Submit again only
            # if it was not, so a retry never makes a second run.
            if known := self.runs_with_seed(seed):
                return known[0]
            assert time.monotonic() < deadline, f"submitting {seed} kept failing"
            self.retries += 1
            time.sleep(0.5)

    def chaos_runs(self) -> list[dict]:
        found: list[dict] = []
        while True:
            page = self.request(
                "GET", "/runs", params={"experiment": "chaos", "limit": 100, "offset": len(found)}
            )
            assert page.ok, page.text
            found += page.json()
            if len(page.json()) < 100:
                return found

    def runs_with_seed(self, seed: str) -> list[int]:
        return [run["id"] for run in self.chaos_runs() if run["tags"].get("seed") == seed]

    def status(self, run_id: int) -> str:
        response = self.request("GET", f"/runs/{run_id}")
        assert response.ok, response.text
        return response.json()["status"]

    def drive(self) -> None:
        """Submit every run, keeping `in_flight` per target, and wait for them all to end."""
        queue = [(self.targets[n % len(self.targets)], f"s{n:04d}") for n in range(self.runs)]
        active: dict[int, str] = {}
        while queue or active:
            for run_id in list(active):
                if self.status(run_id) in FINAL_STATUSES:
                    del active[run_id]
            per_target = {t: sum(1 for v in active.values() if v == t) for t in self.targets}
            for target, seed in list(queue):
                if per_target[target] < self.in_flight:
                    run_id = self.submit(target, seed)
                    self.submitted[run_id] = (target, seed)
                    active[run_id] = target
                    per_target[target] += 1
                    queue.remove((target, seed))
            time.sleep(0.5)

    def kill_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.kill_every):
            alive = processes(self.stack)
            role = self.rng.choice(sorted(alive))
            victim = alive[role]
            kill = Kill(role, time.monotonic())
            self.kills.append(kill)
            victim.send_signal(signal.SIGKILL)
            kill.recovered_after = self.recovery(role, victim.pid, kill.at)

    def recovery(self, role: str, old_pid: int, since: float) -> float | None:
        while time.monotonic() - since < self.recover_within:
            new = processes(self.stack).get(role)
            replaced = new is not None and new.pid != old_pid
            if replaced and (role != "web" or port_answers(self.stack.port)):
                return time.monotonic() - since
            time.sleep(0.05)
        return None

    def run(self) -> SoakReport:
        stop = threading.Event()
        killer = threading.Thread(target=self.kill_loop, args=(stop,), daemon=True)
        started = time.monotonic()
        killer.start()
        try:
            self.drive()
        finally:
            stop.set()
            killer.join()
        return self.report(time.monotonic() - started)

    def report(self, seconds: float) -> SoakReport:
        problems = []
        for run_id, (target, seed) in sorted(self.submitted.items()):
            run = self.request("GET", f"/runs/{run_id}").json()
            if (run["status"], run["exit_code"]) != ("Completed", 0):
                timeline = "; ".join(f"{e['status']}: {e['message']}" for e in run["timeline"])
                problems.append(f"run {run_id} on {target}: {run['status']} ({timeline})")
                continue
            log = self.request("GET", f"/runs/{run_id}/logs", params={"stream": "stdout"}).content
            if hashlib.sha256(log).digest() != hashlib.sha256(expected_log(seed)).digest():
                problems.append(f"run {run_id} on {target}: its log differs from what it printed")
            output = self.request("GET", f"/runs/{run_id}/files/outputs/result.txt")
            if output.status_code != 200 or output.text != seed:
                problems.append(f"run {run_id} on {target}: outputs/result.txt not collected")
        stored = self.chaos_runs()
        for run in stored:
            if run["status"] not in FINAL_STATUSES:
                problems.append(f"run {run['id']} stuck in {run['status']}")
        recoveries = [k.recovered_after for k in self.kills if k.recovered_after is not None]
        return SoakReport(
            runs=len(self.submitted),
            runs_stored=len(stored),
            seconds=seconds,
            kills={role: sum(1 for k in self.kills if k.role == role) for role in ROLES},
            unrecovered=[k.role for k in self.kills if k.recovered_after is None],
            recovery_median=statistics.median(recoveries) if recoveries else 0.0,
            recovery_worst=max(recoveries, default=0.0),
            retries=self.retries,
            problems=problems,
        )


@dataclass
class SoakReport:
    runs: int
    runs_stored: int
    seconds: float
    kills: dict[str, int]
    unrecovered: list[str]
    recovery_median: float
    recovery_worst: float
    retries: int
    problems: list[str]

    def summary(self) -> str:
        kills = ", ".join(f"{role} {n}" for role, n in self.kills.items() if n)
        return (
            f"{self.runs} runs in {self.seconds:.0f} s ({self.runs_stored} stored); "
            f"{sum(self.kills.values())} kills ({kills}); recovery median "
            f"{self.recovery_median:.1f} s, worst {self.recovery_worst:.1f} s; "
            f"{len(self.unrecovered)} not recovered; {self.retries} API retries; "
            f"{len(self.problems)} runs wrong"
        )


def wait_until(check: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.5)


def attach_vm(soak: Soak, sshd, name: str) -> None:
    response = soak.request(
        "POST",
        "/computes/vm",
        json={
            "name": name,
            "address": sshd.host,
            "port": sshd.port,
            "username": sshd.username,
            "authentication": "password",
            "password": sshd.password,
        },
    )
    assert response.status_code == 202, response.text
    wait_for_target(soak, name)


def create_cluster(soak: Soak, name: str, max_nodes: int) -> None:
    response = soak.request(
        "POST",
        "/computes/cluster",
        json={"name": name, "vm_size": "Standard_D2_v2", "max_nodes": max_nodes},
    )
    assert response.status_code == 201, response.text
    wait_for_target(soak, name)


def wait_for_target(soak: Soak, name: str) -> None:
    def state() -> str:
        return soak.request("GET", f"/computes/{name}").json()["state"]

    wait_until(lambda: state() in ("Succeeded", "Failed"), f"the check of {name}")
    assert state() == "Succeeded", soak.request("GET", f"/computes/{name}").json()


def remove_cluster_containers(stack: LiveStack) -> None:
    instance = (stack.data_dir / "instance_id").read_text().strip()
    client = docker.from_env()
    for container in client.containers.list(
        all=True, filters={"label": f"trainyard.instance={instance}"}
    ):
        container.remove(force=True)
    client.close()
