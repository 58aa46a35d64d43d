from celery import shared_task

from compute.cloud import services as cloud_services
from compute.cluster import autoscaler
from compute.cluster import services as cluster_services
from compute.models import ComputeTarget
from compute.vm import services as vm_services


@shared_task
def cluster_provision_task(operation_id: int) -> None:
    cluster_services.cluster_provision(operation_id=operation_id)


@shared_task
def cluster_delete_task(operation_id: int) -> None:
    cluster_services.cluster_teardown(operation_id=operation_id)


@shared_task
def cluster_autoscale_task(target_id: int) -> None:
    target = ComputeTarget.objects.filter(pk=target_id).first()
    if target is not None:
        autoscaler.cluster_autoscale(target=target)


@shared_task
def clusters_autoscale() -> None:
    autoscaler.clusters_autoscale()


@shared_task
def vm_check_task(operation_id: int) -> None:
    vm_services.vm_check_execute(operation_id=operation_id)


@shared_task
def cloud_check_task(operation_id: int) -> None:
    cloud_services.cloud_check_execute(operation_id=operation_id)
