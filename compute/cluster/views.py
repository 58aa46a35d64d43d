from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.db.models import Model
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseClientRefresh

from compute import selectors
from compute.cluster import services as cluster_services
from compute.cluster.engines import (
    ENGINE_ERRORS,
    EngineError,
    EngineFacts,
    engines_check_briefly,
)
from compute.cluster.forms import ClusterForm, EngineForm, ScaleForm
from compute.cluster.node_image import node_image_build_problem
from compute.cluster.scheduler import cluster_counts, cluster_wait_reason, node_address
from compute.cluster.sizes import VM_SIZES, vm_size_get
from compute.models import (
    BUSY_STATES,
    ComputeKind,
    ComputeTarget,
    DockerEngine,
    Node,
    NodeState,
    OperationState,
)
from studio.access import workspace_view
from studio.errors import ServiceError, form_add_service_error
from studio.models import Role

TRANSIENT_NODE_STATES = (NodeState.PREPARING, NodeState.LEAVING)
START_ENGINE = (
    "No Docker engine answers, and cluster nodes are containers on one. Start the local "
    "engine on the Trainyard server as root with `sh scripts/start-dockerd.sh` (or "
    "`systemctl start docker` where Docker runs as a service), then reload this page."
)


def _cluster(request, name: str) -> ComputeTarget:
    try:
        target = selectors.compute_get(workspace=request.workspace, name=name)
    except ComputeTarget.DoesNotExist as exc:
        raise Http404("No such compute target") from exc
    if target.kind != ComputeKind.CLUSTER:
        raise Http404("No such compute cluster")
    return target


@dataclass(frozen=True)
class EngineStatus:
    """What the wizard says of an engine before the user fills it in."""

    engine: DockerEngine
    answered: bool
    text: str
    ready: bool = False


def _engine_statuses(engines: list[DockerEngine]) -> list[EngineStatus]:
    """Whether each engine answers and has the node image, as the wizard shows it.

    An engine that does not answer at once must not keep the wizard from opening.
    """
    seconds = settings.CLUSTER_ENGINE_CHECK_SECONDS
    silent = engines_check_briefly(engines, seconds=seconds)
    statuses = []
    for engine in engines:
        if engine in silent:
            text = (
                f"Docker engine {engine.name} at {engine.url} has not answered within "
                f"{seconds} s: reload this page in a moment to check again. "
                + _last_reachable(engine)
            )
            statuses.append(EngineStatus(engine, answered=False, text=text))
            continue
        if engine.error:
            text = f"{engine.error} {_last_reachable(engine)}"
            statuses.append(EngineStatus(engine, answered=False, text=text))
            continue
        facts = EngineFacts.from_dict(engine.facts)
        assert facts is not None  # checked just now without an error
        found = (
            f"{engine.name}: reachable, Docker {facts.server_version}, {facts.cpus} CPUs, "
            f"{facts.memory_gib:.1f} GiB"
        )
        if facts.node_image:
            text, ready = f"{found}; node image present.", True
        else:
            problem = node_image_build_problem(engine.url)
            if problem:
                text = f"{found}; node image {settings.CLUSTER_NODE_IMAGE} missing. {problem}"
                ready = False
            else:
                text, ready = (
                    f"{found}; the node image will be built on first use, about a minute.",
                    True,
                )
        statuses.append(EngineStatus(engine, answered=True, text=text, ready=ready))
    return statuses


def _last_reachable(engine: DockerEngine) -> str:
    if engine.reachable_at is None:
        return f"Engine {engine.name} has not been reachable since it was registered."
    when = timezone.localtime(engine.reachable_at).strftime("%Y-%m-%d %H:%M:%S")
    return f"Engine {engine.name} was last reachable at {when}."


@workspace_view(role=Role.CONTRIBUTOR)
def cluster_new(request):
    cluster_services.engine_default_ensure(workspace=request.workspace)
    form = ClusterForm(request.POST or None, workspace=request.workspace)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            target = cluster_services.cluster_create(
                workspace=request.workspace,
                user=request.user,
                name=data["name"],
                vm_size=data["vm_size"],
                vm_priority=data["vm_priority"],
                min_nodes=data["min_nodes"],
                max_nodes=data["max_nodes"],
                idle_seconds_before_scaledown=data["idle_seconds_before_scaledown"],
                engines=list(data["engines"]),
                vnet_name=data["vnet_name"],
                subnet_name=data["subnet_name"],
                admin_username=data["admin_username"],
                admin_ssh_public_key=data["admin_ssh_public_key"],
            )
        except ServiceError as exc:
            form_add_service_error(form, exc)
        else:
            messages.success(request, f"Creating compute cluster {target.name}.")
            return redirect("compute_detail", slug=request.workspace.slug, name=target.name)
    engines = list(DockerEngine.objects.filter(workspace=request.workspace))
    statuses = _engine_statuses(engines) if request.method == "GET" else []
    return render(
        request,
        "compute/cluster_new.html",
        {
            "form": form,
            "sizes": VM_SIZES,
            "selected_size": form["vm_size"].value(),
            "engine_statuses": statuses,
            "none_answer": bool(statuses) and not any(status.answered for status in statuses),
            "start_engine": START_ENGINE,
        },
        status=400 if request.method == "POST" else 200,
    )


def _ssh_command(node: Node, user: str, server_host: str) -> str:
    """How the cluster's SSH admin user logs in to the node, or "" when it cannot."""
    if not user or not node.ssh_port or node.engine is None:
        return ""
    if node.engine.url.startswith("unix://") and node.network in ("", "host"):
        # The server's own engine: the node listens on the host the browser reached.
        host = server_host
    else:
        try:
            host = node_address(node)
        except (*ENGINE_ERRORS, EngineError):
            return ""
    return f"ssh -p {node.ssh_port} {user}@{host}"


@dataclass(frozen=True)
class NodeRow:
    """A line of the node table: the node, the run it carries, how to log in to it."""

    node: Node
    run: Model | None  # a runs.Run, which compute reads through the workspace
    ssh_command: str


def _node_rows(request, target: ComputeTarget, nodes: list[Node]) -> list[NodeRow]:
    # A node holds a bare run id: look it up in the cluster's workspace only.
    runs = target.workspace.runs.select_related("experiment").in_bulk(
        [node.run_id for node in nodes if node.run_id]
    )
    server_host = urlsplit(f"//{request.get_host()}").hostname or "localhost"
    user = target.config.get("admin_username", "")
    return [
        NodeRow(
            node=node,
            run=runs.get(node.run_id) if node.run_id else None,
            ssh_command=_ssh_command(node, user, server_host),
        )
        for node in nodes
    ]


def _status_context(request, target: ComputeTarget) -> dict:
    nodes = list(target.nodes.select_related("engine"))
    counts = cluster_counts(target)
    # What the whole page shows: the state and the latest operation's, which can still be
    # running (starting the minimum nodes) once the state reads Succeeded.
    operation = selectors.operation_latest(target=target)
    shown = f"{target.state} {operation.state}" if operation else target.state
    provisioning = operation is not None and operation.state == OperationState.RUNNING
    busy = target.state in BUSY_STATES or provisioning
    transient = any(node.state in TRANSIENT_NODE_STATES for node in nodes) or counts.waiting
    return {
        "target": target,
        "shown": shown,
        "rows": _node_rows(request, target, nodes),
        "counts": counts,
        "reason": cluster_wait_reason(target),
        # Creating, deleting or scaling: follow closely; otherwise a slow look for preemptions.
        "poll": "every 2s" if busy or transient else "every 10s",
        "final": target.state == "Failed",
        # Its steps show live here (building the node image takes a minute).
        "live_operation": operation if provisioning else None,
    }


def cluster_detail(request, target: ComputeTarget):
    """The detail page of a cluster (compute_detail hands clusters over to it)."""
    size = vm_size_get(target.config.get("vm_size", ""))
    scale_form = ScaleForm(
        initial={
            key: target.config.get(key)
            for key in ("min_nodes", "max_nodes", "idle_seconds_before_scaledown")
        }
    )
    return _detail(request, target, size, scale_form)


def _detail(request, target, size, scale_form, status: int = 200):
    limits = [
        {"engine": name, **values, "memory_gib": values["memory_bytes"] / 1024**3}
        for name, values in (target.config.get("node_limits") or {}).items()
    ]
    return render(
        request,
        "compute/cluster_detail.html",
        {
            **_status_context(request, target),
            "size": size,
            "priority": cluster_services.PRIORITIES.get(target.config.get("vm_priority", "")),
            "limits": limits,
            "scale_form": scale_form,
            "operations": target.operations.all()[:5],
            "terminal_sessions": selectors.terminal_sessions(target=target),
        },
        status=status,
    )


@workspace_view()
def cluster_status(request, name: str):
    """The self-refreshing state and node table of the detail page."""
    if (
        request.htmx
        and not ComputeTarget.objects.filter(workspace=request.workspace, name=name).exists()
    ):
        # Deleted while the page was open: back to the list, which says so.
        return HttpResponseClientRedirect(reverse("compute_list", args=[request.workspace.slug]))
    target = _cluster(request, name)
    shown = request.GET.get("shown")
    context = _status_context(request, target)
    if request.htmx and shown and shown != context["shown"]:
        # Settings, limits and operations change with the state: reload the whole page.
        return HttpResponseClientRefresh()
    return render(request, "compute/_cluster_status.html", context)


@require_POST
@workspace_view()
def cluster_scale(request, name: str):
    target = _cluster(request, name)
    form = ScaleForm(request.POST)
    if form.is_valid():
        try:
            cluster_services.cluster_update(target=target, **form.cleaned_data)
        except ServiceError as exc:
            form_add_service_error(form, exc)
        else:
            messages.success(
                request,
                f"{target.name} now scales between {form.cleaned_data['min_nodes']} and "
                f"{form.cleaned_data['max_nodes']} nodes; the next autoscale pass acts on it.",
            )
            return redirect("compute_detail", slug=request.workspace.slug, name=target.name)
    size = vm_size_get(target.config.get("vm_size", ""))
    return _detail(request, target, size, form, status=400)


@require_POST
@workspace_view()
def cluster_delete(request, name: str):
    target = _cluster(request, name)
    try:
        cluster_services.cluster_delete(target=target, user=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("compute_detail", slug=request.workspace.slug, name=target.name)
    messages.success(request, f"Deleting {target.name}: its node containers are being removed.")
    return redirect("compute_list", slug=request.workspace.slug)


@workspace_view(write_role=Role.OWNER)
def engine_list(request):
    cluster_services.engine_default_ensure(workspace=request.workspace)
    form = EngineForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            engine = cluster_services.engine_register(
                workspace=request.workspace,
                name=form.cleaned_data["name"],
                url=form.cleaned_data["url"],
                user=request.user,
            )
        except ServiceError as exc:
            form_add_service_error(form, exc)
        else:
            if engine.error:
                messages.warning(request, f"Registered {engine.name}, but: {engine.error}")
            else:
                messages.success(request, f"Registered Docker engine {engine.name}.")
            return redirect("engine_list", slug=request.workspace.slug)
    engines = [
        (engine, EngineFacts.from_dict(engine.facts))
        for engine in DockerEngine.objects.filter(workspace=request.workspace)
    ]
    return render(
        request,
        "compute/cluster_engines.html",
        {"form": form, "engines": engines},
        status=400 if request.method == "POST" else 200,
    )


@require_POST
@workspace_view(write_role=Role.OWNER)
def engine_remove(request, engine_id: int):
    engine = get_object_or_404(DockerEngine, workspace=request.workspace, pk=engine_id)
    try:
        cluster_services.engine_remove(engine=engine)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Removed Docker engine {engine.name}.")
    return redirect("engine_list", slug=request.workspace.slug)
