from django.urls import path

from compute.cloud import views as cloud_views
from compute.cluster import views as cluster_views
from compute.models import CLOUD_KINDS, ComputeKind
from compute.targets import views as target_views
from compute.vm import views as vm_views

# The detail page of each kind of target, which /<name>/ shows.
DETAIL_PAGES = {
    ComputeKind.LOCAL: vm_views.machine_detail,
    ComputeKind.VM: vm_views.machine_detail,
    ComputeKind.HDINSIGHT: vm_views.machine_detail,
    ComputeKind.CLUSTER: cluster_views.cluster_detail,
    **dict.fromkeys(CLOUD_KINDS, cloud_views.cloud_detail),
}

urlpatterns = [
    path("", target_views.compute_list, name="compute_list"),
    path("new/cluster/", cluster_views.cluster_new, name="cluster_new"),
    path("attach/virtualmachine/", vm_views.vm_attach, name="vm_attach"),
    path("attach/hdinsight/", vm_views.hdinsight_attach, name="hdinsight_attach"),
    path("attach/databricks/", cloud_views.databricks_attach, name="databricks_attach"),
    path("attach/datalakeanalytics/", cloud_views.datalake_attach, name="datalake_attach"),
    path("attach/batch/", cloud_views.batch_attach, name="batch_attach"),
    path("engines/", cluster_views.engine_list, name="engine_list"),
    path("engines/<int:engine_id>/remove/", cluster_views.engine_remove, name="engine_remove"),
    path(
        "<str:name>/",
        target_views.compute_detail,
        {"detail_pages": DETAIL_PAGES},
        name="compute_detail",
    ),
    path("<str:name>/check/", vm_views.compute_check, name="compute_check"),
    path("<str:name>/credentials/", vm_views.compute_credentials, name="compute_credentials"),
    path("<str:name>/host-key/", vm_views.compute_retrust, name="compute_retrust"),
    path("<str:name>/terminal/", target_views.compute_terminal, name="compute_terminal"),
    path("<str:name>/detach/", target_views.compute_detach, name="compute_detach"),
    path("<str:name>/spark/", vm_views.spark_master_update, name="spark_master_update"),
    path("<str:name>/cloud/check/", cloud_views.cloud_check, name="cloud_check"),
    path("<str:name>/cloud/credentials/", cloud_views.cloud_credentials, name="cloud_credentials"),
    path("<str:name>/nodes/", cluster_views.cluster_status, name="cluster_status"),
    path("<str:name>/scale/", cluster_views.cluster_scale, name="cluster_scale"),
    path("<str:name>/delete/", cluster_views.cluster_delete, name="cluster_delete"),
]
