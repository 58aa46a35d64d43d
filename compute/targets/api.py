"""/api/v1/computes: every kind of target: list, read, change a cluster's scale, delete."""

from ninja import Router, Schema, Status
from ninja.errors import HttpError

from compute import selectors
from compute.cluster import services as cluster_services
from compute.cluster.api import cluster_out
from compute.models import ComputeKind, ComputeTarget
from compute.schemas import ComputeOut
from compute.targets import services
from studio.api_auth import api_membership
from studio.models import Role

router: Router = Router(tags=["compute"])


class ScaleIn(Schema):
    min_nodes: int | None = None
    max_nodes: int | None = None
    idle_seconds_before_scaledown: int | None = None


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
    return [cluster_out(t) for t in selectors.compute_list(workspace=membership.workspace)]


@router.get("/computes/{name}", response=ComputeOut)
def compute_get(request, name: str, workspace: str | None = None):
    """A compute target; for a cluster with its node counts, scaling reason and nodes."""
    membership = api_membership(request, workspace)
    return cluster_out(_target(membership, name))


# In this router with the other /computes/{name} methods: the first router holding a
# path answers it, with 405 for a method it lacks.
@router.patch("/computes/{name}", response=ComputeOut)
def cluster_update(request, name: str, payload: ScaleIn, workspace: str | None = None):
    """Change min / max nodes or idle seconds; the next autoscale pass acts on them."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    target = _cluster(membership, name)
    scale = {
        key: value if value is not None else target.config[key]
        for key, value in payload.dict().items()
    }
    target = cluster_services.cluster_update(target=target, **scale)
    return cluster_out(target)


@router.delete("/computes/{name}", response={202: ComputeOut, 204: None})
def cluster_delete(request, name: str, workspace: str | None = None):
    """Delete a cluster: its node containers are removed in the background, then the target.
    An attached target (e.g. a VM) is detached at once: it and its secrets are gone, runs
    that used it keep their history."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    target = _target(membership, name)
    if target.kind != ComputeKind.CLUSTER:
        services.compute_detach(target=target, user=request.user)
        return Status(204, None)
    cluster_services.cluster_delete(target=target, user=request.user)
    target = ComputeTarget.objects.filter(pk=target.pk).first() or target
    return Status(202, cluster_out(target))
