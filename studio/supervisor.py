"""`manage.py up` keeps its processes running: a child that dies is started again.

Each restart waits longer than the last while the child keeps dying, so a child that
cannot start does not spin; the supervisor's view of every child is written to
`DATA_DIR/processes.json` for /healthz and the Settings page to read.
"""

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import TextIOBase
from pathlib import Path
from types import FrameType
from typing import TextIO

from django.conf import settings

PR_SET_PDEATHSIG = 1
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
# A child that ran this long before dying was healthy: its next restart waits
# BACKOFF_FIRST_SECONDS again.
STABLE_SECONDS = 30.0
POLL_SECONDS = 0.2


def _die_with_parent() -> None:
    """Children get SIGTERM if `up` itself is killed, so nothing is left behind."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setpgid(0, 0)


def state_path() -> Path:
    return settings.DATA_DIR / "processes.json"


def supervisor_state() -> dict | None:
    """What `up` last wrote of its children, or None when `up` does not run them."""
    try:
        state = json.loads(state_path().read_text())
    except FileNotFoundError:
        return None
    try:
        os.kill(state["pid"], 0)
    except ProcessLookupError:
        return None  # left by an `up` that was killed outright
    except PermissionError:
        pass  # alive, as another user
    return state


def exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def backoff_seconds(failures: int) -> float:
    """The wait before restart number `failures` in a row of quick deaths (1 = the first)."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (failures - 1))


def last_log_line(path: Path) -> str:
    with contextlib.suppress(OSError), path.open("rb") as log:
        log.seek(max(0, log.seek(0, os.SEEK_END) - 4096))
        lines = log.read().decode(errors="replace").strip().splitlines()
        return lines[-1].strip()[:300] if lines else ""
    return ""


def wall(moment: float) -> datetime:
    """A time.monotonic() moment as the wall-clock time it is (or was)."""
    return datetime.now(UTC) + timedelta(seconds=moment - time.monotonic())


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen
    started_at: float
    restarts: int = 0
    # Deaths in a row that came before the child ran STABLE_SECONDS.
    failures: int = 0
    last_exit: str = ""
    last_exit_at: str = ""
    restart_at: float | None = None

    def state(self) -> dict:
        return {
            "state": "running" if self.restart_at is None else "restarting",
            "pid": self.process.pid if self.restart_at is None else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_exit_at": self.last_exit_at,
            "next_restart_at": (
                wall(self.restart_at).isoformat(timespec="seconds") if self.restart_at else ""
            ),
        }


@dataclass
class Supervisor:
    # sys.stdout, or a management command's self.stdout (an OutputWrapper).
    out: TextIO | TextIOBase
    children: dict[str, Child] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str]) -> None:
        log_path = settings.DATA_DIR / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                cwd=settings.BASE_DIR,
            )
        child = self.children.get(name)
        if child is None:
            self.children[name] = Child(name, argv, log_path, process, time.monotonic())
        else:
            child.process, child.started_at, child.restart_at = process, time.monotonic(), None
        self.write_state()

    def died(self, child: Child) -> None:
        now = time.monotonic()
        ran = now - child.started_at
        child.failures = 1 if ran >= STABLE_SECONDS else child.failures + 1
        delay = backoff_seconds(child.failures)
        child.restart_at = now + delay
        child.last_exit = exit_reason(child.process.returncode)
        if child.process.returncode > 0:
            said = last_log_line(child.log_path)
            if said:
                child.last_exit += f" ({said})"
        child.last_exit_at = datetime.now(UTC).isoformat(timespec="seconds")
        line = (
            f"{child.last_exit_at} {child.name} (pid {child.process.pid}) {child.last_exit} "
            f"after {ran:.0f} s; restarting in {delay:g} s, at "
            f"{wall(child.restart_at):%H:%M:%S} UTC (restart {child.restarts + 1}). "
            f"Its log: {child.log_path}\n"
        )
        self.out.write(line)
        self.out.flush()
        with child.log_path.open("a") as log:
            log.write(line)
        self.write_state()

    def watch(self) -> int:
        """Restart children as they die, until SIGINT or SIGTERM; return `up`'s exit code."""
        stop: dict[str, int | None] = {"signal": None}

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            stop["signal"] = signum

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while stop["signal"] is None:
            for child in self.children.values():
                if child.restart_at is None and child.process.poll() is not None:
                    self.died(child)
                elif child.restart_at is not None and time.monotonic() >= child.restart_at:
                    child.restarts += 1
                    self.spawn(child.name, child.argv)
            time.sleep(POLL_SECONDS)
        return 0

    def write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "processes": {name: child.state() for name, child in self.children.items()},
        }
        path = state_path()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=1))
        # Readers see the old file or the new one, never half of one.
        os.replace(tmp, path)

    def stop_all(self, grace: float = 10.0) -> None:
        running = [c.process for c in self.children.values() if c.restart_at is None]
        for process in running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        state_path().unlink(missing_ok=True)
