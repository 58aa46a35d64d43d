import hashlib
import json

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.functional import cached_property

from runs.snapshots.capture import parse_manifest
from studio.blobs import blob_path


class Framework(models.TextChoices):
    PYTHON = "Python"
    PYSPARK = "PySpark"


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


class RunQuerySet(models.QuerySet):
    def unfinished(self) -> "RunQuerySet":
        """The runs that have not ended yet (so compute can ask `target.runs.unfinished()`)."""
        return self.exclude(status__in=FINAL_STATUSES)


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

    # What to run.
    environment = models.ForeignKey(
        "Environment", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    snapshot = models.ForeignKey(
        "Snapshot", null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    # Repository, branch and commit the source came from: the run's, not the snapshot's,
    # as the same tree may be submitted from another branch or commit.
    git = models.JSONField(default=dict, blank=True)
    entry_script = models.CharField(max_length=512, blank=True)
    arguments = models.JSONField(default=list, blank=True)
    # Python runs the entry script with the environment's interpreter; PySpark
    # submits it with spark-submit (HDInsight / Spark targets only).
    framework = models.CharField(max_length=16, choices=Framework.choices, default=Framework.PYTHON)
    node_count = models.PositiveIntegerField(default=1)
    max_duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    # Regular expressions with named groups: each group is a metric read from stdout.
    metric_patterns = models.JSONField(default=list, blank=True)
    stderr_tail = models.TextField(blank=True)
    cancel_reason = models.TextField(blank=True)

    # Where and how it executes: the backend's handle (paths, process group,
    # container), which node carries it, and the run monitor holding it.
    handle = models.JSONField(null=True, blank=True)
    node_name = models.CharField(max_length=64, blank=True)
    lease_owner = models.CharField(max_length=128, blank=True, db_index=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # How far the monitor has read the run's metrics file on the target, and
    # how far it has scanned the stored stdout for metric patterns.
    metrics_file_offset = models.BigIntegerField(default=0)
    metrics_stdout_offset = models.BigIntegerField(default=0)

    objects = RunQuerySet.as_manager()

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
    # The container gets every GPU of the target (`docker run --gpus all`).
    docker_gpus = models.BooleanField(default=False)
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

    @property
    def definition_hash(self) -> str:
        """What a built copy of the environment on a target is keyed by."""
        definition = json.dumps(
            [self.kind, self.interpreter_path, self.pip_requirements, self.conda_yaml],
            sort_keys=True,
        )
        return hashlib.sha256(definition.encode()).hexdigest()[:16]


class RunEvent(models.Model):
    """One step of a run's timeline: the status it entered, when, and why."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=20, choices=RunStatus.choices)
    message = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.run_id} {self.status}"


class Snapshot(models.Model):
    """A captured source directory: a manifest of paths pointing at content-addressed blobs."""

    workspace = models.ForeignKey(
        "studio.Workspace", on_delete=models.CASCADE, related_name="snapshots"
    )
    # sha256 of the manifest, which is stored as a blob (runs.snapshots.manifest_text):
    # the same tree gives the same snapshot.
    digest = models.CharField(max_length=64)
    file_count = models.PositiveIntegerField(default=0)
    total_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "digest"], name="snapshot_digest_unique")
        ]

    def __str__(self) -> str:
        return self.digest[:12]

    @cached_property
    def manifest(self) -> list[list]:
        """[[path, sha256, size, executable], ...] sorted by path."""
        return parse_manifest(blob_path(self.digest).read_bytes())


class SnapshotBlob(models.Model):
    """A file content one of a workspace's snapshots holds, by its sha256.

    Blobs are stored once for all workspaces; these rows are what a workspace
    may see of the store: a submit may name a file by its digest instead of
    sending it only when the workspace holds that digest already.
    """

    workspace = models.ForeignKey(
        "studio.Workspace", on_delete=models.CASCADE, related_name="snapshot_blobs"
    )
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "sha256"], name="snapshot_blob_unique")
        ]

    def __str__(self) -> str:
        return self.sha256[:12]


class Metric(models.Model):
    """One value of a metric series a run logged."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metrics")
    name = models.CharField(max_length=255)
    step = models.IntegerField()
    value = models.FloatField()
    logged_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "step", "pk"]
        indexes = [models.Index(fields=["run", "name", "step"])]

    def __str__(self) -> str:
        return f"{self.name}[{self.step}]={self.value}"


class RunFile(models.Model):
    """A file the run wrote to ./outputs or ./logs, kept as a blob."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1024)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["run", "path"], name="run_file_unique")]

    def __str__(self) -> str:
        return self.path
