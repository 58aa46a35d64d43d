"""The chaos soak, short: 50 runs on local, a VM and a managed cluster while a Trainyard
process is killed every few seconds. Nothing is lost: every run completes, its log is
exactly what it printed, its output is collected. The long soak is bench/bench_chaos.py."""

import tempfile
from pathlib import Path

import pytest
import requests

from tests.services.live_stack import start_stack
from tests.support.chaos import Soak, attach_vm, create_cluster, remove_cluster_containers

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(docker_engine):
    with tempfile.TemporaryDirectory(prefix="ty-chaos-") as tmp:
        stack = start_stack(Path(tmp))
        yield stack
        stack.stop()
        remove_cluster_containers(stack)


def test_fifty_runs_lose_nothing_while_trainyard_processes_are_killed(stack, sshd):
    token = stack.manage("create_token", "alice", "--name", "chaos").stdout.strip()
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    api.params = {"workspace": stack.workspace_slug}
    soak = Soak(stack, api, ["local", "chaos-vm", "chaos-cluster"], runs=50, kill_every=8)
    attach_vm(soak, sshd, "chaos-vm")
    create_cluster(soak, "chaos-cluster", max_nodes=2)

    report = soak.run()

    assert report.problems == [], report.summary()
    assert report.unrecovered == []
    assert report.runs == report.runs_stored == 50
    assert sum(report.kills.values()) >= 3
    assert report.recovery_worst < 10
