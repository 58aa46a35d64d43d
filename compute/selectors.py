from compute.models import ComputeOperation, ComputeTarget


def compute_list(*, workspace):
    return ComputeTarget.objects.filter(workspace=workspace).select_related("created_by")


def compute_get(*, workspace, name: str) -> ComputeTarget:
    return ComputeTarget.objects.select_related("created_by").get(workspace=workspace, name=name)


def operation_latest(*, target: ComputeTarget) -> ComputeOperation | None:
    return target.operations.select_related("started_by").first()
