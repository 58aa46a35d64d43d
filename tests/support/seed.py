"""A workspace with one of everything, for the tests that walk every route.

Its targets are attached through the JSON API to this test run's own hosts on
127.0.0.1 (an sshd, the cloud emulators, the local Docker
engine), and its run, sweep and pipeline ran for real on the local target, so
every id a URL can name exists and every page and endpoint has something to show.
Everything has ended when the fixture returns: nothing is left for a `follow` to wait on.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from compute.cluster import services as cluster_services
from compute.models import ComputeTarget, DockerEngine, OperationState
from pipelines import services as pipeline_services
from runs.models import FINAL_STATUSES, Run, RunStatus
from runs.services.submit import SubmitRequest
from studio.models import ApiToken, Workspace
from studio.services import token_create
from sweeps import services as sweep_services
from tests.support.pipelines import advancing_pipelines, archive
from tests.support.runs import (
    minimal_environment,
    running_monitor,
    submit,
    wait_final,
    write_tree,
)
from tests.sweeps.test_sweeps import advancing_sweeps

TRAIN = """\
import os, sys
from trainyard import run
for step in range(2):
    run.log("loss", 1.0 / (step + 1))
os.makedirs("outputs", exist_ok=True)
open("outputs/model.txt", "w").write("weights")
print("trained", sys.argv[1:])
print("a warning", file=sys.stderr)
"""
SWEEP = textwrap.dedent(
    """
    sampling:
      type: grid
      parameter_space:
      - name: --lr
        expression: choice
        values: [0.1]
    policy:
      type: NoTerminationPolicy
    primary_metric_name: loss
    primary_metric_goal: minimize
    max_total_runs: 1
    max_concurrent_runs: 1
    """
)
PIPELINE = textwrap.dedent(
    """
    name: one-step
    experiment: pipelines
    steps:
      - name: train
        compute: local
        script: train.py
        outputs: [model]
    """
)
OUTPUT = "outputs/model.txt"


@dataclass
class Seeded:
    """What the seeded workspace holds, by the names and ids URLs use."""

    workspace: Workspace
    stranger_workspace: Workspace
    run: Run
    sweep: Run
    pipeline: Run
    stranger_run: Run
    targets: dict[str, str]
    engine: DockerEngine
    # alice (owner), bob (reader), carol (contributor), charlie (stranger) by name.
    members: dict = field(default_factory=dict)
    # Each user's API token (raw) and its row, for the token pages.
    tokens: dict[str, str] = field(default_factory=dict)
    token_rows: dict[str, ApiToken] = field(default_factory=dict)
    output: str = OUTPUT

    @property
    def run_ids(self) -> list[int]:
        return list(
            Run.objects.filter(workspace=self.workspace).order_by("pk").values_list("pk", flat=True)
        )


def _attach(client, workspace, kind: str, body: dict) -> str:
    response = client.post(
        f"/api/v1/computes/{kind}?workspace={workspace.slug}",
        body,
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    return body["name"]


def seed(
    *,
    tmp_path: Path,
    workspace,
    users: dict,
    sshd,
    databricks_emulator,
    batch_emulator,
    datalake_emulator,
) -> Seeded:
    """Fill `workspace` (alice owns it, carol contributes, bob reads; charlie is a stranger with
    a workspace and a run of his own) as its users would, through the API and the services."""
    from tests.conftest import api_client_for

    alice, charlie = users["alice"], users["charlie"]
    # A name no page shows unless it shows this workspace (the forms' examples say "Vision").
    workspace.name = "Seeded workspace 7c1e"
    workspace.save(update_fields=["name"])
    tokens: dict[str, str] = {}
    token_rows: dict[str, ApiToken] = {}
    for name, user in users.items():
        token_rows[name], tokens[name] = token_create(user=user, name="seeded")
    owner = api_client_for(alice)
    credentials = {"username": sshd.username, "authentication": "password"}
    targets = {
        "local": "local",
        "vm": _attach(
            owner,
            workspace,
            "vm",
            {"name": "gpu-vm", "address": sshd.host, "port": sshd.port, "password": sshd.password}
            | credentials,
        ),
        "hdinsight": _attach(
            owner,
            workspace,
            "hdinsight",
            {
                "name": "spark",
                "address": sshd.host,
                "port": sshd.port,
                "password": sshd.password,
            }
            | credentials,
        ),
        "databricks": _attach(
            owner,
            workspace,
            "databricks",
            {
                "name": "dbx",
                "workspace_url": databricks_emulator.url,
                "resource_group": "ml-rg",
                "access_token": databricks_emulator.token,
            },
        ),
        "batch": _attach(
            owner,
            workspace,
            "batch",
            {
                "name": "cpubatch",
                "account_name": batch_emulator.account_name,
                "account_url": batch_emulator.url,
                "resource_group": "ml-rg",
                "account_key": batch_emulator.account_key,
                "pool_id": "cpu-pool",
            },
        ),
        "datalake": _attach(
            owner,
            workspace,
            "datalake",
            {
                "name": "adla",
                "resource_group": "ml-rg",
                "account_name": datalake_emulator.account_name,
                "tenant_id": datalake_emulator.tenant_id,
                "client_id": datalake_emulator.client_id,
                "client_secret": datalake_emulator.client_secret,
                "endpoint": datalake_emulator.url,
                "authority_url": datalake_emulator.url,
            },
        ),
    }
    cluster = cluster_services.cluster_create(
        workspace=workspace, user=alice, name="cpu-cluster", vm_size="Standard_D2_v2", max_nodes=1
    )
    targets["cluster"] = cluster.name

    minimal_environment()
    source = write_tree(tmp_path / "seed-src", {"train.py": TRAIN})
    local = ComputeTarget.objects.get(workspace=workspace, name="local")
    stranger_workspace = Workspace.objects.exclude(pk=workspace.pk).get(memberships__user=charlie)
    stranger_local = ComputeTarget.objects.get(workspace=stranger_workspace, name="local")
    with running_monitor(), advancing_sweeps(), advancing_pipelines():
        run = submit(
            workspace=workspace, user=alice, target=local, source=source, arguments=["--seed"]
        )
        sweep = sweep_services.sweep_submit(
            workspace=workspace,
            user=alice,
            request=SubmitRequest(
                experiment="tuning",
                target="local",
                entry_script="train.py",
                environment=minimal_environment(),
            ),
            definition=SWEEP,
            archive=archive({"train.py": TRAIN}),
        )
        pipeline = pipeline_services.pipeline_submit(
            workspace=workspace,
            user=alice,
            definition=PIPELINE,
            archive=archive({"train.py": TRAIN}),
        )
        stranger_run = submit(
            workspace=stranger_workspace,
            user=charlie,
            target=stranger_local,
            source=source,
            experiment="charlies",
        )
        for started in (run, sweep, pipeline, stranger_run):
            wait_final(started, timeout=120)
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert run.files.filter(path=OUTPUT).exists()
    assert not Run.objects.exclude(status__in=FINAL_STATUSES).exists()
    for target in ComputeTarget.objects.filter(workspace=workspace):
        assert not target.operations.filter(state=OperationState.RUNNING).exists(), target.name
    return Seeded(
        workspace=workspace,
        stranger_workspace=stranger_workspace,
        run=run,
        sweep=sweep,
        pipeline=pipeline,
        stranger_run=stranger_run,
        targets=targets,
        engine=DockerEngine.objects.get(workspace=workspace),
        members=users,
        tokens=tokens,
        token_rows=token_rows,
    )


@pytest.fixture
def seeded(
    tmp_path,
    workspace,
    alice,
    bob,
    carol,
    charlie,
    loopback_only,
    sshd,
    databricks_emulator,
    batch_emulator,
    datalake_emulator,
    docker_engine,
) -> Seeded:
    return seed(
        tmp_path=tmp_path,
        workspace=workspace,
        users={"alice": alice, "bob": bob, "carol": carol, "charlie": charlie},
        sshd=sshd,
        databricks_emulator=databricks_emulator,
        batch_emulator=batch_emulator,
        datalake_emulator=datalake_emulator,
    )


# ------------------------------------------------------------ nothing leaves this machine


def loopback_hosts(sshd, databricks_emulator, batch_emulator, datalake_emulator) -> dict:
    """For each body field the studio connects to, the test host that stands behind it."""
    return {
        "address": sshd.host,
        "reachable_address": sshd.host,
        "workspace_url": databricks_emulator.url,
        "account_url": batch_emulator.url,
        "endpoint": datalake_emulator.url,
        "authority_url": datalake_emulator.url,
    }


def _loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class _Outbound:
    """Every address the process tried to reach beyond the loopback while armed."""

    def __init__(self) -> None:
        self.armed = False
        self.attempts: list[str] = []

    def __call__(self, event: str, args: tuple) -> None:
        if not self.armed:
            return
        if event == "socket.getaddrinfo":
            host = args[0].decode() if isinstance(args[0], bytes) else args[0]
        elif event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
            host = args[1][0]
        else:
            return
        if not _loopback(host):
            self.attempts.append(f"{event} {host!r}")
            # Refused as a network would refuse it, so the code under test takes its usual path.
            raise ConnectionRefusedError(f"this test reaches only 127.0.0.0/8, not {host!r}")


_outbound = _Outbound()
# An audit hook cannot be removed: one for the whole process, armed only inside a test.
sys.addaudithook(_outbound)


@pytest.fixture
def loopback_only():
    """Fail the test (and refuse the connection) if anything resolves or connects to an
    address outside 127.0.0.0/8 and ::1 while it runs."""
    _outbound.attempts.clear()
    _outbound.armed = True
    try:
        yield
    finally:
        _outbound.armed = False
    assert not _outbound.attempts, f"reached beyond the loopback: {_outbound.attempts}"
