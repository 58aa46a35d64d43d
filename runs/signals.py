"""What runs do when the compute layer reports news about a run's node."""

from django.dispatch import receiver

from compute.models import NodeRequest
from compute.signals import node_lost, node_ready
from runs.services.lifecycle import run_fail, run_requeue, run_start_soon


@receiver(node_lost, dispatch_uid="runs-node-lost")
def on_node_lost(sender, *, run_id: int, preempted: bool, reason: str, **kwargs) -> None:
    if preempted:
        run_requeue(run_id=run_id, reason=reason)
    else:
        run_fail(run_id=run_id, reason=reason)


@receiver(node_ready, dispatch_uid="runs-node-ready")
def on_node_ready(sender, *, target_id: int, **kwargs) -> None:
    """Runs waiting for the cluster try for a node now, the longest waiting first."""
    for run_id in NodeRequest.objects.filter(target_id=target_id).values_list("run_id", flat=True):
        run_start_soon(run_id=run_id)
