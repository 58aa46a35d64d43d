from django.contrib import admin

from compute.models import (
    ComputeOperation,
    ComputeTarget,
    DockerEngine,
    Node,
    NodeRequest,
    TerminalSession,
)


@admin.register(ComputeTarget)
class ComputeTargetAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "kind", "state", "address", "created_by", "created_at"]
    list_filter = ["kind", "state", "workspace"]
    search_fields = ["name", "address", "workspace__name"]
    # Secrets stay out of the admin: they are set through the attach wizards.
    exclude = ["password", "private_key", "passphrase", "access_token"]


@admin.register(ComputeOperation)
class ComputeOperationAdmin(admin.ModelAdmin):
    list_display = ["action", "target_name", "workspace", "state", "started_at", "finished_at"]
    list_filter = ["action", "state", "workspace"]
    search_fields = ["target_name"]


@admin.register(DockerEngine)
class DockerEngineAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "url", "checked_at", "created_by"]
    list_filter = ["workspace"]
    search_fields = ["name", "url"]


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["name", "target", "state", "run_id", "engine", "idle_since", "created_at"]
    list_filter = ["state", "target__workspace"]
    search_fields = ["name", "container_id", "target__name"]


@admin.register(NodeRequest)
class NodeRequestAdmin(admin.ModelAdmin):
    list_display = ["run_id", "target", "node_count", "requested_at"]
    list_filter = ["target__workspace", "target"]
    search_fields = ["target__name", "run_id"]
    list_select_related = ["target"]


@admin.register(TerminalSession)
class TerminalSessionAdmin(admin.ModelAdmin):
    list_display = ["target", "username", "started_at", "ended_at", "end"]
    list_filter = ["end", "target__workspace"]
    search_fields = ["username", "target__name"]
