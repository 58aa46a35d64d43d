"""The managed-cluster autoscaler: it keeps each cluster's nodes.

`cluster_autoscale` (every few seconds, from Celery beat) turns waiting
requests into new node containers up to max nodes, removes nodes idle for
longer than the cluster's idle time down to min nodes, and notices node
containers that vanished (preemption).

Every pass decides in a short transaction that locks the cluster row, and
talks to Docker outside it: counting `preparing` nodes keeps two passes
from both adding the same node.
"""

from __future__ import annotations

import contextlib
import io
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

import docker
import paramiko
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from docker.errors import DockerException, ImageNotFound, NotFound

from compute.cluster.engines import (
    ENGINE_ERRORS,
    EngineError,
    EngineFacts,
    engine_client,
    engine_client_forget,
    node_image_missing_message,
    node_limits,
    unreachable_message,
)
from compute.cluster.node_exec import node_exec
from compute.cluster.scheduler import (
    LOST_NODE_KEEP,
    LOW_PRIORITY,
    PREPARE_TIMEOUT,
    cluster_counts,
    cluster_label_filter,
    container_labels,
    node_restarted,
    recent_start_failure,
)
from compute.cluster.sizes import vm_size_get
from compute.models import (
    ALLOCATED_NODE_STATES,
    ComputeKind,
    ComputeState,
    ComputeTarget,
    DockerEngine,
    Node,
    NodeState,
)
from compute.signals import node_lost, node_ready

logger = logging.getLogger(__name__)


def cluster_engines(target: ComputeTarget) -> list[DockerEngine]:
    """The engines the cluster may place nodes on: those its size fitted at provisioning."""
    names = list((target.config.get("node_limits") or {}).keys())
    return list(DockerEngine.objects.filter(workspace=target.workspace, name__in=names))


def cluster_autoscale(*, target: ComputeTarget) -> None:
    """One autoscale pass: notice lost nodes, then add or remove nodes towards the target."""
    if target.kind != ComputeKind.CLUSTER or target.state != ComputeState.SUCCEEDED:
        return
    _reconcile(target)
    to_start, to_remove = _plan(target)
    for node in to_remove:
        _node_remove(node)
    # The nodes a pass starts on one engine join the same network: look it up once.
    networks: dict[int, NodeNetwork] = {}
    for node in to_start:
        _node_start(target, node, networks)


@dataclass(frozen=True)
class NodeNetwork:
    """The Docker network a cluster's nodes join on an engine, and why, as the page says it."""

    name: str
    reason: str


def node_network(engine: DockerEngine, target: ComputeTarget) -> NodeNetwork:
    """The cluster's virtual network where the engine has a Docker network of that name.

    Raises what talking to the engine raises: an engine that cannot list its
    networks cannot start a node either.
    """
    vnet = target.config.get("vnet_name")
    if not vnet:
        return NodeNetwork("host", "no virtual network set: nodes use the host network")
    found = engine_client(engine.url).networks.list(names=[vnet])
    if any(network.name == vnet for network in found):
        return NodeNetwork(vnet, f"{vnet}: nodes join that Docker network on engine {engine.name}")
    return NodeNetwork(
        "host",
        f"{vnet}: no Docker network of that name on engine {engine.name}, "
        "nodes use the host network",
    )


def _pass_network(
    target: ComputeTarget, engine: DockerEngine, networks: dict[int, NodeNetwork]
) -> NodeNetwork:
    """The engine's network for this pass; a change since the last one shows on the page."""
    if engine.pk not in networks:
        network = node_network(engine, target)
        networks[engine.pk] = network
        shown = target.config["node_limits"][engine.name]
        if (shown.get("network"), shown.get("network_reason")) != (network.name, network.reason):
            _network_record(target, engine.name, network)
    return networks[engine.pk]


def _network_record(target: ComputeTarget, engine_name: str, network: NodeNetwork) -> None:
    with transaction.atomic():
        locked = ComputeTarget.objects.select_for_update().get(pk=target.pk)
        limits = dict(locked.config.get("node_limits") or {})
        if engine_name not in limits:
            return
        limits[engine_name] = dict(
            limits[engine_name], network=network.name, network_reason=network.reason
        )
        locked.config = dict(locked.config, node_limits=limits)
        locked.save(update_fields=["config", "updated_at"])
    target.config = locked.config


def clusters_autoscale() -> None:
    for target in ComputeTarget.objects.filter(
        kind=ComputeKind.CLUSTER, state=ComputeState.SUCCEEDED
    ):
        try:
            cluster_autoscale(target=target)
        except Exception:
            # One broken cluster must not stop the others from scaling.
            logger.exception("Autoscale pass of cluster %s failed", target.pk)


def _plan(target: ComputeTarget) -> tuple[list[Node], list[Node]]:
    """Decide, under the cluster's row lock, which nodes to add and which to remove."""
    now = timezone.now()
    with transaction.atomic():
        target = ComputeTarget.objects.select_for_update().get(pk=target.pk)
        c = cluster_counts(target)
        to_remove: list[Node] = []
        idle = Node.objects.filter(target=target, state=NodeState.IDLE)
        if c.current > c.max_nodes:
            # Max nodes was lowered: idle nodes above it go at once.
            candidates = list(idle.order_by("-idle_since")[: c.current - c.max_nodes])
        else:
            idle_seconds = int(target.config.get("idle_seconds_before_scaledown", 120))
            expired = idle.filter(idle_since__lte=now - timedelta(seconds=idle_seconds))
            candidates = list(expired.order_by("idle_since")[: max(0, c.current - c.target)])
        for node in candidates:
            left = Node.objects.filter(pk=node.pk, state=NodeState.IDLE).update(
                state=NodeState.LEAVING, state_changed_at=now
            )
            if left:
                to_remove.append(node)

        to_start: list[Node] = []
        missing = c.target - c.current
        if missing > 0 and recent_start_failure(target) is None:
            engines = cluster_engines(target)
            load = {e.pk: 0 for e in engines}
            for engine_id in Node.objects.filter(
                target=target, state__in=ALLOCATED_NODE_STATES, engine__in=engines
            ).values_list("engine_id", flat=True):
                load[engine_id] += 1
            for _ in range(missing if engines else 0):
                # Spread nodes: the engine with the fewest nodes of this cluster first.
                engine = min(engines, key=lambda e: (load[e.pk], e.name))
                load[engine.pk] += 1
                to_start.append(
                    Node.objects.create(
                        target=target,
                        engine=engine,
                        name=f"{target.name}-{secrets.token_hex(3)}",
                        state=NodeState.PREPARING,
                    )
                )
    return to_start, to_remove


def _node_start(target: ComputeTarget, node: Node, networks: dict[int, NodeNetwork]) -> None:
    """Create the node's container, set up node access, and mark the node idle."""
    size = vm_size_get(target.config["vm_size"])
    engine = node.engine
    assert size is not None and engine is not None
    facts = EngineFacts.from_dict(engine.facts)
    assert facts is not None
    limits = node_limits(size, facts)
    create_kwargs: dict = {
        "image": settings.CLUSTER_NODE_IMAGE,
        "command": ["sleep", "infinity"],
        "init": True,
        "name": f"trainyard-{settings.TRAINYARD_INSTANCE_ID}-{node.name}",
        "labels": container_labels(target, node.name),
        "nano_cpus": limits.nano_cpus,
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,
        # The engine starts the node again when it restarts, its runs' processes dead: the
        # next pass requeues them and replaces the node. A container someone stops, kills or
        # removes stays down, and its run fails. Not unless-stopped: an engine that was
        # killed stops its containers as it comes back, which would count as stopped by hand.
        "restart_policy": {"Name": "always"},
    }
    if size.gpus:
        create_kwargs["device_requests"] = [
            docker.types.DeviceRequest(count=size.gpus, capabilities=[["gpu"]])
        ]
    try:
        network = _pass_network(target, engine, networks).name
        if network == "host":
            create_kwargs["network_mode"] = "host"
        else:
            create_kwargs["network"] = network
        client = engine_client(engine.url)
        # Not `containers.run`: it pulls a missing image, and nodes never come from a registry.
        container = client.containers.create(**create_kwargs)
        Node.objects.filter(pk=node.pk).update(container_id=container.id)
        node.container_id = container.id
        container.start()
        container.reload()
        started_at = container.attrs["State"]["StartedAt"]
        ssh_port = _node_access_setup(target, container)
        # The node is ready when it can run Python, which is what runs need.
        result = node_exec(container, ["python3", "-c", "pass"], io.BytesIO())
        if result.exit_code != 0:
            said = (result.head + result.stderr).decode(errors="replace")
            raise DockerException(f"python3 does not run in the node container: {said[:200]}")
    except ImageNotFound:
        _node_start_failed(target, node, node_image_missing_message(engine.name))
        return
    except EngineError as exc:
        _node_start_failed(target, node, str(exc))
        return
    except (OSError, paramiko.SSHException) as exc:
        _node_start_failed(target, node, unreachable_message(engine.url, exc))
        return
    except DockerException as exc:
        _node_start_failed(
            target, node, f"Could not start the node container on engine {engine.name}: {exc}"
        )
        return
    now = timezone.now()
    ready = Node.objects.filter(pk=node.pk, state=NodeState.PREPARING).update(
        state=NodeState.IDLE,
        idle_since=now,
        state_changed_at=now,
        nano_cpus=limits.nano_cpus,
        memory_bytes=limits.memory_bytes,
        network=network,
        ssh_port=ssh_port,
        container_started_at=started_at,
    )
    if not ready:
        # The cluster was deleted (or the node given up on) while the container started.
        _container_remove(engine, node.container_id)
        return
    node_ready.send(sender=Node, target_id=target.pk, node_name=node.name)


def _node_start_failed(target: ComputeTarget, node: Node, error: str) -> None:
    logger.warning("Node %s of cluster %s did not start: %s", node.name, target.pk, error)
    assert node.engine is not None
    engine_client_forget(node.engine.url)
    try:
        _container_remove(node.engine, node.container_id)
    except (*ENGINE_ERRORS, EngineError):
        logger.warning("Could not remove the container of failed node %s", node.name)
    # container_id "" marks a start failure: the autoscaler waits before retrying.
    Node.objects.filter(pk=node.pk).update(
        state=NodeState.UNUSABLE, error=error, container_id="", state_changed_at=timezone.now()
    )


# Creates the admin user with the key, gives the node its own host key, and starts
# the node's sshd on a free port (on the engine host: nodes share its network).
# The host key is ed25519 alone: an RSA one takes seconds to generate, and every
# node start would wait for it.
# Picking a port and binding it are two steps, so another process may take the
# port in between: sshd then exits at once and the next port is tried.
_NODE_ACCESS_SCRIPT = """
set -e
[ -x /usr/sbin/sshd ] || exit 3
# Password '*' is none at all; useradd's default '!' locks the account, which sshd
# without PAM refuses even with a key. PAM stays off: its loginuid step fails in containers.
id -u "$1" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --password '*' "$1"
home=$(getent passwd "$1" | cut -d: -f6)
mkdir -p "$home/.ssh" && printf "%s\\n" "$2" > "$home/.ssh/authorized_keys"
chmod 700 "$home/.ssh" && chmod 600 "$home/.ssh/authorized_keys"
chown -R "$1:" "$home/.ssh"
host_key=/etc/ssh/ssh_host_ed25519_key
[ -s "$host_key" ] || ssh-keygen -q -t ed25519 -N "" -f "$host_key"
mkdir -p /run/sshd
for _ in 1 2 3; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])')
    if /usr/sbin/sshd -p "$port" -h "$host_key" -o UsePAM=no -o PasswordAuthentication=no \\
            -o KbdInteractiveAuthentication=no -o PermitRootLogin=no -o AllowUsers="$1" \\
            -o PidFile=/run/sshd.pid; then
        echo "$port"
        exit 0
    fi
done
exit 1
"""
# The script's exit status when the image has no sshd.
_NO_SSHD = 3


def _node_access_setup(target: ComputeTarget, container) -> int | None:
    """Let the cluster's SSH admin user log in to the node; the port its sshd listens on.

    None when the cluster has no admin user.
    """
    user = target.config.get("admin_username")
    key = target.config.get("admin_ssh_public_key")
    if not user or not key:
        return None
    out = io.BytesIO()
    result = node_exec(container, ["sh", "-c", _NODE_ACCESS_SCRIPT, "node-access", user, key], out)
    stdout, stderr = out.getvalue().decode(), result.stderr.decode()
    if result.exit_code == _NO_SSHD:
        raise DockerException(
            f"the node image {settings.CLUSTER_NODE_IMAGE} has no sshd, which the admin user "
            f"{user} needs: build the current node image with `make node-image` and unset "
            "CLUSTER_NODE_IMAGE (or set it to that image)"
        )
    if result.exit_code != 0:
        raise DockerException(f"could not set up SSH for the admin user {user}: {stderr[-300:]}")
    return int(stdout.split()[-1])


def _container_remove(engine: DockerEngine | None, container_id: str) -> None:
    if engine is None or not container_id:
        return
    with contextlib.suppress(NotFound):
        engine_client(engine.url).containers.get(container_id).remove(force=True)


def _node_remove(node: Node) -> None:
    try:
        _container_remove(node.engine, node.container_id)
    except (*ENGINE_ERRORS, EngineError) as exc:
        # The node stays `leaving`; the next pass tries again.
        logger.warning("Could not remove node %s: %s", node.name, exc)
        return
    Node.objects.filter(pk=node.pk).delete()


def _reconcile(target: ComputeTarget) -> None:
    """Notice nodes whose container vanished, and containers no node owns any more."""
    now = timezone.now()
    Node.objects.filter(
        target=target,
        state__in=(NodeState.PREEMPTED, NodeState.UNUSABLE),
        state_changed_at__lt=now - LOST_NODE_KEEP,
    ).delete()
    Node.objects.filter(
        target=target, state=NodeState.PREPARING, state_changed_at__lt=now - PREPARE_TIMEOUT
    ).update(
        state=NodeState.UNUSABLE,
        error="The node did not become ready in time.",
        state_changed_at=now,
    )
    engines = cluster_engines(target)
    nodes = list(Node.objects.filter(target=target).select_related("engine"))
    for engine in engines:
        try:
            containers = engine_client(engine.url).containers.list(
                all=True, filters=cluster_label_filter(target)
            )
        except (*ENGINE_ERRORS, EngineError) as exc:
            # An engine we cannot reach tells us nothing about its nodes: leave them be.
            engine_client_forget(engine.url)
            logger.warning("Autoscale of cluster %s: engine %s: %s", target.pk, engine.name, exc)
            continue
        by_name = {c.labels.get("trainyard.node"): c for c in containers}
        for node in nodes:
            if node.engine_id != engine.pk:
                continue
            container = by_name.pop(node.name, None)
            if node.state in (NodeState.IDLE, NodeState.RUNNING) and (
                container is None or container.status != "running"
            ):
                _node_lost(target, node, container)
            elif node.state in (NodeState.IDLE, NodeState.RUNNING) and node_restarted(
                node, container
            ):
                _node_restarted(target, node, container)
            elif node.state == NodeState.LEAVING:
                if container is None:
                    Node.objects.filter(pk=node.pk).delete()
                else:
                    _node_remove(node)
            elif node.state in (NodeState.PREEMPTED, NodeState.UNUSABLE) and container:
                container.remove(force=True)
        _orphans_remove(target, by_name)


def _orphans_remove(target: ComputeTarget, containers_by_node: dict) -> None:
    """Remove the containers whose node is gone.

    A concurrent pass may have added a node and started its container after
    this pass read the nodes; a node row is committed before its container is
    created, so reading the rows again now finds every node that owns one.
    """
    owned = set(
        Node.objects.filter(target=target, name__in=list(containers_by_node)).values_list(
            "name", flat=True
        )
    )
    for name, container in containers_by_node.items():
        if name not in owned:
            container.remove(force=True)


def _node_restarted(target: ComputeTarget, node: Node, container) -> None:
    """Replace a node whose engine restarted: its run's processes died, so the run goes
    back to the queue; the node (without its sshd, its runs' state) is not trusted again."""
    reason = (
        f"The Docker engine of node {node.name} of cluster {target.name} restarted "
        "(or its container was restarted); the run is queued again"
    )
    replaced = Node.objects.filter(pk=node.pk, state=node.state).update(
        state=NodeState.UNUSABLE, error=reason, idle_since=None, state_changed_at=timezone.now()
    )
    if not replaced:
        return
    container.remove(force=True)
    if node.state == NodeState.RUNNING and node.run_id is not None:
        node_lost.send(sender=Node, run_id=node.run_id, preempted=True, reason=reason)


def _node_lost(target: ComputeTarget, node: Node, container) -> None:
    low_priority = target.config.get("vm_priority") == LOW_PRIORITY
    how = "was removed" if container is None else f"stopped ({container.status})"
    reason = f"Node {node.name} of cluster {target.name} {how} outside Trainyard"
    if low_priority:
        reason += "; the cluster is low priority, so the node counts as preempted"
    now = timezone.now()
    lost = Node.objects.filter(pk=node.pk, state=node.state).update(
        state=NodeState.PREEMPTED if low_priority else NodeState.UNUSABLE,
        error=reason,
        idle_since=None,
        state_changed_at=now,
    )
    if not lost:
        return
    if container is not None:
        container.remove(force=True)
    if node.state == NodeState.RUNNING and node.run_id is not None:
        node_lost.send(sender=Node, run_id=node.run_id, preempted=low_priority, reason=reason)
