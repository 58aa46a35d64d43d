from django import template
from django.urls import reverse

from runs.logs import store as logstore

register = template.Library()

# What the viewer loads of each stream first; older output comes on request.
TAIL_BYTES = 256 * 1024


@register.simple_tag
def log_viewer_config(run) -> dict:
    """What templates/runs/_log_viewer.html hands to static/js/logviewer.js."""
    return {
        "element": f"log-config-{run.pk}",
        "run": run.pk,
        "status": run.status,
        "final": run.is_final,
        "socket": f"/ws/runs/{run.pk}/logs/",
        "api": reverse("api:run_logs", args=[run.pk]),
        "download": reverse("run_log_download", args=[run.workspace.slug, run.pk, "STREAM"]),
        "streams": logstore.streams(run.pk),
        "tailBytes": TAIL_BYTES,
    }
