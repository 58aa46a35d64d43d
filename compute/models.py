from django.conf import settings
from django.db import models
from django.utils import timezone

from studio.secrets import EncryptedTextField

LOCAL_TARGET_NAME = "local"


class ComputeKind(models.TextChoices):
    LOCAL = "local", "Local"
    CLUSTER = "amlcompute", "Compute cluster"
    VM = "virtualmachine", "Virtual machine"
    HDINSIGHT = "hdinsight", "HDInsight / Spark"
    DATABRICKS = "databricks", "Azure Databricks"
    DATALAKE = "datalakeanalytics", "Data Lake Analytics"
    BATCH = "batch", "Azure Batch"


# Targets Trainyard logs in to over SSH (pinned host key, pooled connection).
SSH_KINDS = (ComputeKind.VM, ComputeKind.HDINSIGHT)
CLOUD_KINDS = (ComputeKind.DATABRICKS, ComputeKind.DATALAKE, ComputeKind.BATCH)


class ComputeState(models.TextChoices):
    CREATING = "Creating"
    UPDATING = "Updating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    DELETING = "Deleting"


BUSY_STATES = (ComputeState.CREATING, ComputeState.UPDATING, ComputeState.DELETING)


class AuthMethod(models.TextChoices):
    KEY = "key", "SSH key"
    PASSWORD = "password", "Password"


class ComputeTarget(models.Model):
    """A place runs execute: created (clusters) or attached (everything else)."""

    workspace = models.ForeignKey(
        "studio.Workspace", on_delete=models.CASCADE, related_name="compute_targets"
    )
    name = models.CharField(max_length=16)
    kind = models.CharField(max_length=32, choices=ComputeKind.choices)
    state = models.CharField(
        max_length=16, choices=ComputeState.choices, default=ComputeState.CREATING
    )
    error = models.TextField(blank=True)
    warnings = models.JSONField(default=list, blank=True)

    # Reaching the machine (VM, HDInsight head node).
    address = models.CharField(max_length=255, blank=True)
    resource_id = models.CharField(max_length=512, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    username = models.CharField(max_length=64, blank=True)
    auth_method = models.CharField(max_length=16, choices=AuthMethod.choices, blank=True)
    password = EncryptedTextField(blank=True)
    private_key = EncryptedTextField(blank=True)
    passphrase = EncryptedTextField(blank=True)
    access_token = EncryptedTextField(blank=True)
    host_key_fingerprint = models.CharField(max_length=128, blank=True)
    host_key_type = models.CharField(max_length=64, blank=True)

    # Kind-specific settings that are not secret (cluster size, workspace URL, ...).
    config = models.JSONField(default=dict, blank=True)
    # What the last check found on the target (OS, CPUs, memory, GPUs, ...).
    facts = models.JSONField(default=dict, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # Since when the run monitor or the dispatcher cannot reach the machine, and why;
    # cleared as soon as it answers again.
    unreachable_since = models.DateTimeField(null=True, blank=True)
    unreachable_reason = models.TextField(blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="compute_name_unique")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_busy(self) -> bool:
        return self.state in BUSY_STATES

    @property
    def is_attached(self) -> bool:
        return self.kind not in (ComputeKind.LOCAL, ComputeKind.CLUSTER)

    @property
    def is_ssh(self) -> bool:
        """Reached over SSH: a VM, or an HDInsight / Spark head node."""
        return self.kind in SSH_KINDS


class OperationState(models.TextChoices):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class ComputeOperation(models.Model):
    """One attach, check, provision or delete, with the steps a user watches."""

    target = models.ForeignKey(
        ComputeTarget, null=True, on_delete=models.SET_NULL, related_name="operations"
    )
    workspace = models.ForeignKey("studio.Workspace", on_delete=models.CASCADE)
    target_name = models.CharField(max_length=16)
    action = models.CharField(max_length=32)
    state = models.CharField(
        max_length=16, choices=OperationState.choices, default=OperationState.RUNNING
    )
    steps = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.target_name} ({self.state})"


class DockerEngine(models.Model):
    """A Docker engine a workspace owner lets managed clusters place nodes on."""

    workspace = models.ForeignKey(
        "studio.Workspace", on_delete=models.CASCADE, related_name="docker_engines"
    )
    name = models.CharField(max_length=32)
    # unix:///var/run/docker.sock, tcp://host:2376 or ssh://user@host.
    url = models.CharField(max_length=255)
    # What the last check found: CPUs, memory, GPU runtime, Docker version, node image.
    facts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # The last check that the engine answered.
    reachable_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="docker_engine_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class NodeState(models.TextChoices):
    PREPARING = "preparing", "Preparing"
    IDLE = "idle", "Idle"
    RUNNING = "running", "Running"
    LEAVING = "leaving", "Leaving"
    UNUSABLE = "unusable", "Unusable"
    PREEMPTED = "preempted", "Preempted"


# Nodes that hold (or are about to hold) a container and count towards the cluster size.
ALLOCATED_NODE_STATES = (NodeState.PREPARING, NodeState.IDLE, NodeState.RUNNING)


class Node(models.Model):
    """One node of a managed cluster: a long-lived container on a Docker engine."""

    target = models.ForeignKey(ComputeTarget, on_delete=models.CASCADE, related_name="nodes")
    engine = models.ForeignKey(
        DockerEngine, null=True, blank=True, on_delete=models.SET_NULL, related_name="nodes"
    )
    name = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, choices=NodeState.choices, default=NodeState.PREPARING)
    container_id = models.CharField(max_length=64, blank=True)
    run_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    # The limits the container really got (a size may be capped to the engine).
    nano_cpus = models.BigIntegerField(default=0)
    memory_bytes = models.BigIntegerField(default=0)
    network = models.CharField(max_length=64, blank=True)
    # Where the node's sshd listens, when the cluster has an SSH admin user.
    ssh_port = models.PositiveIntegerField(null=True, blank=True)
    # When the engine started the node's container, as the engine says it: a later start
    # means the container restarted under its run (its engine restarted).
    container_started_at = models.CharField(max_length=40, blank=True)
    error = models.TextField(blank=True)
    idle_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    state_changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return self.name or f"node {self.pk}"

    @property
    def cpus(self) -> float:
        return self.nano_cpus / 1_000_000_000

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / 1024**3


class NodeRequest(models.Model):
    """A run waiting for a node of a cluster: what makes the cluster scale up."""

    target = models.ForeignKey(
        ComputeTarget, on_delete=models.CASCADE, related_name="node_requests"
    )
    run_id = models.BigIntegerField(unique=True)
    # A multi-node run waits until this many nodes are idle at once.
    node_count = models.PositiveIntegerField(default=1)
    requested_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["requested_at", "pk"]

    def __str__(self) -> str:
        return f"run {self.run_id} waits for {self.target}"


class TerminalEnd(models.TextChoices):
    CLOSED = "closed", "closed by the user"
    IDLE = "idle", "closed after the idle limit"
    SHELL_EXIT = "exit", "the shell exited"
    FAILED = "failed", "could not open"


class TerminalSession(models.Model):
    """Who opened a terminal on a target, when, and for how long; never what was typed."""

    target = models.ForeignKey(
        ComputeTarget, on_delete=models.CASCADE, related_name="terminal_sessions"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept when the account is deleted: the record is for whoever audits the target.
    username = models.CharField(max_length=150)
    # On a cluster, the node; for a run's terminal, the run (kept as a number: runs go).
    node_name = models.CharField(max_length=64, blank=True)
    run_id = models.BigIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    end = models.CharField(max_length=16, choices=TerminalEnd.choices, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return (
            f"terminal of {self.username} on {self.target_id} at {self.started_at:%Y-%m-%d %H:%M}"
        )

    @property
    def duration(self):
        return (self.ended_at - self.started_at) if self.ended_at else None
