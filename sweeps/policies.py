"""Early termination: which running children fall behind, as azureml.train.hyperdrive decides.

Each time a child logs the primary metric counts as one interval. A policy looks
at a child at its latest evaluation interval n (a multiple of
`evaluation_interval`, and at least `delay_evaluation`), comparing the child's
first n values with those of every child of the sweep (ended ones too):

- BanditPolicy stops a child whose best value is worse than the best of all
  children by more than the slack: below best / (1 + slack_factor) or below
  best - slack_amount when maximizing (above best * (1 + slack_factor) or
  best + slack_amount when minimizing).
- MedianStoppingPolicy stops a child whose best value is worse than the median
  of the running averages (of the first n values) of the children that reached n.
- TruncationSelectionPolicy stops a child whose value at interval n is among the
  lowest `truncation_percentage` percent of the children that reached n.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping

from sweeps.definition import PolicySpec


def early_stops(
    policy: PolicySpec,
    *,
    goal: str,
    metric: str,
    series: Mapping[int, list[float]],
    running: Iterable[int],
) -> dict[int, str]:
    """Of the `running` children, those the policy stops, each with the reason.

    `series` holds every child's primary metric values in the order it logged them.
    """
    judge = JUDGES.get(policy.type)
    if judge is None:
        return {}
    stops = {}
    for child in running:
        n = evaluation_interval(policy, len(series.get(child, [])))
        if n:
            reason = judge(policy, goal, metric, series, child, n)
            if reason:
                stops[child] = f"Stopped early by {policy.type} at interval {n}: {reason}"
    return stops


def evaluation_interval(policy: PolicySpec, count: int) -> int:
    """The latest interval at which the policy looks at a child that logged `count` values
    (0: none yet)."""
    n = count - count % policy.evaluation_interval
    return n if n >= max(policy.delay_evaluation, 1) else 0


def best_of(values: list[float], goal: str) -> float:
    return max(values) if goal == "maximize" else min(values)


def worse(value: float, than: float, goal: str) -> bool:
    return value < than if goal == "maximize" else value > than


def _bandit(policy, goal, metric, series, child, n) -> str:
    mine = best_of(series[child][:n], goal)
    best = best_of([best_of(v[:n], goal) for v in series.values() if v], goal)
    up = goal == "maximize"
    if policy.slack_amount is not None:
        slack = policy.slack_amount
        threshold = best - slack if up else best + slack
        how = f"{'-' if up else '+'} slack_amount {slack:g}"
    else:
        factor = 1 + (policy.slack_factor or 0)
        threshold = best / factor if up else best * factor
        how = f"{'/' if up else '*'} (1 + slack_factor {policy.slack_factor:g})"
    if not worse(mine, threshold, goal):
        return ""
    return f"{metric} {mine:.4g} {'<' if up else '>'} best {best:.4g} {how} = {threshold:.4g}"


def _median(policy, goal, metric, series, child, n) -> str:
    averages = [statistics.fmean(v[:n]) for v in series.values() if len(v) >= n]
    median = statistics.median(averages)
    mine = best_of(series[child][:n], goal)
    if not worse(mine, median, goal):
        return ""
    return (
        f"{metric} {mine:.4g} {'<' if goal == 'maximize' else '>'} the median {median:.4g} "
        f"of the running averages of {len(averages)} run(s)"
    )


def _truncation(policy, goal, metric, series, child, n) -> str:
    reached = [v[n - 1] for v in series.values() if len(v) >= n]
    cut = math.floor(len(reached) * policy.truncation_percentage / 100)
    if not cut:
        return ""
    mine = series[child][n - 1]
    ranked = sorted(reached, reverse=goal == "maximize")
    # A child tied with the last one kept is kept too.
    if not worse(mine, ranked[len(reached) - cut - 1], goal):
        return ""
    return (
        f"{metric} {mine:.4g} is in the lowest {policy.truncation_percentage}% of "
        f"{len(reached)} run(s) at this interval"
    )


JUDGES = {
    "BanditPolicy": _bandit,
    "MedianStoppingPolicy": _median,
    "TruncationSelectionPolicy": _truncation,
}
