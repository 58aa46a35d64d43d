"""A real local Docker engine with the node image, for managed-cluster tests."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from pathlib import Path

import docker
import pytest

REPO = Path(__file__).resolve().parents[2]


def _run_script(name: str) -> None:
    result = subprocess.run(
        ["sh", str(REPO / "scripts" / name)], cwd=REPO, capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(
            f"scripts/{name} failed (exit {result.returncode}); the managed-cluster tests "
            f"need a working dockerd:\n{result.stdout}{result.stderr}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def docker_engine():
    """A DockerClient for the local engine (started if needed) with the node image built."""
    _run_script("start-dockerd.sh")
    _run_script("build-node-image.sh")
    client = docker.from_env()
    yield client
    client.close()


class PrivateEngine:
    """A dockerd of its own beside the suite's engine, which a test may restart.

    Its own state, sockets and containerd; no bridge and no iptables, as the
    suite's engine. A restart keeps the socket and the data root.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"unix://{root / 'docker.sock'}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with (self.root / "dockerd.log").open("a") as log:
            self.process = subprocess.Popen(
                [
                    "dockerd",
                    f"--data-root={self.root / 'data'}",
                    f"--exec-root={self.root / 'exec'}",
                    f"--pidfile={self.root / 'docker.pid'}",
                    f"--host={self.url}",
                    "--iptables=false",
                    "--bridge=none",
                    "--storage-driver=overlay2",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                docker.DockerClient(base_url=self.url, timeout=10).close()
                return
            except docker.errors.DockerException:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.process.kill()
                    pytest.fail(f"The private dockerd did not start:\n{self.log()}", pytrace=False)
                time.sleep(0.3)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # The engine's containerd goes with it, but after it: a new dockerd that still
        # finds it running waits on it and gives up.
        containerd_pid = self.root / "exec" / "containerd" / "containerd.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(containerd_pid.read_text())
            deadline = time.monotonic() + 30
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        # dockerd removes its socket and pid file only on a clean exit.
        (self.root / "docker.sock").unlink(missing_ok=True)
        (self.root / "docker.pid").unlink(missing_ok=True)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def log(self) -> str:
        return (self.root / "dockerd.log").read_text()


@pytest.fixture(scope="module")
def private_engine(docker_engine, tmp_path_factory):
    """A second dockerd of its own, started empty: no node image, no containers."""
    root = tmp_path_factory.mktemp("dockerd")
    engine = PrivateEngine(root)
    engine.start()
    yield engine
    client = docker.DockerClient(base_url=engine.url, timeout=30)
    for container in client.containers.list(all=True):
        container.remove(force=True)
    client.close()
    engine.stop()
    # dockerd leaves its network namespace mounted under its exec root.
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(root))), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def fresh_engine_url(private_engine):
    """The URL of a second dockerd of its own, started empty."""
    return private_engine.url
