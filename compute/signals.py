from typing import Any

from django.contrib.auth.models import User
from django.dispatch import Signal, receiver

from compute.models import LOCAL_TARGET_NAME, ComputeKind, ComputeState, ComputeTarget
from studio.models import Workspace
from studio.signals import workspace_created

# Sent when a managed-cluster node that carried a run disappears (its container
# was killed or removed outside Trainyard, the cluster was deleted, or its engine
# restarted under the run).
# Keyword arguments: run_id (int), preempted (bool: True on a low-priority
# cluster or after an engine restart, where the run should go back to the queue;
# False means the run fails), reason (str, for the user).
node_lost = Signal()

# Sent when a node of a cluster becomes idle (a new node started, or a run let
# go of it), so runs waiting for that cluster can ask for a node at once instead
# of at their next retry. Keyword arguments: target_id (int), node_name (str).
node_ready = Signal()


@receiver(workspace_created, dispatch_uid="compute-local-target")
def local_target_create(
    sender: type[Workspace], *, workspace: Workspace, owner: User, **kwargs: Any
) -> None:
    """Every workspace has the built-in local target, as in the studio."""
    ComputeTarget.objects.create(
        workspace=workspace,
        name=LOCAL_TARGET_NAME,
        kind=ComputeKind.LOCAL,
        state=ComputeState.SUCCEEDED,
        created_by=owner,
    )
