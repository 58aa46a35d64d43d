"""/api/v1/computes/cluster: creating managed clusters, and what the API says of a cluster.

Reading, scaling and deleting any target, clusters included, is compute.targets.api.
"""

from ninja import Router, Schema, Status
from ninja.errors import HttpError

from compute.cluster import services as cluster_services
from compute.cluster.scheduler import cluster_counts, cluster_wait_reason
from compute.models import ComputeKind, ComputeTarget, DockerEngine
from compute.schemas import ComputeOut, NodeOut, compute_out
from studio.api_auth import api_membership
from studio.models import Role

router: Router = Router(tags=["compute"])


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


def cluster_out(target: ComputeTarget) -> ComputeOut:
    """A target's JSON; for a cluster with its settings, node counts, scaling reason, nodes."""
    out = compute_out(target)
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
    target = cluster_services.cluster_create(
        workspace=membership.workspace,
        user=request.user,
        engines=engines,
        **payload.dict(exclude={"engines"}),
    )
    target.refresh_from_db()
    return Status(201, cluster_out(target))
