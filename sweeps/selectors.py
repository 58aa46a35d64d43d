from __future__ import annotations

from dataclasses import dataclass

from runs.models import Metric
from sweeps.definition import SweepSpec, parse_sweep
from sweeps.models import Sweep, SweepChild
from sweeps.policies import best_of


@dataclass
class ChildRow:
    """A child as the sweep's page and API show it."""

    child: SweepChild
    # Its hyperparameters in the order of the parameter space.
    sampled: list
    values: list[float]
    best: float | None
    is_best: bool = False


def sweep_spec(sweep: Sweep) -> SweepSpec:
    return parse_sweep(sweep.definition)


def primary_series(sweep: Sweep, metric: str) -> dict[int, list[float]]:
    """Each child run's values of the primary metric, in the order it logged them."""
    series: dict[int, list[float]] = {}
    rows = Metric.objects.filter(run__sweep_child__sweep=sweep, name=metric).order_by(
        "run_id", "step", "pk"
    )
    for run_id, value in rows.values_list("run_id", "value"):
        series.setdefault(run_id, []).append(value)
    return series


def sweep_children(sweep: Sweep, spec: SweepSpec) -> list[ChildRow]:
    """The children in order, each with its primary metric; the best by the goal marked."""
    series = primary_series(sweep, spec.primary_metric_name)
    goal = spec.primary_metric_goal
    rows = []
    for child in sweep.children.select_related("run", "run__target"):
        values = series.get(child.run_id, [])
        sampled = [child.hyperparameters.get(p.name) for p in spec.parameters]
        rows.append(ChildRow(child, sampled, values, best_of(values, goal) if values else None))
    scored = [row for row in rows if row.best is not None]
    if scored:
        best = best_of([row.best for row in scored if row.best is not None], goal)
        next(row for row in scored if row.best == best).is_best = True
    return rows


def best_child(rows: list[ChildRow]) -> ChildRow | None:
    return next((row for row in rows if row.is_best), None)
