from django.db import models


class Pipeline(models.Model):
    """A pipeline run: its parent Run, and the definition file it was submitted with."""

    run = models.OneToOneField("runs.Run", on_delete=models.CASCADE, related_name="pipeline")
    name = models.CharField(max_length=255, blank=True)
    definition = models.TextField()

    def __str__(self) -> str:
        return self.name or f"pipeline {self.run_id}"


class PipelineStep(models.Model):
    """One step of a pipeline: a child run on its own compute target, and its data."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="steps")
    run = models.OneToOneField("runs.Run", on_delete=models.CASCADE, related_name="pipeline_step")
    name = models.CharField(max_length=64)
    position = models.PositiveIntegerField()
    # script, pyspark, databricks, datalake or batch (pipelines.definition.STEP_TYPES).
    step_type = models.CharField(max_length=16)
    # What the step's service needs beyond the script: task kind, cluster, pool, command...
    settings = models.JSONField(default=dict, blank=True)
    # Data names: read from the producers' outputs/<name>, written to this step's outputs/<name>.
    inputs = models.JSONField(default=list, blank=True)
    outputs = models.JSONField(default=list, blank=True)
    # Names of the steps this one waits for (producers of its inputs and its `after`).
    depends_on = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["pipeline", "name"], name="pipeline_step_name_unique")
        ]

    def __str__(self) -> str:
        return self.name
