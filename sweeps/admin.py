from django.contrib import admin

from sweeps.models import Sweep, SweepChild


@admin.register(Sweep)
class SweepAdmin(admin.ModelAdmin):
    list_display = ["__str__", "run", "run__status", "run__workspace", "run__created_at"]
    list_filter = ["run__status", "run__workspace"]
    search_fields = ["run__display_name", "run__experiment__name"]
    raw_id_fields = ["run"]
    list_select_related = ["run__experiment", "run__workspace"]


@admin.register(SweepChild)
class SweepChildAdmin(admin.ModelAdmin):
    list_display = ["__str__", "run", "run__status", "hyperparameters"]
    list_filter = ["run__status", "sweep__run__workspace"]
    search_fields = ["run__display_name"]
    raw_id_fields = ["sweep", "run"]
    list_select_related = ["sweep", "run"]
