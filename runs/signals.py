"""What runs do when the compute layer reports news about a run's node."""

from django.dispatch import receiver

from compute.signals import node_lost
from runs import services


@receiver(node_lost, dispatch_uid="runs-node-lost")
def on_node_lost(sender, *, run_id: int, preempted: bool, reason: str, **kwargs) -> None:
    if preempted:
        services.run_requeue(run_id=run_id, reason=reason)
    else:
        services.run_fail(run_id=run_id, reason=reason)
