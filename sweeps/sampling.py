"""Drawing each child's hyperparameters from the search space.

Random sampling draws child n from a generator seeded with the sweep's seed and
n, so the same seed gives the same sweep again. Grid sampling walks every
combination of the choice values in order. Bayesian sampling asks optuna's TPE
sampler, told the hyperparameters and primary metric of the children so far.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

import optuna

from sweeps.definition import Parameter, SweepSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Trial:
    """A child the sampler learns from: its hyperparameters, and its primary metric once ended
    (None while it runs, or when it ended without logging the metric)."""

    hyperparameters: dict
    value: float | None
    ended: bool


def sample(spec: SweepSpec, *, index: int, seed: int, trials: list[Trial]) -> dict:
    """The hyperparameters of child `index` (0-based)."""
    if spec.sampling == "grid":
        return grid_point(spec.parameters, index)
    if spec.sampling == "bayesian":
        return _bayesian(spec, index=index, seed=seed, trials=trials)
    rng = random.Random(f"{seed}:{index}")  # noqa: S311 - sampling, not secrecy  # nosec B311
    return {p.name: draw(p, rng) for p in spec.parameters}


def grid_point(parameters: tuple[Parameter, ...], index: int) -> dict:
    combinations = itertools.product(*(p.values for p in parameters))
    combination = next(itertools.islice(combinations, index, None))
    return {p.name: value for p, value in zip(parameters, combination, strict=True)}


def draw(parameter: Parameter, rng: random.Random):
    """One value of the parameter's expression, with the meaning azureml.train.hyperdrive gives."""
    kind, v = parameter.expression, parameter.values
    if kind == "choice":
        return rng.choice(v)
    if kind == "randint":
        return rng.randrange(v[0])
    if kind in ("uniform", "quniform"):
        value = rng.uniform(v[0], v[1])
    elif kind in ("loguniform", "qloguniform"):
        value = math.exp(rng.uniform(v[0], v[1]))
    elif kind in ("normal", "qnormal"):
        value = rng.gauss(v[0], v[1])
    else:
        value = math.exp(rng.gauss(v[0], v[1]))
    return quantized(value, v[2]) if kind.startswith("q") else value


def quantized(value: float, q: float) -> float:
    """round(value / q) * q, without the float noise that would show in a script argument."""
    return round(round(value / q) * q, 12)


def _distribution(parameter: Parameter) -> optuna.distributions.BaseDistribution:
    if parameter.expression == "choice":
        return optuna.distributions.CategoricalDistribution(list(parameter.values))
    return optuna.distributions.FloatDistribution(parameter.values[0], parameter.values[1])


def _bayesian(spec: SweepSpec, *, index: int, seed: int, trials: list[Trial]) -> dict:
    distributions = {p.name: _distribution(p) for p in spec.parameters}
    # Seeded per child: a sampler made anew with one seed would draw its start-up points alike.
    sampler = optuna.samplers.TPESampler(seed=seed + index, constant_liar=True)
    direction = optuna.study.StudyDirection[spec.primary_metric_goal.upper()]
    study = optuna.create_study(direction=direction, sampler=sampler)
    for trial in trials:
        params = {
            name: _within(distributions[name], value)
            for name, value in trial.hyperparameters.items()
            if name in distributions
        }
        if trial.ended:
            state = (
                optuna.trial.TrialState.COMPLETE
                if trial.value is not None
                else optuna.trial.TrialState.FAIL
            )
        else:
            state = optuna.trial.TrialState.RUNNING
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                value=trial.value if state == optuna.trial.TrialState.COMPLETE else None,
                state=state,
            )
        )
    asked = study.ask(distributions)
    return {
        p.name: quantized(asked.params[p.name], p.values[2])
        if p.expression == "quniform"
        else asked.params[p.name]
        for p in spec.parameters
    }


def _within(distribution, value):
    """A quantized value may round just past the range optuna knows."""
    if isinstance(distribution, optuna.distributions.FloatDistribution):
        return min(max(float(value), distribution.low), distribution.high)
    return value
