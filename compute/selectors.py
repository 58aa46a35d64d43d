from compute.models import ComputeTarget


def compute_list(*, workspace):
    return ComputeTarget.objects.filter(workspace=workspace).select_related("created_by")


def compute_get(*, workspace, name: str) -> ComputeTarget:
    return ComputeTarget.objects.select_related("created_by").get(workspace=workspace, name=name)
