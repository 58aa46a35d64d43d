"""A real local Docker engine with the node image, for managed-cluster tests."""

from __future__ import annotations

import subprocess
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
