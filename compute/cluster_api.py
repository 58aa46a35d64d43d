"""/api/v1/computes: compute targets, and creating, scaling and deleting managed clusters."""

from datetime import datetime

from ninja import Router, Schema, Status
from ninja.errors import HttpError

from compute import cluster_services, selectors, services
from compute.api import AttachedOut, attached_out
from compute.cluster_services import ClusterError
from compute.models import ComputeKind, ComputeTarget, DockerEngine
from compute.names import NAME_TAKEN
from compute.scheduler import cluster_counts, cluster_wait_reason
from studio.api_auth import api_membership
from studio.models import Role

router: Router = Router(tags=["compute"])


class NodeOut(Schema):
    name: str
    state: str
    run_id: int | None
    engine: str | None
    container_id: str
    ssh_port: int | None
    cpus: float
    memory_gib: float
    idle_since: datetime | None
    error: str


class ComputeOut(AttachedOut):
    name: str
    kind: str
    state: str
    error: str
    warnings: list[str]
    created_at: datetime
    vm_size: str | None = None
    vm_priority: str | None = None
    min_nodes: int | None = None
    max_nodes: int | None = None
    idle_seconds_before_scaledown: int | None = None
    engines: list[str] | None = None
    vnet_name: str | None = None
    subnet_name: str | None = None
    admin_username: str | None = None
    current_nodes: int | None = None
    target_nodes: int | None = None
    scaling: str | None = None
    nodes: list[NodeOut] = []


class ClusterIn(Schema):
    name: str
    vm_size: str
    vm_priority: str = "dedicated"
    min_nodes: int = 0
    max_nodes: int
    idle_seconds_before_scaledown: int = 120
    engines: list[str] | None = None
    vnet_name: str = ""
    subnet_name: str = ""
    admin_username: str = ""
    admin_ssh_public_key: str = ""


class ScaleIn(Schema):
    min_nodes: int | None = None
    max_nodes: int | None = None
    idle_seconds_before_scaledown: int | None = None


def compute_out(target: ComputeTarget) -> ComputeOut:
    out = ComputeOut(
        name=target.name,
        kind=target.kind,
        state=target.state,
        error=target.error,
        warnings=target.warnings or [],
        created_at=target.created_at,
        **attached_out(target),
    )
    if target.kind != ComputeKind.CLUSTER:
        return out
    config = target.config
    counts = cluster_counts(target)
    for key in (
        "vm_size",
        "vm_priority",
        "min_nodes",
        "max_nodes",
        "idle_seconds_before_scaledown",
        "engines",
        "vnet_name",
        "subnet_name",
        "admin_username",
    ):
        setattr(out, key, config.get(key))
    out.current_nodes = counts.current
    out.target_nodes = counts.target
    out.scaling = cluster_wait_reason(target)
    out.nodes = [
        NodeOut(
            name=node.name,
            state=node.state,
            run_id=node.run_id,
            engine=node.engine.name if node.engine else None,
            container_id=node.container_id,
            ssh_port=node.ssh_port,
            cpus=node.cpus,
            memory_gib=round(node.memory_gib, 2),
            idle_since=node.idle_since,
            error=node.error,
        )
        for node in target.nodes.select_related("engine")
    ]
    return out


def _target(membership, name: str) -> ComputeTarget:
    try:
        return selectors.compute_get(workspace=membership.workspace, name=name)
    except ComputeTarget.DoesNotExist as exc:
        raise HttpError(404, f"No compute target called {name} in this workspace.") from exc


def _cluster(membership, name: str) -> ComputeTarget:
    target = _target(membership, name)
    if target.kind != ComputeKind.CLUSTER:
        raise HttpError(
            409, f"{name} is a {target.get_kind_display()}, not a compute cluster Trainyard made."
        )
    return target


@router.get("/computes", response=list[ComputeOut])
def computes_list(request, workspace: str | None = None):
    membership = api_membership(request, workspace)
    return [compute_out(t) for t in selectors.compute_list(workspace=membership.workspace)]


@router.post("/computes/cluster", response={201: ComputeOut})
def cluster_create(request, payload: ClusterIn, workspace: str | None = None):
    """Create a managed cluster; it is provisioned in the background (state Creating)."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    engines = None
    if payload.engines:
        engines = list(
            DockerEngine.objects.filter(workspace=membership.workspace, name__in=payload.engines)
        )
        unknown = sorted(set(payload.engines) - {e.name for e in engines})
        if unknown:
            raise HttpError(400, f"No Docker engine called {', '.join(unknown)} in this workspace.")
    try:
        target = cluster_services.cluster_create(
            workspace=membership.workspace,
            user=request.user,
            engines=engines,
            **payload.dict(exclude={"engines"}),
        )
    except ClusterError as exc:
        status = 409 if exc.code == NAME_TAKEN else 400
        raise HttpError(status, str(exc)) from exc
    target.refresh_from_db()
    return Status(201, compute_out(target))


@router.get("/computes/{name}", response=ComputeOut)
def compute_get(request, name: str, workspace: str | None = None):
    """A compute target; for a cluster with its node counts, scaling reason and nodes."""
    membership = api_membership(request, workspace)
    return compute_out(_target(membership, name))


@router.patch("/computes/{name}", response=ComputeOut)
def cluster_update(request, name: str, payload: ScaleIn, workspace: str | None = None):
    """Change min / max nodes or idle seconds; the next autoscale pass acts on them."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    target = _cluster(membership, name)
    scale = {
        key: value if value is not None else target.config[key]
        for key, value in payload.dict().items()
    }
    try:
        target = cluster_services.cluster_update(target=target, **scale)
    except ClusterError as exc:
        raise HttpError(400, str(exc)) from exc
    return compute_out(target)


@router.delete("/computes/{name}", response={202: ComputeOut, 204: None})
def cluster_delete(request, name: str, workspace: str | None = None):
    """Delete a cluster: its node containers are removed in the background, then the target.
    An attached target (e.g. a VM) is detached at once: it and its secrets are gone, runs
    that used it keep their history."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    target = _target(membership, name)
    if target.kind != ComputeKind.CLUSTER:
        try:
            services.compute_detach(target=target, user=request.user)
        except services.ComputeError as exc:
            raise HttpError(409, str(exc)) from exc
        return Status(204, None)
    try:
        cluster_services.cluster_delete(target=target, user=request.user)
    except ClusterError as exc:
        raise HttpError(400, str(exc)) from exc
    target = ComputeTarget.objects.filter(pk=target.pk).first() or target
    return Status(202, compute_out(target))
