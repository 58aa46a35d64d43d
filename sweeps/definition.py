"""The sweep definition: the `hdconfig.yml` that `az ml run submit-hyperdrive` reads.

The format is EXAMPLE below, which the submit form shows. Each parameter of
`sampling.parameter_space` is a script argument (`--lr`) with a search-space
expression whose values mean what they mean in azureml.train.hyperdrive:
`loguniform: [min, max]` samples exp(uniform(min, max)), `quniform: [min, max, q]`
rounds uniform(min, max) to a multiple of q, `randint: [upper]` is an integer in
[0, upper), and so on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from studio import safeyaml

EXAMPLE = """\
# hdconfig.yml
sampling:
    type: random                 # random | grid | bayesian
    parameter_space:             # the script arguments to sample, each name|expression|values
    - name: --lr
      expression: loguniform     # choice, randint, uniform, quniform, loguniform, qloguniform,
      values: [-6, -1]           # normal, qnormal, lognormal, qlognormal
    - name: --batch-size
      expression: choice
      values: [16, 32, 64]
policy:
    type: BanditPolicy           # BanditPolicy | MedianStoppingPolicy |
    evaluation_interval: 1       # TruncationSelectionPolicy | NoTerminationPolicy
    slack_factor: 0.2            # or slack_amount: 0.1
    delay_evaluation: 2
primary_metric_name: accuracy    # logged by the script: run.log("accuracy", 0.91)
primary_metric_goal: maximize    # maximize | minimize
max_total_runs: 8
max_concurrent_runs: 2
max_duration_minutes: 60         # optional
"""

# expression: (names of its values, in order); as in azureml.train.hyperdrive.
EXPRESSIONS: dict[str, tuple[str, ...]] = {
    "choice": (),
    "randint": ("upper",),
    "uniform": ("min_value", "max_value"),
    "quniform": ("min_value", "max_value", "q"),
    "loguniform": ("min_value", "max_value"),
    "qloguniform": ("min_value", "max_value", "q"),
    "normal": ("mu", "sigma"),
    "qnormal": ("mu", "sigma", "q"),
    "lognormal": ("mu", "sigma"),
    "qlognormal": ("mu", "sigma", "q"),
}
SAMPLINGS = ("random", "grid", "bayesian")
# Bayesian sampling models these expressions only, as in azureml.train.hyperdrive.
BAYESIAN_EXPRESSIONS = ("choice", "uniform", "quniform")
POLICY_KEYS: dict[str, set[str]] = {
    "BanditPolicy": {"evaluation_interval", "slack_factor", "slack_amount", "delay_evaluation"},
    "MedianStoppingPolicy": {"evaluation_interval", "delay_evaluation"},
    "TruncationSelectionPolicy": {
        "evaluation_interval",
        "truncation_percentage",
        "delay_evaluation",
    },
    "NoTerminationPolicy": set(),
}
GOALS = ("maximize", "minimize")
KEYS = {
    "sampling",
    "policy",
    "primary_metric_name",
    "primary_metric_goal",
    "max_total_runs",
    "max_concurrent_runs",
    "max_duration_minutes",
}
REQUIRED = ("sampling", "primary_metric_name", "primary_metric_goal", "max_total_runs")
ARGUMENT_NAME = re.compile(r"-{0,2}[A-Za-z][A-Za-z0-9_.-]{0,63}")
MAX_TOTAL_RUNS = 1000


class DefinitionError(Exception):
    """The hdconfig file is not one the studio can run; the message names the key."""


@dataclass(frozen=True)
class Parameter:
    name: str
    expression: str
    values: tuple = ()


@dataclass(frozen=True)
class PolicySpec:
    type: str = "NoTerminationPolicy"
    evaluation_interval: int = 1
    delay_evaluation: int = 0
    slack_factor: float | None = None
    slack_amount: float | None = None
    truncation_percentage: int = 0


@dataclass(frozen=True)
class SweepSpec:
    sampling: str
    parameters: tuple[Parameter, ...]
    primary_metric_name: str
    primary_metric_goal: str
    max_total_runs: int
    max_concurrent_runs: int
    max_duration_minutes: int | None = None
    policy: PolicySpec = field(default_factory=PolicySpec)


def parse_sweep(text: str) -> SweepSpec:
    """The sweep an hdconfig.yml describes, or DefinitionError naming what to fix."""
    try:
        document = safeyaml.load(text, what="the hdconfig file")
    except safeyaml.YamlError as exc:
        raise DefinitionError(str(exc)) from None
    if not isinstance(document, dict):
        raise DefinitionError(
            "The hdconfig file is a YAML mapping with sampling:, policy:, primary_metric_name:, "
            "primary_metric_goal:, max_total_runs: and max_concurrent_runs:."
        )
    unknown = sorted(set(document) - KEYS)
    if unknown:
        raise DefinitionError(
            f"{unknown[0]} is not a key of an hdconfig file: use {', '.join(sorted(KEYS))}."
        )
    for key in REQUIRED:
        if document.get(key) in (None, ""):
            raise DefinitionError(f"{key} is missing: add it to the hdconfig file.")
    sampling, parameters = _sampling(document["sampling"])
    goal = str(document["primary_metric_goal"]).lower()
    if goal not in GOALS:
        raise DefinitionError(
            f"primary_metric_goal is {document['primary_metric_goal']!r}: use maximize or minimize."
        )
    max_total = _whole("max_total_runs", document["max_total_runs"], 1, MAX_TOTAL_RUNS)
    concurrent = document.get("max_concurrent_runs", 1)
    minutes = document.get("max_duration_minutes")
    grid_size = math.prod(len(p.values) for p in parameters) if sampling == "grid" else None
    policy = _policy(document.get("policy"))
    if sampling == "bayesian" and policy.type != "NoTerminationPolicy":
        raise DefinitionError(
            "policy: bayesian sampling learns from every run to its end, so it takes no early "
            "termination: use type: NoTerminationPolicy, or random sampling."
        )
    return SweepSpec(
        sampling=sampling,
        parameters=parameters,
        primary_metric_name=str(document["primary_metric_name"]),
        primary_metric_goal=goal,
        max_total_runs=min(max_total, grid_size) if grid_size else max_total,
        max_concurrent_runs=_whole("max_concurrent_runs", concurrent, 1, MAX_TOTAL_RUNS),
        max_duration_minutes=None
        if minutes is None
        else _whole("max_duration_minutes", minutes, 1, 10**6),
        policy=policy,
    )


def _whole(key: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DefinitionError(f"{key} is {value!r}: give a whole number from {low} to {high}.")
    return value


def _sampling(sampling) -> tuple[str, tuple[Parameter, ...]]:
    if not isinstance(sampling, dict):
        raise DefinitionError("sampling is a mapping with type: and parameter_space:.")
    kind = str(sampling.get("type", "")).lower()
    if kind not in SAMPLINGS:
        raise DefinitionError(
            f"sampling.type is {sampling.get('type')!r}: use random, grid or bayesian."
        )
    space = sampling.get("parameter_space")
    if not isinstance(space, list) or not space:
        raise DefinitionError(
            "sampling.parameter_space is a list of parameters, each with name:, expression: "
            "and values:."
        )
    parameters = tuple(_parameter(i, item) for i, item in enumerate(space))
    names = [p.name for p in parameters]
    repeated = next((n for n in names if names.count(n) > 1), None)
    if repeated:
        raise DefinitionError(f"sampling.parameter_space names {repeated} twice: keep one.")
    for p in parameters:
        if kind == "grid" and p.expression != "choice":
            raise DefinitionError(
                f"sampling.parameter_space {p.name}: grid sampling tries every combination of "
                f"choice values, and {p.expression} is not a choice: list the values with "
                "expression: choice, or use random sampling."
            )
        if kind == "bayesian" and p.expression not in BAYESIAN_EXPRESSIONS:
            raise DefinitionError(
                f"sampling.parameter_space {p.name}: bayesian sampling models choice, uniform "
                f"and quniform, not {p.expression}: use one of those, or random sampling."
            )
    return kind, parameters


def _parameter(index: int, item) -> Parameter:
    where = f"sampling.parameter_space[{index}]"
    if not isinstance(item, dict):
        raise DefinitionError(f"{where} is a mapping with name:, expression: and values:.")
    name = str(item.get("name", ""))
    if not ARGUMENT_NAME.fullmatch(name):
        raise DefinitionError(
            f"{where}.name is {item.get('name')!r}: give the script argument it sets, e.g. --lr."
        )
    where = f"sampling.parameter_space {name}"
    expression = str(item.get("expression", ""))
    if expression not in EXPRESSIONS:
        raise DefinitionError(
            f"{where}: expression {item.get('expression')!r} is not one of "
            f"{', '.join(EXPRESSIONS)}."
        )
    values = item.get("values")
    if not isinstance(values, list) or not values:
        raise DefinitionError(f"{where}: values is a list, e.g. values: [0.01, 0.1].")
    if expression == "choice":
        return Parameter(name, expression, tuple(values))
    wanted = EXPRESSIONS[expression]
    if len(values) != len(wanted) or not all(_is_number(v) for v in values):
        raise DefinitionError(
            f"{where}: {expression} takes {len(wanted)} number(s) as values: [{', '.join(wanted)}]."
        )
    numbers = dict(zip(wanted, values, strict=True))
    if "max_value" in numbers and numbers["min_value"] >= numbers["max_value"]:
        raise DefinitionError(f"{where}: min_value must be below max_value.")
    if numbers.get("q", 1) <= 0 or numbers.get("sigma", 1) <= 0 or numbers.get("upper", 1) < 1:
        raise DefinitionError(f"{where}: q, sigma and upper are above zero.")
    if expression == "randint" and not isinstance(values[0], int):
        raise DefinitionError(f"{where}: randint's upper is a whole number.")
    return Parameter(name, expression, tuple(values))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _policy(policy) -> PolicySpec:
    if policy is None:
        return PolicySpec()
    if not isinstance(policy, dict) or "type" not in policy:
        raise DefinitionError(
            "policy is a mapping with type: BanditPolicy, MedianStoppingPolicy, "
            "TruncationSelectionPolicy or NoTerminationPolicy."
        )
    kind = str(policy["type"])
    if kind not in POLICY_KEYS:
        raise DefinitionError(f"policy.type {kind!r} is not one of {', '.join(POLICY_KEYS)}.")
    unknown = sorted(set(policy) - POLICY_KEYS[kind] - {"type"})
    if unknown:
        known = ", ".join(sorted(POLICY_KEYS[kind])) or "no other keys"
        raise DefinitionError(f"policy.{unknown[0]} is not a key of {kind}: it takes {known}.")
    numbers = {key: value for key, value in policy.items() if key != "type"}
    bad = next((k for k, v in numbers.items() if not _is_number(v) or v < 0), None)
    if bad:
        raise DefinitionError(f"policy.{bad} is {numbers[bad]!r}: give a number of 0 or more.")
    interval = numbers.get("evaluation_interval", 1)
    if not isinstance(interval, int) or interval < 1:
        raise DefinitionError("policy.evaluation_interval is a whole number of 1 or more.")
    delay = numbers.get("delay_evaluation", 0)
    if not isinstance(delay, int):
        raise DefinitionError("policy.delay_evaluation is a whole number of intervals.")
    if kind == "BanditPolicy" and ("slack_factor" in numbers) == ("slack_amount" in numbers):
        raise DefinitionError("policy: a BanditPolicy takes slack_factor or slack_amount (one).")
    truncation = numbers.get("truncation_percentage", 0)
    if kind == "TruncationSelectionPolicy" and not (
        isinstance(truncation, int) and 1 <= truncation <= 99
    ):
        raise DefinitionError(
            "policy.truncation_percentage is a whole number from 1 to 99, e.g. 20."
        )
    return PolicySpec(
        type=kind,
        evaluation_interval=interval,
        delay_evaluation=delay,
        slack_factor=numbers.get("slack_factor"),
        slack_amount=numbers.get("slack_amount"),
        truncation_percentage=truncation,
    )
