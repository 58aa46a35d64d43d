"""Attaching and checking the cloud services: Azure Databricks, Data Lake Analytics, Azure Batch.

An attach stores the target (state Creating) with its secret encrypted, then a
Celery task signs in with the service's client, reads what the detail page
shows (Databricks clusters, Batch pools, recent Data Lake jobs) and verifies
the default cluster or pool. The steps are recorded in a ComputeOperation as
they happen; every failure is the client's actionable CloudError message.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from compute.cloud.clients import CloudError
from compute.models import (
    CLOUD_KINDS,
    ComputeKind,
    ComputeOperation,
    ComputeState,
    ComputeTarget,
    OperationState,
)
from compute.operations import (
    OperationRunner,
    operation_require_idle,
    operation_start,
    target_create,
)
from studio.errors import ServiceError
from studio.models import Workspace

log = logging.getLogger(__name__)

STEPS: dict[str, list[tuple[str, str]]] = {
    ComputeKind.DATABRICKS: [
        ("signin", "Signing in to the workspace"),
        ("facts", "Clusters"),
        ("default", "Default cluster"),
    ],
    ComputeKind.DATALAKE: [
        ("signin", "Signing in with Azure AD"),
        ("facts", "Recent jobs"),
    ],
    ComputeKind.BATCH: [
        ("signin", "Signing in to the account"),
        ("facts", "Pools"),
        ("default", "Default pool"),
    ],
}
NOT_CLOUD = "{name} is not an Azure Databricks, Data Lake or Batch target."
# Which step a client error belongs to.
_DEFAULT_STEP_ERRORS = ("cluster_not_found", "pool_not_found")


def cloud_client(target: ComputeTarget) -> Any:
    """The service client of a cloud target, from its settings and its (decrypted) secret."""
    # Each client imports its service's SDK, slow to load: only a target of its kind needs it.
    if target.kind == ComputeKind.DATABRICKS:
        from compute.cloud.clients.databricks import Databricks

        return Databricks.from_target(target)
    if target.kind == ComputeKind.BATCH:
        from compute.cloud.clients.batch import Batch

        return Batch.from_target(target)
    if target.kind == ComputeKind.DATALAKE:
        from compute.cloud.clients.datalake import DataLakeAnalytics

        return DataLakeAnalytics.from_target(target)
    raise ServiceError(NOT_CLOUD.format(name=target.name), status=409)


# ---------------------------------------------------------------- starting operations


def databricks_attach(
    *,
    workspace: Workspace,
    user: User,
    name: str,
    workspace_url: str,
    resource_group: str,
    access_token: str,
    cluster_id: str = "",
) -> ComputeOperation:
    """Store a Databricks workspace (state Creating) and check its token in the background."""
    config = {"workspace_url": workspace_url, "resource_group": resource_group}
    if cluster_id:
        config["cluster_id"] = cluster_id
    return _attach(
        workspace=workspace,
        user=user,
        name=name,
        kind=ComputeKind.DATABRICKS,
        config=config,
        secret=access_token,
    )


def datalake_attach(
    *,
    workspace: Workspace,
    user: User,
    name: str,
    resource_group: str,
    account_name: str,
    tenant_id: str,
    client_id: str,
    client_secret: str,
    endpoint: str = "",
    authority_url: str = "",
) -> ComputeOperation:
    """Store a Data Lake Analytics account (state Creating) and sign in to it in the background."""
    config = {
        "resource_group": resource_group,
        "account_name": account_name,
        "tenant_id": tenant_id,
        "client_id": client_id,
    }
    if endpoint:
        config["endpoint"] = endpoint
    if authority_url:
        config["authority_url"] = authority_url
    return _attach(
        workspace=workspace,
        user=user,
        name=name,
        kind=ComputeKind.DATALAKE,
        config=config,
        secret=client_secret,
    )


def batch_attach(
    *,
    workspace: Workspace,
    user: User,
    name: str,
    account_name: str,
    account_url: str,
    resource_group: str,
    account_key: str,
    pool_id: str,
) -> ComputeOperation:
    """Store a Batch account (state Creating) and check the key and the pool in the background."""
    return _attach(
        workspace=workspace,
        user=user,
        name=name,
        kind=ComputeKind.BATCH,
        config={
            "account_name": account_name,
            "account_url": account_url,
            "resource_group": resource_group,
            "pool_id": pool_id,
        },
        secret=account_key,
    )


def cloud_check(*, target: ComputeTarget, user: User) -> ComputeOperation:
    """Sign in again and refresh the clusters, pools or jobs shown on the target's page."""
    _require_checkable(target)
    with transaction.atomic():
        return _operation_start(target=target, user=user, action="check")


def cloud_credentials_update(*, target: ComputeTarget, user: User, secret: str) -> ComputeOperation:
    """Replace the token, client secret or account key (the old one is overwritten) and check."""
    _require_checkable(target)
    if not secret:
        raise ServiceError("Enter the new secret.")
    with transaction.atomic():
        target.access_token = secret
        target.save(update_fields=["access_token", "updated_at"])
        return _operation_start(target=target, user=user, action="credentials")


def _attach(
    *, workspace: Workspace, user: User, name: str, kind: str, config: dict, secret: str
) -> ComputeOperation:
    if not secret:
        raise ServiceError("Enter the service's secret: it is how Trainyard signs in.")
    with transaction.atomic():
        target = target_create(
            workspace=workspace,
            name=name,
            kind=kind,
            state=ComputeState.CREATING,
            access_token=secret,
            config=config,
            created_by=user,
        )
        return _operation_start(target=target, user=user, action="attach")


def _require_checkable(target: ComputeTarget) -> None:
    if target.kind not in CLOUD_KINDS:
        raise ServiceError(NOT_CLOUD.format(name=target.name), status=409)
    operation_require_idle(target)


def _operation_start(*, target: ComputeTarget, user: User, action: str) -> ComputeOperation:
    return operation_start(
        target=target,
        user=user,
        action=action,
        steps=STEPS[target.kind],
        task="compute.tasks.cloud_check_task",
    )


# ---------------------------------------------------------------- running the check


def cloud_check_execute(*, operation_id: int) -> None:
    """Sign in with the stored secret, read the facts, verify the default cluster or pool."""
    operation = ComputeOperation.objects.select_related("target").get(pk=operation_id)
    target = operation.target
    if target is None or operation.state != OperationState.RUNNING:
        return
    steps = OperationRunner(operation)
    client = None
    try:
        client = cloud_client(target)
        steps.start("signin", f"Signing in to {_where(target)}")
        facts = _read_facts(target, client)
    except CloudError as exc:
        failed = "default" if exc.code in _DEFAULT_STEP_ERRORS else "signin"
        if failed == "default":
            steps.done("signin", f"Signed in to {_where(target)}")
            steps.done("facts", "")
        steps.fail(exc.message, step=failed)
        return
    except Exception as exc:
        log.exception("checking cloud target %s failed", target.pk)
        message = (
            f"Unexpected error while checking {_where(target)}: {type(exc).__name__}: {exc}. "
            "Try again; if it persists, the worker log has the details."
        )
        steps.fail(message, step="signin")
        return

    steps.done("signin", _signed_in(target, facts))
    steps.done("facts", _facts_summary(target, facts))
    if target.kind == ComputeKind.DATABRICKS:
        cluster_id = target.config.get("cluster_id")
        steps.done(
            "default",
            f"{cluster_id} exists"
            if cluster_id
            else "None: each step names a cluster or asks for a new job cluster",
        )
    elif target.kind == ComputeKind.BATCH:
        steps.done("default", _pool_detail(target.config["pool_id"], facts))
    steps.finish(
        state=ComputeState.SUCCEEDED,
        error="",
        warnings=_warnings(target, facts),
        facts=facts,
        checked_at=timezone.now(),
    )


def _read_facts(target: ComputeTarget, client: Any) -> dict:
    if target.kind == ComputeKind.DATABRICKS:
        return client.check(cluster_id=target.config.get("cluster_id", ""))
    if target.kind == ComputeKind.BATCH:
        return client.check(pool_id=target.config.get("pool_id", ""))
    return client.check()


def _where(target: ComputeTarget) -> str:
    config = target.config
    if target.kind == ComputeKind.DATABRICKS:
        return config.get("workspace_url", "")
    if target.kind == ComputeKind.BATCH:
        return f"Batch account {config.get('account_name')} ({config.get('account_url')})"
    return f"Data Lake Analytics account {config.get('account_name')}"


def _signed_in(target: ComputeTarget, facts: dict) -> str:
    if target.kind == ComputeKind.DATABRICKS:
        return f"Signed in as {facts.get('user')}"
    if target.kind == ComputeKind.BATCH:
        return f"The account key of {facts.get('account_name')} is accepted"
    return f"Application {target.config.get('client_id')} signed in"


def _facts_summary(target: ComputeTarget, facts: dict) -> str:
    if target.kind == ComputeKind.DATABRICKS:
        clusters = facts.get("clusters") or []
        names = ", ".join(f"{c['cluster_name']} ({c['state']})" for c in clusters)
        return f"{len(clusters)} cluster{'s' if len(clusters) != 1 else ''}" + (
            f": {names}" if names else ""
        )
    if target.kind == ComputeKind.BATCH:
        pools = facts.get("pools") or []
        return f"{len(pools)} pool{'s' if len(pools) != 1 else ''}: " + ", ".join(
            p["id"] for p in pools
        )
    jobs = facts.get("recent_jobs") or []
    return f"{len(jobs)} recent job{'s' if len(jobs) != 1 else ''}"


def _pool_detail(pool_id: str, facts: dict) -> str:
    pool = next((p for p in facts.get("pools") or [] if p["id"] == pool_id), None)
    if pool is None:
        return f"{pool_id} exists"
    nodes = pool["dedicated_nodes"] + pool["low_priority_nodes"]
    return f"{pool_id}: {pool['vm_size']}, {nodes} node{'s' if nodes != 1 else ''}"


def _warnings(target: ComputeTarget, facts: dict) -> list[str]:
    if target.kind == ComputeKind.DATALAKE:
        return [facts.get("notice", "")]
    if target.kind == ComputeKind.BATCH:
        pool_id = target.config.get("pool_id")
        pool = next((p for p in facts.get("pools") or [] if p["id"] == pool_id), None)
        if pool is not None and pool["dedicated_nodes"] + pool["low_priority_nodes"] == 0:
            return [
                f"Pool {pool_id} has no nodes: steps wait in the queue until you resize it in "
                "the Azure portal."
            ]
    return []
