from django.conf import settings
from django.db import models
from django.utils import timezone


class Experiment(models.Model):
    """Groups runs; runs are numbered within it."""

    workspace = models.ForeignKey(
        "studio.Workspace", on_delete=models.CASCADE, related_name="experiments"
    )
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="experiment_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class RunStatus(models.TextChoices):
    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    PREPARING = "Preparing"
    STARTING = "Starting"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    NOT_RESPONDING = "NotResponding"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"


FINAL_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED)


class Run(models.Model):
    workspace = models.ForeignKey("studio.Workspace", on_delete=models.CASCADE, related_name="runs")
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="runs")
    number = models.PositiveIntegerField()
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    display_name = models.CharField(max_length=255, blank=True)
    status = models.CharField(
        max_length=20, choices=RunStatus.choices, default=RunStatus.NOT_STARTED
    )
    status_reason = models.TextField(blank=True)
    target = models.ForeignKey(
        "compute.ComputeTarget",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
    )
    # Kept so the run's history still names its target after a detach.
    target_name = models.CharField(max_length=16, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "number"], name="run_number_unique")
        ]
        indexes = [models.Index(fields=["workspace", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.experiment.name} #{self.number}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def duration(self):
        if not self.started_at:
            return None
        return (self.ended_at or timezone.now()) - self.started_at


class EnvironmentKind(models.TextChoices):
    CURATED = "curated", "Curated"
    USER_MANAGED = "user", "User-managed"
    SYSTEM_MANAGED = "system", "System-managed"


class Environment(models.Model):
    """What a run's Python comes from. Curated ones belong to no workspace."""

    workspace = models.ForeignKey(
        "studio.Workspace",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="environments",
    )
    name = models.CharField(max_length=255)
    version = models.PositiveIntegerField(default=1)
    kind = models.CharField(max_length=16, choices=EnvironmentKind.choices)
    description = models.TextField(blank=True)
    interpreter_path = models.CharField(max_length=512, blank=True)
    pip_requirements = models.TextField(blank=True)
    conda_yaml = models.TextField(blank=True)
    docker_image = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "name", "version"], name="environment_version_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"
