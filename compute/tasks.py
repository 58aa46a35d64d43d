from celery import shared_task

from compute import cloud_services, cluster_services, scheduler, services
from compute.models import ComputeTarget


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
        scheduler.cluster_autoscale(target=target)


@shared_task
def clusters_autoscale() -> None:
    scheduler.clusters_autoscale()


@shared_task
def vm_check_task(operation_id: int) -> None:
    services.vm_check_execute(operation_id=operation_id)


@shared_task
def cloud_check_task(operation_id: int) -> None:
    cloud_services.cloud_check_execute(operation_id=operation_id)
