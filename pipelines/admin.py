from django.contrib import admin

from pipelines.models import Pipeline, PipelineStep


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ["__str__", "run", "run__status", "run__workspace", "run__created_at"]
    list_filter = ["run__status", "run__workspace"]
    search_fields = ["name", "run__experiment__name"]
    raw_id_fields = ["run"]
    list_select_related = ["run__experiment", "run__workspace"]


@admin.register(PipelineStep)
class PipelineStepAdmin(admin.ModelAdmin):
    list_display = ["name", "pipeline", "position", "step_type", "run__status", "run__target_name"]
    list_filter = ["step_type", "run__status", "pipeline__run__workspace"]
    search_fields = ["name", "pipeline__name"]
    raw_id_fields = ["pipeline", "run"]
    list_select_related = ["pipeline", "run"]
