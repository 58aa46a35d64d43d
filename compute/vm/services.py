"""Machines attached over SSH (VMs, HDInsight / Spark head nodes): attach, check, credentials.

Everything that talks to a VM runs in a Celery task and records its steps in a
ComputeOperation, so the detail page can show what is happening and why it
failed. Secrets never reach a step, an error or a log line: every message
passes `redact` (with the workspace's secrets) before it is stored.
"""

from __future__ import annotations

import logging

import paramiko
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from compute import ssh
from compute.models import (
    SSH_KINDS,
    AuthMethod,
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
from compute.vm import spark
from studio.errors import ServiceError
from studio.models import Workspace
from studio.outbound import detailed_errors_for, outbound_policy

log = logging.getLogger(__name__)

STEPS = [
    ("connecting", "Connecting"),
    ("host_key", "Host key"),
    ("authenticating", "Authenticating"),
    ("preflight", "Preflight"),
]
# An HDInsight / Spark head node is a VM whose check also looks at its Spark.
SPARK_STEP = ("spark", "Spark")
HOST_KEY_HELP = "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"


def ssh_target(target: ComputeTarget) -> ssh.SshTarget:
    """How to reach `target` over SSH, pinned to its stored host key."""
    return ssh.SshTarget(
        host=target.address,
        port=target.port or 22,
        username=target.username,
        password=target.password if target.auth_method == AuthMethod.PASSWORD else None,
        private_key=target.private_key if target.auth_method == AuthMethod.KEY else None,
        passphrase=(target.passphrase or None) if target.auth_method == AuthMethod.KEY else None,
        pinned_fingerprint=target.host_key_fingerprint or None,
        pool_key=f"compute-target-{target.pk}",
        outbound=outbound_policy(),
        detailed_errors=detailed_errors_for(target.created_by),
    )


def public_key_line(
    private_key: str,
    passphrase: str = "",  # none  # nosec B107
    comment: str = "trainyard",
) -> str:
    """The authorized_keys line for a private key."""
    key = ssh.parse_private_key(private_key, passphrase or None)
    return f"{key.get_name()} {key.get_base64()} {comment}"


# ---------------------------------------------------------------- starting operations


def vm_attach(
    *,
    workspace: Workspace,
    user: User,
    name: str,
    address: str,
    username: str,
    auth_method: str,
    port: int = 22,
    resource_id: str = "",
    password: str = "",
    private_key: str = "",
    passphrase: str = "",
    public_key: str = "",
) -> ComputeOperation:
    """Store the VM (state Creating) and check it in the background."""
    _require_credentials(auth_method, password, private_key, passphrase)
    with transaction.atomic():
        target = target_create(
            workspace=workspace,
            name=name,
            kind=ComputeKind.VM,
            state=ComputeState.CREATING,
            address=address,
            resource_id=resource_id,
            port=port,
            username=username,
            **_credential_fields(auth_method, password, private_key, passphrase),
            config={"public_key": public_key} if public_key else {},
            created_by=user,
        )
        return _operation_start(target=target, user=user, action="attach")


def hdinsight_attach(
    *,
    workspace: Workspace,
    user: User,
    name: str,
    address: str,
    username: str,
    auth_method: str,
    port: int = 22,
    spark_master: str = "",
    password: str = "",
    private_key: str = "",
    passphrase: str = "",
    public_key: str = "",
) -> ComputeOperation:
    """Store the head node (state Creating) and check it and its Spark in the background.

    An empty `spark_master` means what the cluster uses, found by the check.
    """
    _require_credentials(auth_method, password, private_key, passphrase)
    problem = spark.master_problem(spark_master)
    if problem:
        raise ServiceError(problem, field="spark_master")
    config = {"spark_master": spark_master}
    if public_key:
        config["public_key"] = public_key
    with transaction.atomic():
        target = target_create(
            workspace=workspace,
            name=name,
            kind=ComputeKind.HDINSIGHT,
            state=ComputeState.CREATING,
            address=address,
            port=port,
            username=username,
            **_credential_fields(auth_method, password, private_key, passphrase),
            config=config,
            created_by=user,
        )
        return _operation_start(target=target, user=user, action="attach")


def hdinsight_master_set(*, target: ComputeTarget, spark_master: str) -> None:
    """Choose the master PySpark runs on `target` submit to ('' = what the cluster uses)."""
    if target.kind != ComputeKind.HDINSIGHT:
        raise ServiceError(f"{target.name} is not an HDInsight / Spark target.", status=409)
    problem = spark.master_problem(spark_master)
    if problem:
        raise ServiceError(problem, field="spark_master")
    config = dict(target.config)
    config["spark_master"] = spark_master
    ComputeTarget.objects.filter(pk=target.pk).update(config=config)
    target.config = config


def compute_check(*, target: ComputeTarget, user: User) -> ComputeOperation:
    """Log in again and refresh the facts, over the pooled connection when there is one."""
    _require_checkable(target)
    with transaction.atomic():
        return _operation_start(target=target, user=user, action="check")


def compute_credentials_update(
    *,
    target: ComputeTarget,
    user: User,
    username: str,
    auth_method: str,
    password: str = "",
    private_key: str = "",
    passphrase: str = "",
    public_key: str = "",
) -> ComputeOperation:
    """Replace how Trainyard logs in (the old secrets are overwritten) and check again."""
    _require_checkable(target)
    _require_credentials(auth_method, password, private_key, passphrase)
    with transaction.atomic():
        target.username = username
        for field, value in _credential_fields(
            auth_method, password, private_key, passphrase
        ).items():
            setattr(target, field, value)
        config = dict(target.config)
        config.pop("public_key", None)
        if public_key:
            config["public_key"] = public_key
        target.config = config
        target.save()
        operation = _operation_start(target=target, user=user, action="credentials")
    ssh.pool.close(ssh_target(target))
    return operation


def host_key_retrust(*, target: ComputeTarget, user: User, fingerprint: str) -> ComputeOperation:
    """Pin the host key the VM offers now, which the user compared on the VM itself."""
    _require_checkable(target)
    offered = target.config.get("offered_host_key") or {}
    if not offered or offered.get("fingerprint") != fingerprint:
        raise ServiceError(
            f"{target.name} does not currently offer the host key {fingerprint}: "
            "re-check it to see the key it offers now, then trust that one.",
            status=409,
        )
    with transaction.atomic():
        target.host_key_fingerprint = fingerprint
        target.host_key_type = offered.get("type", "")
        target.config = {k: v for k, v in target.config.items() if k != "offered_host_key"}
        target.save()
        operation = _operation_start(target=target, user=user, action="retrust")
    ssh.pool.close(ssh_target(target))
    return operation


def _require_credentials(
    auth_method: str, password: str, private_key: str, passphrase: str
) -> None:
    if auth_method == AuthMethod.PASSWORD:
        if not password:
            message = "Enter the password of the user on the VM."
            raise ServiceError(message, field="password")  # a message  # nosec B105
        return
    if auth_method != AuthMethod.KEY:
        raise ServiceError("Choose an SSH key or a password.", field="authentication")
    if not private_key:
        raise ServiceError("Paste the private key or upload its file.", field="private_key")
    try:
        ssh.parse_private_key(private_key, passphrase or None)
    except ssh.SshError as exc:
        field = "passphrase" if exc.code == "bad_passphrase" else "private_key"
        raise ServiceError(exc.message, field=field) from None


def _credential_fields(
    auth_method: str, password: str, private_key: str, passphrase: str
) -> dict[str, str]:
    """Only the chosen method's secrets are kept; the others are wiped."""
    is_key = auth_method == AuthMethod.KEY
    return {
        "auth_method": auth_method,
        "password": "" if is_key else password,
        "private_key": private_key if is_key else "",
        "passphrase": passphrase if is_key else "",
    }


def _require_checkable(target: ComputeTarget) -> None:
    if target.kind not in SSH_KINDS:
        raise ServiceError(f"{target.name} is not a machine attached over SSH.", status=409)
    operation_require_idle(target)


def _operation_start(*, target: ComputeTarget, user: User, action: str) -> ComputeOperation:
    return operation_start(
        target=target,
        user=user,
        action=action,
        steps=_steps(target),
        task="compute.tasks.vm_check_task",
    )


def _steps(target: ComputeTarget) -> list[tuple[str, str]]:
    return [*STEPS, SPARK_STEP] if target.kind == ComputeKind.HDINSIGHT else STEPS


# ---------------------------------------------------------------- running operations


class _ObservedConnection(ssh.SshConnection):
    """A connection that reports each phase of logging in as it happens.

    It hooks the two phase boundaries of SshConnection's login (host key check,
    then authentication) so the user watches the steps live, and keeps the key
    the server offered, which a refused host key needs for re-trusting.
    """

    def __init__(self, target: ssh.SshTarget, progress: OperationRunner, timeout: float):
        self.progress = progress
        self.offered_key: tuple[str, str] | None = None
        super().__init__(target, timeout=timeout)

    def _check_host_key(self, transport: paramiko.Transport) -> None:
        key = transport.get_remote_server_key()
        self.offered_key = (key.fingerprint, key.get_name())
        self.progress.done("connecting", f"Reached {self.target.address}")
        self.progress.start("host_key", f"The VM offers {key.fingerprint} ({key.get_name()})")
        super()._check_host_key(transport)

    def _authenticate(self, transport: paramiko.Transport) -> None:
        assert self.offered_key is not None  # _check_host_key ran first and set it
        self.progress.done("host_key", _host_key_detail(self.target, *self.offered_key))
        self.progress.start("authenticating", f"Logging in as {self.target.username}")
        super()._authenticate(transport)


def _host_key_detail(target: ssh.SshTarget, fingerprint: str, key_type: str) -> str:
    if target.pinned_fingerprint:
        return f"Matches the pinned {fingerprint} ({key_type})"
    return (
        f"First contact: pinned {fingerprint} ({key_type}). To be sure it is your VM, "
        f"compare it with what “{HOST_KEY_HELP}” prints on the VM."
    )


# Where a failure belongs when it surfaces before the step it concerns was reported.
_FAILED_STEP = {
    "auth_password": "authenticating",  # a step's name  # nosec B105
    "auth_key": "authenticating",
    "bad_key": "authenticating",
    "bad_passphrase": "authenticating",  # a step's name  # nosec B105
    "host_key_changed": "host_key",
    "not_linux": "preflight",
    "spark_missing": "spark",
    "spark_broken": "spark",
}


def vm_check_execute(*, operation_id: int) -> None:
    """Connect, verify the host key, log in and run the preflight; record every step."""
    operation = ComputeOperation.objects.select_related("target").get(pk=operation_id)
    target = operation.target
    if target is None or operation.state != OperationState.RUNNING:
        return
    progress = OperationRunner(operation)
    timeout = float(settings.COMPUTE_SSH_TIMEOUT)
    where = ssh_target(target)
    connection: ssh.SshConnection | None = None
    try:
        progress.start("connecting", f"Connecting to {where.address}")
        if operation.action == "check":
            connection = ssh.pool.get(where, timeout=timeout)
            progress.done("connecting", f"Connected to {where.address}")
            progress.done(
                "host_key",
                _host_key_detail(
                    where, connection.host_key_fingerprint or "", connection.host_key_type or ""
                ),
            )
        else:
            # Attaching, new credentials and a re-trusted key log in afresh, step by step.
            connection = _ObservedConnection(where, progress, timeout)
            connection.transport  # noqa: B018 - logs in now, reporting each step
        method = "an SSH key" if target.auth_method == AuthMethod.KEY else "a password"
        progress.done("authenticating", f"Logged in as {where.username} with {method}")
        progress.start("preflight", "Looking at the OS, CPUs, memory, disk, GPUs and tools")
        facts = ssh.preflight(connection)
        if target.kind == ComputeKind.HDINSIGHT:
            progress.done("preflight", _facts_summary(facts))
            progress.start("spark", "Looking for spark-submit, its version and the master")
            facts.update(spark.spark_preflight(connection))
    except ssh.SshError as exc:
        if exc.code == "host_key_changed":
            _remember_offered_key(target, connection, where, timeout)
        elif isinstance(connection, _ObservedConnection) and connection.host_key_fingerprint:
            # The first contact happened even though the login failed afterwards: the key
            # stays pinned, so fixing the credentials cannot silently trust another host.
            ComputeTarget.objects.filter(pk=target.pk).update(
                host_key_fingerprint=connection.host_key_fingerprint,
                host_key_type=connection.host_key_type or "",
            )
        step = _FAILED_STEP.get(exc.code, progress.current)
        progress.fail(exc.message, step=step)
        return
    except Exception as exc:
        log.exception("checking compute target %s failed", target.pk)
        message = (
            f"Unexpected error while checking {where.address}: {type(exc).__name__}: {exc}. "
            "Try again; if it persists, the worker log has the details."
        )
        progress.fail(message)
        return
    finally:
        if connection is not None and operation.action != "check":
            connection.close()

    if target.kind == ComputeKind.HDINSIGHT:
        progress.done("spark", _spark_summary(facts))
    else:
        progress.done("preflight", _facts_summary(facts))
    warnings = facts.pop("warnings", [])
    if target.kind == ComputeKind.HDINSIGHT:
        # PySpark runs never use Docker, so Docker's state is no concern on a head node.
        warnings = [w for w in warnings if "docker" not in w.lower()]
    config = {k: v for k, v in target.config.items() if k != "offered_host_key"}
    progress.finish(
        state=ComputeState.SUCCEEDED,
        error="",
        warnings=warnings,
        facts=facts,
        config=config,
        checked_at=timezone.now(),
        # It answered: whatever marked it Unreachable is over.
        unreachable_since=None,
        unreachable_reason="",
        host_key_fingerprint=connection.host_key_fingerprint,
        host_key_type=connection.host_key_type or "",
    )


def _remember_offered_key(
    target: ComputeTarget,
    connection: ssh.SshConnection | None,
    where: ssh.SshTarget,
    timeout: float,
) -> None:
    """Store the key the VM offers now, so the page can show it and offer to trust it."""
    if not isinstance(connection, _ObservedConnection):
        # The pooled connection failed inside the pool: look at the key once more.
        connection = _ObservedConnection(where, OperationRunner(None), timeout)
        try:
            connection.transport  # noqa: B018 - fails at the host key, after noting it
        except ssh.SshError:
            pass
        finally:
            connection.close()
    if connection.offered_key is None:
        return
    fingerprint, key_type = connection.offered_key
    config = dict(target.config)
    config["offered_host_key"] = {"fingerprint": fingerprint, "type": key_type}
    ComputeTarget.objects.filter(pk=target.pk).update(config=config)


def _facts_summary(facts: dict) -> str:
    parts = [facts.get("os_name") or facts.get("system") or "Linux"]
    if facts.get("cpus"):
        parts.append(f"{facts['cpus']} CPUs")
    if facts.get("memory_mib"):
        parts.append(f"{facts['memory_mib'] / 1024:.1f} GiB memory")
    gpus = facts.get("gpus") or []
    parts.append(f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}" if gpus else "no GPU")
    parts.append("Docker usable" if facts.get("docker_usable") else "no usable Docker")
    return " · ".join(parts)


def _spark_summary(facts: dict) -> str:
    python = facts.get("spark_python_version")
    return (
        f"Spark {facts['spark_version']} ({facts['spark_submit']}) · "
        f"{f'Python {python}' if python else 'no Python found for PySpark'} · "
        f"master {spark.master_label(facts['spark_master'])}"
    )
