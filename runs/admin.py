from django.contrib import admin

from runs.models import Environment, Experiment, Run


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
