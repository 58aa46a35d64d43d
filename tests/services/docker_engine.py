"""A real local Docker engine with the node image, for managed-cluster tests."""

from __future__ import annotations

import shutil
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


@pytest.fixture(scope="module")
def fresh_engine_url(docker_engine, tmp_path_factory):
    """A second dockerd of its own, started empty: no node image, no containers.

    It runs beside the suite's engine with its own state, sockets and
    containerd; no bridge and no iptables, as the suite's engine.
    """
    root = tmp_path_factory.mktemp("dockerd")
    socket_path = root / "docker.sock"
    url = f"unix://{socket_path}"
    with (root / "dockerd.log").open("w") as log:
        process = subprocess.Popen(
            [
                "dockerd",
                f"--data-root={root / 'data'}",
                f"--exec-root={root / 'exec'}",
                f"--pidfile={root / 'docker.pid'}",
                f"--host={url}",
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
            client = docker.DockerClient(base_url=url, timeout=10)
            break
        except docker.errors.DockerException:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(
                    f"The second dockerd did not start:\n{(root / 'dockerd.log').read_text()}",
                    pytrace=False,
                )
            time.sleep(0.3)
    yield url
    for container in client.containers.list(all=True):
        container.remove(force=True)
    client.close()
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    # dockerd leaves its network namespace mounted under its exec root.
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(root))), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(root, ignore_errors=True)
