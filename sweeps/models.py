from django.db import models


class Sweep(models.Model):
    """A hyperparameter sweep: its parent Run (which holds the snapshot, entry script, target
    and environment every child runs with) and the hdconfig file it was submitted with."""

    run = models.OneToOneField("runs.Run", on_delete=models.CASCADE, related_name="sweep")
    definition = models.TextField()
    # Random and bayesian sampling draw from it, so the sweep can be drawn again alike.
    seed = models.BigIntegerField()

    def __str__(self) -> str:
        return f"sweep {self.run_id}"


class SweepChild(models.Model):
    """One child run of a sweep and the hyperparameters it was given as script arguments."""

    sweep = models.ForeignKey(Sweep, on_delete=models.CASCADE, related_name="children")
    run = models.OneToOneField("runs.Run", on_delete=models.CASCADE, related_name="sweep_child")
    # The child's place in the sweep's draw: two advances of one sweep cannot both add child n.
    index = models.PositiveIntegerField()
    hyperparameters = models.JSONField(default=dict)

    class Meta:
        ordering = ["index"]
        constraints = [
            models.UniqueConstraint(fields=["sweep", "index"], name="sweep_child_index_unique")
        ]

    def __str__(self) -> str:
        return f"{self.sweep} child {self.index}"
