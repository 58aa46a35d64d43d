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
