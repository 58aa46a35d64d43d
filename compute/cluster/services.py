"""Managed clusters: create, provision, update and delete; Docker engines to host them."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from compute.cluster.autoscaler import cluster_autoscale, node_network
from compute.cluster.engines import (
    ENGINE_ERRORS,
    ENGINE_URL_SCHEMES,
    EngineError,
    EngineFacts,
    engine_check,
    engine_client,
    engine_client_forget,
    engine_url_check,
    node_limits,
    size_fit_problem,
    unreachable_message,
)
from compute.cluster.node_image import Builder, NodeImageError, node_image_ensure
from compute.cluster.scheduler import LOW_PRIORITY, cluster_label_filter
from compute.cluster.sizes import vm_size_get
from compute.models import (
    ComputeKind,
    ComputeOperation,
    ComputeState,
    ComputeTarget,
    DockerEngine,
    Node,
    NodeRequest,
    NodeState,
)
from compute.names import NAME_TAKEN, compute_name_problem
from compute.operations import (
    STEP_DONE,
    STEP_FAILED,
    STEP_RUNNING,
    OperationRunner,
    operation_start,
    target_create,
)
from compute.signals import node_lost
from studio.errors import ServiceError
from studio.models import Workspace

logger = logging.getLogger(__name__)

DEFAULT_ENGINE_NAME = "local"
ENGINE_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
PRIORITIES = {"dedicated": "Dedicated", LOW_PRIORITY: "Low priority"}
ADMIN_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
SSH_PUBLIC_KEY_RE = re.compile(
    r"(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) "
    r"[A-Za-z0-9+/=]+( .*)?"
)
ADMIN_KEY_MISSING = (
    "Give the SSH public key of {user}: nodes let the admin user log in with a key only. "
    "Paste the contents of ~/.ssh/id_ed25519.pub (create it with `ssh-keygen -t ed25519`), "
    "or leave the SSH admin user empty."
)


def admin_username_problem(user: str) -> str:
    """Why `user` cannot be the nodes' SSH admin user, or "" when it can."""
    if ADMIN_USER_RE.fullmatch(user):
        return ""
    return (
        f"{user} is not a Linux user name: use lowercase letters, digits, _ or -, "
        "starting with a letter, at most 32 characters."
    )


def ssh_public_key_problem(key: str) -> str:
    """Why `key` (on one line) is not an OpenSSH public key, or "" when it is."""
    if SSH_PUBLIC_KEY_RE.fullmatch(key):
        return ""
    return (
        "This is not an OpenSSH public key: paste the one line of your .pub file "
        "(it starts with ssh-ed25519, ssh-rsa or ecdsa-sha2-…), never the private key."
    )


# --- Docker engines --------------------------------------------------------------------


def engine_default_ensure(*, workspace: Workspace) -> DockerEngine:
    """Every workspace can place nodes on the Trainyard server's own Docker engine."""
    engine, _ = DockerEngine.objects.get_or_create(
        workspace=workspace,
        name=DEFAULT_ENGINE_NAME,
        defaults={"url": settings.CLUSTER_DEFAULT_ENGINE_URL},
    )
    return engine


def engine_register(*, workspace: Workspace, name: str, url: str, user: User) -> DockerEngine:
    """Register an engine and check it at once; an unreachable one is kept with its error."""
    name, url = name.strip(), url.strip()
    if not ENGINE_NAME_RE.fullmatch(name):
        raise ServiceError(
            "An engine name is 1–32 characters: a letter first, then letters, digits, "
            "dots, hyphens or underscores."
        )
    if not url.startswith(ENGINE_URL_SCHEMES):
        raise ServiceError(
            "Give the engine as unix:///var/run/docker.sock, ssh://user@host or tcp://host:2376."
        )
    if DockerEngine.objects.filter(workspace=workspace, name=name).exists():
        raise ServiceError(f"This workspace already has a Docker engine called {name}.")
    try:
        engine_url_check(url)
    except EngineError as exc:
        raise ServiceError(str(exc)) from None
    engine = DockerEngine.objects.create(workspace=workspace, name=name, url=url, created_by=user)
    engine_check(engine)
    return engine


def engine_remove(*, engine: DockerEngine) -> None:
    in_use = Node.objects.filter(engine=engine).values_list("target__name", flat=True)
    if in_use:
        names = ", ".join(sorted(set(in_use)))
        raise ServiceError(
            f"Docker engine {engine.name} still hosts nodes of {names}: delete those clusters "
            "or lower their nodes to 0 first."
        )
    engine_client_forget(engine.url)
    engine.delete()


# --- clusters --------------------------------------------------------------------------


# Bounds a cluster's scale settings: far past what one studio drives, short of overflow.
MAX_NODES = 1000
MAX_IDLE_SECONDS = 30 * 24 * 3600


def _check_scale(*, min_nodes: int, max_nodes: int, idle_seconds: int) -> None:
    if min_nodes < 0:
        raise ServiceError("Minimum nodes cannot be negative.")
    if max_nodes < 1:
        raise ServiceError("Maximum nodes must be at least 1.")
    if max_nodes > MAX_NODES:
        raise ServiceError(
            f"Maximum nodes is at most {MAX_NODES}: past that, split the work over more "
            "than one cluster."
        )
    if min_nodes > max_nodes:
        raise ServiceError(
            f"Minimum nodes ({min_nodes}) is above maximum nodes ({max_nodes}): "
            "lower the minimum or raise the maximum."
        )
    if idle_seconds < 0:
        raise ServiceError("Idle seconds before scale down cannot be negative.")
    if idle_seconds > MAX_IDLE_SECONDS:
        raise ServiceError(
            f"Idle seconds before scale down is at most {MAX_IDLE_SECONDS} (30 days)."
        )


def cluster_create(
    *,
    workspace: Workspace,
    user: User,
    name: str,
    vm_size: str,
    vm_priority: str = "dedicated",
    min_nodes: int = 0,
    max_nodes: int,
    idle_seconds_before_scaledown: int = 120,
    engines: list[DockerEngine] | None = None,
    vnet_name: str = "",
    subnet_name: str = "",
    admin_username: str = "",
    admin_ssh_public_key: str = "",
) -> ComputeTarget:
    """Record the cluster as Creating; a background task provisions it."""
    problem = compute_name_problem(workspace=workspace, name=name)
    if problem:
        code, message = problem
        status = 409 if code == NAME_TAKEN else 400
        raise ServiceError(message, field="name", code=code, status=status)
    size = vm_size_get(vm_size)
    if size is None:
        raise ServiceError(f"{vm_size} is not a virtual machine size Trainyard knows.")
    if vm_priority not in PRIORITIES:
        raise ServiceError("Virtual machine priority is dedicated or lowpriority.")
    _check_scale(
        min_nodes=min_nodes, max_nodes=max_nodes, idle_seconds=idle_seconds_before_scaledown
    )
    admin_username = admin_username.strip()
    admin_ssh_public_key = " ".join(admin_ssh_public_key.split())
    _check_admin(admin_username, admin_ssh_public_key)
    if not engines:
        engines = [engine_default_ensure(workspace=workspace)]
    if any(engine.workspace_id != workspace.pk for engine in engines):
        raise ServiceError("Pick Docker engines of this workspace.")
    config = {
        "vm_size": size.name,
        "vm_tier": size.tier,
        "vm_priority": vm_priority,
        "min_nodes": min_nodes,
        "max_nodes": max_nodes,
        "idle_seconds_before_scaledown": idle_seconds_before_scaledown,
        "engines": sorted(engine.name for engine in engines),
        "vnet_name": vnet_name.strip(),
        "subnet_name": subnet_name.strip(),
        "admin_username": admin_username,
        "admin_ssh_public_key": admin_ssh_public_key,
    }
    with transaction.atomic():
        target = target_create(
            workspace=workspace,
            name=name,
            kind=ComputeKind.CLUSTER,
            state=ComputeState.CREATING,
            config=config,
            created_by=user,
        )
        _operation_start(target=target, user=user, action="provision")
    return target


def _check_admin(user: str, key: str) -> None:
    if key and not user:
        raise ServiceError("Give the SSH admin user name that the public key is for.")
    if user and not key:
        raise ServiceError(ADMIN_KEY_MISSING.format(user=user))
    if user:
        problem = admin_username_problem(user) or ssh_public_key_problem(key)
        if problem:
            raise ServiceError(problem)


def _operation_start(*, target: ComputeTarget, user: User, action: str) -> ComputeOperation:
    task = "cluster_provision_task" if action == "provision" else "cluster_delete_task"
    return operation_start(
        target=target, user=user, action=action, steps=[], task=f"compute.tasks.{task}"
    )


def cluster_provision(*, operation_id: int) -> None:
    """Check the engines can host the size, then bring the cluster to its minimum nodes."""
    operation = ComputeOperation.objects.select_related("target", "workspace").get(pk=operation_id)
    target = operation.target
    if target is None or target.state != ComputeState.CREATING:
        return
    size = vm_size_get(target.config["vm_size"])
    assert size is not None

    runner = OperationRunner(operation)

    def fail(error: str, step: str = "Provision") -> None:
        runner.fail(error, label=step)

    engines = list(
        DockerEngine.objects.filter(workspace=target.workspace, name__in=target.config["engines"])
    )
    if not engines:
        fail("None of the cluster's Docker engines is registered any more: register one.")
        return
    facts: dict[str, EngineFacts] = {}
    for engine in engines:
        found = engine_check(engine)
        if found is None:
            fail(engine.error)
            return
        facts[engine.name] = found
    runner.labelled(
        "Check Docker engines",
        STEP_DONE,
        "; ".join(
            f"{name}: {f.cpus} CPUs, {f.memory_gib:.1f} GiB, Docker {f.server_version}"
            + ("" if f.node_image else ", no node image yet")
            for name, f in facts.items()
        ),
    )
    for engine in engines:
        if not facts[engine.name].node_image:
            error = _node_image_build(runner, target, engine)
            if error:
                fail(error, step=_build_step_label(engine))
                return
            facts[engine.name] = replace(facts[engine.name], node_image=True)

    problems = {name: size_fit_problem(size, f, name) for name, f in facts.items()}
    fitting = [name for name, problem in problems.items() if not problem]
    if not fitting:
        fail(f"No selected Docker engine can host {size.name}: {'; '.join(problems.values())}.")
        return
    warnings = [
        f"Engine {name} is not used: {problem}." for name, problem in problems.items() if problem
    ]
    node_limits_by_engine = {}
    for name in fitting:
        limits = node_limits(size, facts[name])
        engine = next(e for e in engines if e.name == name)
        try:
            network = node_network(engine, target)
        except EngineError as exc:
            fail(str(exc))
            return
        except ENGINE_ERRORS as exc:
            engine_client_forget(engine.url)
            fail(unreachable_message(engine.url, exc))
            return
        node_limits_by_engine[name] = {
            "cpus": limits.cpus,
            "memory_bytes": limits.memory_bytes,
            "cpu_capped": limits.cpu_capped,
            "engine_cpus": facts[name].cpus,
            "network": network.name,
            "network_reason": network.reason,
        }
        if limits.cpu_capped:
            warnings.append(
                f"Nodes on engine {name} get {limits.cpus:g} CPUs instead of the "
                f"{size.vcpus} vCPUs of {size.name}: the engine has {facts[name].cpus} CPUs."
            )
    runner.labelled(
        "Size the nodes",
        STEP_DONE,
        f"{size.describe()} on {', '.join(fitting)}",
    )
    config = dict(target.config, node_limits=node_limits_by_engine)
    ComputeTarget.objects.filter(pk=target.pk, state=ComputeState.CREATING).update(
        state=ComputeState.SUCCEEDED, config=config, warnings=warnings, error=""
    )
    target.refresh_from_db()
    min_nodes = int(config["min_nodes"])
    if min_nodes:
        cluster_autoscale(target=target)
        ready = Node.objects.filter(target=target, state=NodeState.IDLE).count()
        runner.labelled(
            "Start minimum nodes",
            STEP_DONE if ready >= min_nodes else STEP_FAILED,
            f"{ready} of {min_nodes} ready",
        )
    runner.finish()


def _build_step_label(engine: DockerEngine) -> str:
    return f"Build the node image on {engine.name}"


def _node_image_build(runner: OperationRunner, target: ComputeTarget, engine: DockerEngine) -> str:
    """Give the engine the node image, its progress shown live as a step; the error, or ""."""
    label = _build_step_label(engine)

    def progress(detail: str) -> None:
        runner.labelled(label, STEP_RUNNING, detail)

    progress(f"{settings.CLUSTER_NODE_IMAGE} is not on this engine: building it (about a minute)")
    try:
        done = node_image_ensure(
            engine.url,
            builder=Builder(workspace_id=target.workspace_id, label=f"cluster {target.name}"),
            progress=progress,
        )
    except NodeImageError as exc:
        return f"Could not build the node image on Docker engine {engine.name}: {exc}"
    runner.labelled(label, STEP_DONE, done)
    engine_check(engine)
    return ""


def cluster_update(
    *, target: ComputeTarget, min_nodes: int, max_nodes: int, idle_seconds_before_scaledown: int
) -> ComputeTarget:
    """Change the scale settings; the next autoscale pass acts on them."""
    if target.kind != ComputeKind.CLUSTER:
        raise ServiceError(f"{target.name} is not a managed cluster: only clusters have nodes.")
    if target.state == ComputeState.DELETING:
        raise ServiceError(f"{target.name} is being deleted.")
    _check_scale(
        min_nodes=min_nodes, max_nodes=max_nodes, idle_seconds=idle_seconds_before_scaledown
    )
    with transaction.atomic():
        target = ComputeTarget.objects.select_for_update().get(pk=target.pk)
        target.config = dict(
            target.config,
            min_nodes=min_nodes,
            max_nodes=max_nodes,
            idle_seconds_before_scaledown=idle_seconds_before_scaledown,
        )
        target.save(update_fields=["config", "updated_at"])
    return target


def cluster_delete(*, target: ComputeTarget, user: User) -> ComputeOperation:
    """Mark the cluster Deleting; a background task removes its nodes, then the target."""
    if target.kind != ComputeKind.CLUSTER:
        raise ServiceError(f"{target.name} is not a managed cluster.")
    with transaction.atomic():
        operation = _operation_start(target=target, user=user, action="delete")
    return operation


def cluster_teardown(*, operation_id: int) -> None:
    """Remove every node container of the cluster on every engine, then the target."""
    operation = ComputeOperation.objects.select_related("target").get(pk=operation_id)
    target = operation.target
    if target is None:
        return
    engine_names = set(target.config.get("engines", [])) | set(
        Node.objects.filter(target=target, engine__isnull=False).values_list(
            "engine__name", flat=True
        )
    )
    engines = DockerEngine.objects.filter(workspace=target.workspace, name__in=engine_names)
    runner = OperationRunner(operation)
    removed = 0
    for engine in engines:
        try:
            containers = engine_client(engine.url).containers.list(
                all=True, filters=cluster_label_filter(target)
            )
            for container in containers:
                container.remove(force=True)
                removed += 1
        except (*ENGINE_ERRORS, EngineError) as exc:
            engine_client_forget(engine.url)
            error = (
                f"Could not remove the nodes on Docker engine {engine.name} ({exc}). "
                "Make the engine reachable and delete the cluster again."
            )
            runner.fail(error, label="Remove nodes")
            return
    runner.labelled("Remove nodes", STEP_DONE, f"{removed} containers removed")
    carried = list(
        Node.objects.filter(target=target, state=NodeState.RUNNING, run_id__isnull=False)
    )
    with transaction.atomic():
        NodeRequest.objects.filter(target=target).delete()
        target.delete()
    for node in carried:
        node_lost.send(
            sender=Node,
            run_id=node.run_id,
            preempted=False,
            reason=f"Cluster {target.name} was deleted while the run was on node {node.name}.",
        )
    runner.finish()
