from django.contrib import admin

from runs.models import (
    Environment,
    Experiment,
    Metric,
    Run,
    RunEvent,
    RunFile,
    Snapshot,
    SnapshotBlob,
)


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "created_by", "created_at"]
    list_filter = ["workspace"]
    search_fields = ["name"]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["__str__", "workspace", "status", "target_name", "submitted_by", "created_at"]
    list_filter = ["status", "workspace", "target_name"]
    search_fields = ["experiment__name", "display_name"]
    raw_id_fields = ["parent", "experiment", "target"]


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "kind", "workspace", "docker_image"]
    list_filter = ["kind", "workspace"]
    search_fields = ["name"]


@admin.register(RunEvent)
class RunEventAdmin(admin.ModelAdmin):
    list_display = ["run", "status", "message", "at"]
    list_filter = ["status", "run__workspace"]
    search_fields = ["message", "run__experiment__name"]
    raw_id_fields = ["run"]
    list_select_related = ["run__experiment"]


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ["digest", "workspace", "file_count", "total_bytes", "created_at"]
    list_filter = ["workspace", "created_at"]
    search_fields = ["digest"]


@admin.register(SnapshotBlob)
class SnapshotBlobAdmin(admin.ModelAdmin):
    list_display = ["sha256", "workspace", "size"]
    list_filter = ["workspace"]
    search_fields = ["sha256"]


@admin.register(Metric)
class MetricAdmin(admin.ModelAdmin):
    list_display = ["name", "step", "value", "run", "logged_at"]
    list_filter = ["run__workspace"]
    search_fields = ["name", "run__experiment__name"]
    raw_id_fields = ["run"]
    list_select_related = ["run__experiment"]


@admin.register(RunFile)
class RunFileAdmin(admin.ModelAdmin):
    list_display = ["path", "run", "size", "sha256"]
    list_filter = ["run__workspace"]
    search_fields = ["path", "sha256", "run__experiment__name"]
    raw_id_fields = ["run"]
    list_select_related = ["run__experiment"]
