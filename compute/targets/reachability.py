"""Whether a target answers: marked Unreachable, with the reason, while it does not.

The run monitor and the dispatcher mark a target when they first fail to reach it
and clear the mark when it answers again. Both are conditional updates, so several
monitors following runs on the same target agree instead of overwriting each other,
and a row is written only when what it says changes.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.utils import timezone

from compute.models import ComputeTarget
from studio.units import human_duration


def target_mark_unreachable(*, target_id: int, reason: str) -> tuple[datetime, str]:
    """Record that the target did not answer; (since when it has not, the reason shown)."""
    now = timezone.now()
    marked = ComputeTarget.objects.filter(pk=target_id, unreachable_since__isnull=True).update(
        unreachable_since=now, unreachable_reason=reason
    )
    if not marked:
        # Already away: only a new reason is written (a cut link first times out, then
        # has no route), never the time it went away.
        ComputeTarget.objects.filter(pk=target_id, unreachable_since__isnull=False).exclude(
            unreachable_reason=reason
        ).update(unreachable_reason=reason)
    row = (
        ComputeTarget.objects.filter(pk=target_id)
        .values_list("unreachable_since", "unreachable_reason")
        .first()
    )
    if row is None or row[0] is None:
        # Cleared (it answered someone else) between the two updates: away from now on.
        return now, reason
    return row[0], row[1]


def target_mark_reachable(*, target_id: int) -> bool:
    """Clear the Unreachable mark; whether there was one."""
    return bool(
        ComputeTarget.objects.filter(pk=target_id, unreachable_since__isnull=False).update(
            unreachable_since=None, unreachable_reason=""
        )
    )


def unreachable_too_long(since: datetime) -> bool:
    """Whether a target away since `since` has been away past TARGET_UNREACHABLE_LIMIT_SECONDS."""
    limit = settings.TARGET_UNREACHABLE_LIMIT_SECONDS
    return (timezone.now() - since).total_seconds() >= limit


def unreachable_limit_words() -> str:
    return human_duration(settings.TARGET_UNREACHABLE_LIMIT_SECONDS)
