from django import template
from django.utils import timezone

from compute.vm import spark
from studio.units import human_duration

register = template.Library()


@register.filter
def mib(value) -> str:
    """Mebibytes as people read them: 512 MiB, 3.8 GiB, 1.2 TiB."""
    if value in (None, ""):
        return "—"
    value = float(value)
    for unit in ("MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "MiB" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


OPERATION_LABELS = {
    "attach": "Attach",
    "check": "Re-check",
    "credentials": "New credentials",
    "retrust": "Re-trust host key",
    "detach": "Detach",
}


@register.filter
def operation_label(action: str) -> str:
    return OPERATION_LABELS.get(action, action.replace("_", " ").capitalize())


@register.filter
def spark_master(target) -> str:
    """The master PySpark runs on an HDInsight / Spark target submit to."""
    return spark.target_master(target)


@register.filter
def spark_master_label(master: str) -> str:
    return spark.master_label(master or "")


@register.filter
def time_away(since) -> str:
    """How long ago `since` was, in words: 40 s, 3 min, 2 h 05 min."""
    return human_duration((timezone.now() - since).total_seconds())
