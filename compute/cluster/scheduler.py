"""The managed-cluster scheduler: the nodes runs ask for and give back.

Runs ask for a node with `node_request` and give it back with `node_release`;
the autoscaler (compute.cluster.autoscaler) turns waiting requests into node
containers. Claiming a node is a conditional update, so a run and a scale-down
never both get the same idle node.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from urllib.parse import urlsplit

import docker
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compute.cluster.engines import (
    EngineError,
    engine_client,
)
from compute.models import (
    ComputeKind,
    ComputeState,
    ComputeTarget,
    Node,
    NodeRequest,
    NodeState,
)
from compute.signals import node_ready
from studio.tasks import task_enqueue

logger = logging.getLogger(__name__)

# A node still preparing after this long is given up on (its pass must have died).
PREPARE_TIMEOUT = timedelta(minutes=2)
# After a node failed to start, wait this long before trying another one.
START_RETRY_AFTER = timedelta(seconds=30)
# Preempted and unusable nodes stay in the node table this long, so users see what happened.
LOST_NODE_KEEP = timedelta(minutes=10)

LOW_PRIORITY = "lowpriority"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def container_labels(target: ComputeTarget, node_name: str) -> dict[str, str]:
    return {
        "trainyard.instance": settings.TRAINYARD_INSTANCE_ID,
        "trainyard.cluster": str(target.pk),
        "trainyard.node": node_name,
    }


def cluster_label_filter(target: ComputeTarget) -> dict:
    return {
        "label": [
            f"trainyard.instance={settings.TRAINYARD_INSTANCE_ID}",
            f"trainyard.cluster={target.pk}",
        ]
    }


# --- the contract runs use -------------------------------------------------------------


def node_request(*, target: ComputeTarget, run_id: int, count: int = 1) -> list[Node] | None:
    """Give run `run_id` `count` idle nodes of the cluster at once, or None while it waits.

    Asking again for the same run returns the nodes it already has, in the
    same order (the first carries rank 0). Nodes are claimed all together or
    not at all, so two multi-node runs never hold half of what each needs.
    When too few nodes are idle the run is recorded as waiting, which makes
    the next autoscale pass (started at once) add nodes up to max nodes;
    `cluster_wait_reason` says why it waits.
    """
    if target.kind != ComputeKind.CLUSTER:
        raise ValueError(f"{target.name} is not a managed cluster")
    with transaction.atomic():
        target = ComputeTarget.objects.select_for_update().get(pk=target.pk)
        held = list(
            Node.objects.filter(target=target, run_id=run_id, state=NodeState.RUNNING).order_by(
                "pk"
            )
        )
        if len(held) == count:
            return held
        now = timezone.now()
        if held:
            # What is left of an earlier attempt (a node of it was lost): start afresh.
            Node.objects.filter(pk__in=[n.pk for n in held]).update(
                state=NodeState.IDLE, run_id=None, idle_since=now, state_changed_at=now
            )
        if target.state == ComputeState.SUCCEEDED:
            # Runs that waited longer come first: a one-node run does not take the node a
            # multi-node run ahead of it is waiting for.
            ahead = _needed_before(target, run_id)
            idle = list(
                Node.objects.filter(target=target, state=NodeState.IDLE).order_by(
                    "idle_since", "pk"
                )[ahead : ahead + count]
            )
            if len(idle) == count:
                Node.objects.filter(pk__in=[n.pk for n in idle]).update(
                    state=NodeState.RUNNING, run_id=run_id, idle_since=None, state_changed_at=now
                )
                NodeRequest.objects.filter(run_id=run_id).delete()
                return list(Node.objects.filter(pk__in=[n.pk for n in idle]).order_by("pk"))
        NodeRequest.objects.update_or_create(
            run_id=run_id, defaults={"target": target, "node_count": count}
        )
        task_enqueue("compute.tasks.cluster_autoscale_task", target.pk)
    return None


def _needed_before(target: ComputeTarget, run_id: int) -> int:
    """Nodes the runs that have waited longer than run `run_id` need."""
    waiting = NodeRequest.objects.filter(target=target).exclude(run_id=run_id)
    own = NodeRequest.objects.filter(run_id=run_id).first()
    if own is not None:
        waiting = waiting.filter(
            Q(requested_at__lt=own.requested_at) | Q(requested_at=own.requested_at, pk__lt=own.pk)
        )
    return sum(waiting.values_list("node_count", flat=True))


def node_release(*, run_id: int) -> None:
    """Run `run_id` is done (or gave up waiting): its node becomes idle again."""
    now = timezone.now()
    with transaction.atomic():
        NodeRequest.objects.filter(run_id=run_id).delete()
        held = Node.objects.filter(run_id=run_id, state=NodeState.RUNNING)
        freed = list(held.values_list("target_id", "name"))
        held.update(state=NodeState.IDLE, run_id=None, idle_since=now, state_changed_at=now)
        for target_id, name in freed:
            transaction.on_commit(
                partial(node_ready.send, sender=Node, target_id=target_id, node_name=name)
            )


def node_address(node: Node) -> str:
    """Where other nodes of the cluster reach this node (for a multi-node run's rank 0).

    A node on the host network is reached at its engine's host; a node on a
    Docker network at its address there.
    """
    if node.network and node.network != "host":
        container = node_docker(node).containers.get(node.container_id)
        networks = container.attrs["NetworkSettings"]["Networks"]
        return networks[node.network]["IPAddress"]
    assert node.engine is not None
    host = urlsplit(node.engine.url).hostname
    return host if host and not node.engine.url.startswith("unix://") else "127.0.0.1"


def node_docker(node: Node) -> docker.DockerClient:
    """A client for the engine the node's container lives on.

    `node_docker(node).containers.get(node.container_id)` is the node's container.
    """
    if node.engine is None:
        raise EngineError(f"Node {node.name} has no Docker engine any more")
    return engine_client(node.engine.url)


@dataclass(frozen=True)
class ClusterCounts:
    preparing: int
    idle: int
    running: int
    leaving: int
    waiting: int
    min_nodes: int
    max_nodes: int
    # Nodes the waiting runs need together (a multi-node run needs several).
    waiting_nodes: int = 0

    @property
    def current(self) -> int:
        return self.preparing + self.idle + self.running

    @property
    def target(self) -> int:
        """How many nodes the autoscaler is heading for."""
        return max(self.min_nodes, min(self.max_nodes, self.running + self.waiting_nodes))


def cluster_counts(target: ComputeTarget) -> ClusterCounts:
    by_state = dict.fromkeys(NodeState.values, 0)
    for state in Node.objects.filter(target=target).values_list("state", flat=True):
        by_state[state] += 1
    requests = list(NodeRequest.objects.filter(target=target).values_list("node_count", flat=True))
    return ClusterCounts(
        preparing=by_state[NodeState.PREPARING],
        idle=by_state[NodeState.IDLE],
        running=by_state[NodeState.RUNNING],
        leaving=by_state[NodeState.LEAVING],
        waiting=len(requests),
        waiting_nodes=sum(requests),
        min_nodes=int(target.config.get("min_nodes", 0)),
        max_nodes=int(target.config.get("max_nodes", 0)),
    )


def cluster_wait_reason(target: ComputeTarget) -> str:
    """Why the cluster is or is not scaling, in the words the detail page shows."""
    if target.state != ComputeState.SUCCEEDED:
        if target.state == ComputeState.FAILED:
            return f"cluster is Failed: {target.error}" if target.error else "cluster is Failed"
        return f"cluster is {target.state}"
    c = cluster_counts(target)
    waiting = f"{_plural(c.waiting, 'run')} waiting"
    if c.preparing:
        reason = f"scaling up: {_plural(c.preparing, 'node')} preparing"
        return f"{waiting}, {reason}" if c.waiting else reason
    if c.waiting:
        if c.current >= c.max_nodes:
            return f"{waiting}, at max nodes {c.max_nodes}"
        failure = recent_start_failure(target)
        if failure is not None:
            retry_in = (failure.state_changed_at + START_RETRY_AFTER - timezone.now()).seconds
            return f"{waiting}: a node failed to start ({failure.error}); retrying in {retry_in} s"
        return f"{waiting}, scaling up at the next autoscale pass"
    if c.leaving:
        return f"scaling down: {_plural(c.leaving, 'node')} leaving"
    idle_seconds = int(target.config.get("idle_seconds_before_scaledown", 120))
    if c.idle and c.current > c.min_nodes:
        return (
            f"{_plural(c.idle, 'idle node')}: removed after {idle_seconds} s idle, "
            f"down to min nodes {c.min_nodes}"
        )
    if c.current < c.min_nodes:
        return f"scaling up to min nodes {c.min_nodes} at the next autoscale pass"
    return f"steady at {_plural(c.current, 'node')} (min {c.min_nodes}, max {c.max_nodes})"


def recent_start_failure(target: ComputeTarget) -> Node | None:
    return (
        Node.objects.filter(
            target=target,
            state=NodeState.UNUSABLE,
            container_id="",
            state_changed_at__gt=timezone.now() - START_RETRY_AFTER,
        )
        .order_by("-state_changed_at")
        .first()
    )


def node_restarted(node: Node, container) -> bool:
    """Whether the engine started the node's container again since the node started."""
    started_at = container.attrs.get("State", {}).get("StartedAt")
    return bool(node.container_started_at) and started_at != node.container_started_at
