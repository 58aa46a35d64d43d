import shlex

from django import template

register = template.Library()


@register.filter
def duration_text(value) -> str:
    """A timedelta as 1 h 02 min, 3 min 05 s or 12.3 s."""
    seconds = value.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def shell_join(arguments) -> str:
    return shlex.join(arguments or [])


@register.filter
def metric_value(value) -> str:
    """A metric as people write it: up to six significant digits, no trailing zeros."""
    return f"{float(value):.6g}"
