from django.urls import path

from compute import cloud_views, cluster_views, hdinsight_views, views

urlpatterns = [
    path("", views.compute_list, name="compute_list"),
    path("new/cluster/", cluster_views.cluster_new, name="cluster_new"),
    path("attach/virtualmachine/", views.vm_attach, name="vm_attach"),
    path("attach/hdinsight/", hdinsight_views.hdinsight_attach, name="hdinsight_attach"),
    path("attach/databricks/", cloud_views.databricks_attach, name="databricks_attach"),
    path("attach/datalakeanalytics/", cloud_views.datalake_attach, name="datalake_attach"),
    path("attach/batch/", cloud_views.batch_attach, name="batch_attach"),
    path("engines/", cluster_views.engine_list, name="engine_list"),
    path("engines/<int:engine_id>/remove/", cluster_views.engine_remove, name="engine_remove"),
    path("<str:name>/", views.compute_detail, name="compute_detail"),
    path("<str:name>/check/", views.compute_check, name="compute_check"),
    path("<str:name>/credentials/", views.compute_credentials, name="compute_credentials"),
    path("<str:name>/host-key/", views.compute_retrust, name="compute_retrust"),
    path("<str:name>/terminal/", views.compute_terminal, name="compute_terminal"),
    path("<str:name>/detach/", views.compute_detach, name="compute_detach"),
    path("<str:name>/spark/", hdinsight_views.spark_master_update, name="spark_master_update"),
    path("<str:name>/cloud/check/", cloud_views.cloud_check, name="cloud_check"),
    path("<str:name>/cloud/credentials/", cloud_views.cloud_credentials, name="cloud_credentials"),
    path("<str:name>/nodes/", cluster_views.cluster_status, name="cluster_status"),
    path("<str:name>/scale/", cluster_views.cluster_scale, name="cluster_scale"),
    path("<str:name>/delete/", cluster_views.cluster_delete, name="cluster_delete"),
]
