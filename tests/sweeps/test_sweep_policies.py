"""The early termination policies' arithmetic, against the examples azureml.train.hyperdrive
documents, and the sampling of the search space."""

import math
import random

import pytest

from sweeps.definition import DefinitionError, Parameter, PolicySpec, parse_sweep
from sweeps.policies import early_stops, evaluation_interval
from sweeps.sampling import Trial, draw, grid_point, sample


def bandit(**options) -> PolicySpec:
    return PolicySpec(type="BanditPolicy", **options)


def test_bandit_slack_factor_stops_below_best_over_one_plus_the_factor():
    # The documented example: best 0.8 at interval 10, slack_factor 0.2 → runs below
    # 0.8 / 1.2 = 0.667 are stopped.
    series = {1: [0.8] * 10, 2: [0.66] * 10, 3: [0.67] * 10}
    stops = early_stops(
        bandit(slack_factor=0.2, evaluation_interval=1),
        goal="maximize",
        metric="Accuracy",
        series=series,
        running=[2, 3],
    )
    assert list(stops) == [2]
    assert stops[2] == (
        "Stopped early by BanditPolicy at interval 10: Accuracy 0.66 < best 0.8 "
        "/ (1 + slack_factor 0.2) = 0.6667"
    )


def test_bandit_slack_amount_stops_below_best_minus_the_amount():
    # best 0.8, slack_amount 0.2 → runs below 0.6 are stopped.
    series = {1: [0.8], 2: [0.59], 3: [0.61]}
    stops = early_stops(
        bandit(slack_amount=0.2), goal="maximize", metric="acc", series=series, running=[1, 2, 3]
    )
    assert list(stops) == [2]
    assert "acc 0.59 < best 0.8 - slack_amount 0.2 = 0.6" in stops[2]


def test_bandit_when_minimizing_stops_above_best_plus_the_slack():
    series = {1: [1.0, 0.5], 2: [2.0, 0.61], 3: [2.0, 0.59]}
    stops = early_stops(
        bandit(slack_amount=0.1), goal="minimize", metric="loss", series=series, running=[2, 3]
    )
    assert list(stops) == [2]
    assert "loss 0.61 > best 0.5 + slack_amount 0.1" in stops[2]


def test_bandit_compares_each_child_at_its_own_interval_with_the_best_up_to_there():
    # Child 1 reached 0.9 only at its 3rd value; at interval 2 the best was 0.5.
    series = {1: [0.1, 0.5, 0.9], 2: [0.2, 0.45]}
    assert (
        early_stops(
            bandit(slack_amount=0.1), goal="maximize", metric="m", series=series, running=[2]
        )
        == {}
    )


def test_delay_and_interval_decide_when_a_child_is_looked_at():
    policy = bandit(slack_factor=0.1, evaluation_interval=2, delay_evaluation=5)
    assert [evaluation_interval(policy, n) for n in range(9)] == [0, 0, 0, 0, 0, 0, 6, 6, 8]
    # The documented example: interval 1, delay 5 → looked at from interval 5 on.
    policy = bandit(slack_factor=0.1, evaluation_interval=1, delay_evaluation=5)
    assert [evaluation_interval(policy, n) for n in range(4, 7)] == [0, 5, 6]
    series = {1: [0.9] * 4, 2: [0.1] * 4}
    assert early_stops(policy, goal="maximize", metric="m", series=series, running=[2]) == {}


def test_median_stopping_stops_a_child_whose_best_is_below_the_median_of_running_averages():
    # Running averages over intervals 1..3: 0.5, 0.6, 0.7 → median 0.6.
    series = {1: [0.4, 0.5, 0.6], 2: [0.5, 0.6, 0.7], 3: [0.6, 0.7, 0.8], 4: [0.3, 0.4, 0.56]}
    policy = PolicySpec(type="MedianStoppingPolicy", evaluation_interval=1, delay_evaluation=3)
    stops = early_stops(policy, goal="maximize", metric="acc", series=series, running=[1, 4])
    # Averages 0.5, 0.6, 0.7, 0.42: median 0.55; child 4's best 0.56 is not below it.
    assert stops == {}
    series[4] = [0.3, 0.4, 0.5]
    stops = early_stops(policy, goal="maximize", metric="acc", series=series, running=[1, 4])
    assert list(stops) == [4]
    assert "acc 0.5 < the median 0.55 of the running averages of 4 run(s)" in stops[4]


def test_truncation_selection_stops_the_lowest_percentage_at_the_interval():
    # The documented example: 20 % at interval 5 → of 5 runs, the lowest one.
    series = {i: [0.1 * i] * 5 for i in range(1, 6)}
    policy = PolicySpec(
        type="TruncationSelectionPolicy",
        evaluation_interval=1,
        delay_evaluation=5,
        truncation_percentage=20,
    )
    stops = early_stops(policy, goal="maximize", metric="acc", series=series, running=[1, 2, 5])
    assert list(stops) == [1]
    assert "acc 0.1 is in the lowest 20% of 5 run(s) at this interval" in stops[1]
    # When minimizing, the highest values are the lowest performers.
    stops = early_stops(policy, goal="minimize", metric="loss", series=series, running=[1, 5])
    assert list(stops) == [5]
    # Four runs: 20 % of them is less than one run, so none is cut.
    del series[5]
    assert early_stops(policy, goal="maximize", metric="acc", series=series, running=[1]) == {}


def test_no_termination_policy_stops_nothing():
    series = {1: [1.0], 2: [0.0]}
    assert early_stops(PolicySpec(), goal="maximize", metric="m", series=series, running=[2]) == {}


def test_search_space_expressions_sample_as_hyperdrive_defines_them():
    rng = random.Random(3)

    def values(expression, *args):
        return [draw(Parameter("--x", expression, args), rng) for _ in range(300)]

    assert set(values("choice", 1, "b")) == {1, "b"}
    assert set(values("randint", 3)) == {0, 1, 2}
    assert all(2 <= v <= 4 for v in values("uniform", 2, 4))
    assert set(values("quniform", 0, 1, 0.25)) <= {0, 0.25, 0.5, 0.75, 1.0}
    assert all(math.exp(-6) <= v <= math.exp(-1) for v in values("loguniform", -6, -1))
    assert all(round(v / 5) * 5 == v for v in values("qloguniform", 0, 5, 5))
    normal = values("normal", 10, 1)
    assert 9.7 < sum(normal) / len(normal) < 10.3
    assert all(v > 0 for v in values("lognormal", 0, 1))
    assert all(v % 2 == 0 for v in values("qnormal", 10, 3, 2))
    assert all(v % 2 == 0 and v >= 0 for v in values("qlognormal", 1, 1, 2))


HDCONFIG = """
sampling:
  type: {sampling}
  parameter_space:
  - name: --lr
    expression: {expression}
    values: {values}
  - name: --batch
    expression: choice
    values: [16, 32]
policy:
  type: NoTerminationPolicy
primary_metric_name: acc
primary_metric_goal: Maximize
max_total_runs: 10
max_concurrent_runs: 2
"""


def test_random_sampling_with_the_same_seed_draws_the_same_sweep():
    spec = parse_sweep(HDCONFIG.format(sampling="random", expression="uniform", values=[0, 1]))
    first = [sample(spec, index=i, seed=42, trials=[]) for i in range(4)]
    assert first == [sample(spec, index=i, seed=42, trials=[]) for i in range(4)]
    assert first != [sample(spec, index=i, seed=43, trials=[]) for i in range(4)]
    assert len({d["--lr"] for d in first}) == 4


def test_grid_sampling_walks_every_combination_and_caps_the_total():
    spec = parse_sweep(HDCONFIG.format(sampling="grid", expression="choice", values=[0.1, 0.2]))
    assert spec.max_total_runs == 4
    assert [grid_point(spec.parameters, i) for i in range(4)] == [
        {"--lr": 0.1, "--batch": 16},
        {"--lr": 0.1, "--batch": 32},
        {"--lr": 0.2, "--batch": 16},
        {"--lr": 0.2, "--batch": 32},
    ]


def test_bayesian_sampling_learns_from_the_children_that_ended():
    spec = parse_sweep(HDCONFIG.format(sampling="bayesian", expression="uniform", values=[0, 1]))
    trials = [
        Trial({"--lr": lr, "--batch": 16}, value=1 - abs(lr - 0.3), ended=True)
        for lr in (0.05, 0.3, 0.5, 0.9)
    ]
    drawn = sample(
        spec,
        index=len(trials),
        seed=1,
        trials=[*trials, Trial({"--lr": 0.31, "--batch": 32}, None, False)],
    )
    assert 0 <= drawn["--lr"] <= 1 and drawn["--batch"] in (16, 32)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("sampling:\n", "samplng:\n"), "samplng is not a key of an hdconfig file"),
        (("type: {sampling}", "type: sobol"), "sampling.type is 'sobol'"),
        (("primary_metric_goal: Maximize", "primary_metric_goal: up"), "primary_metric_goal"),
        (("max_total_runs: 10", "max_total_runs: many"), "max_total_runs is 'many'"),
        (("primary_metric_name: acc\n", ""), "primary_metric_name is missing"),
        (("expression: {expression}", "expression: beta"), "--lr: expression 'beta'"),
        (("values: {values}", "values: [1]"), "--lr: uniform takes 2 number(s)"),
        (("NoTerminationPolicy", "BanditPolicy"), "slack_factor or slack_amount"),
        (("type: NoTerminationPolicy", "type: BanditPolicy\n  slack: 1"), "policy.slack is not"),
    ],
)
def test_a_malformed_hdconfig_names_the_key_to_fix(change, message):
    text = HDCONFIG.replace(*change).format(sampling="random", expression="uniform", values=[0, 1])
    with pytest.raises(DefinitionError) as caught:
        parse_sweep(text)
    assert message in str(caught.value)


def test_grid_takes_only_choice_and_bayesian_no_early_termination():
    with pytest.raises(DefinitionError) as caught:
        parse_sweep(HDCONFIG.format(sampling="grid", expression="uniform", values=[0, 1]))
    assert "--lr: grid sampling tries every combination of choice values" in str(caught.value)
    with pytest.raises(DefinitionError) as caught:
        parse_sweep(HDCONFIG.format(sampling="bayesian", expression="loguniform", values=[0, 1]))
    assert "bayesian sampling models choice, uniform and quniform" in str(caught.value)
    bandit_config = HDCONFIG.replace(
        "type: NoTerminationPolicy", "type: BanditPolicy\n  slack_factor: 0.1"
    )
    with pytest.raises(DefinitionError) as caught:
        parse_sweep(bandit_config.format(sampling="bayesian", expression="uniform", values=[0, 1]))
    assert "policy: bayesian sampling" in str(caught.value)


def test_the_hdconfig_of_the_az_ml_docs_is_read_as_written():
    spec = parse_sweep(
        """
# hdconfig.yml
sampling:
    type: random # Supported options: Random, Grid, Bayesian
    parameter_space: # specify a name|expression|values tuple for each parameter.
    - name: --penalty # The name of a script parameter to generate values for.
      expression: choice # supported options: choice, randint, uniform, quniform, loguniform
      values: [0.5, 1, 1.5] # The list of values, their number depends on the expression.
policy:
    type: BanditPolicy # Supported options: BanditPolicy, MedianStoppingPolicy
    evaluation_interval: 1 # Policy properties are policy specific.
    slack_factor: 0.2
primary_metric_name: Accuracy # The metric used when evaluating the policy
primary_metric_goal: Maximize # Maximize|Minimize
max_total_runs: 8 # The maximum number of runs to generate
max_concurrent_runs: 2 # The number of runs that can run concurrently.
max_duration_minutes: 100 # The maximum length of time to run the experiment before cancelling.
"""
    )
    assert spec.sampling == "random"
    assert spec.parameters == (Parameter("--penalty", "choice", (0.5, 1, 1.5)),)
    assert spec.policy == PolicySpec(type="BanditPolicy", evaluation_interval=1, slack_factor=0.2)
    assert (spec.primary_metric_name, spec.primary_metric_goal) == ("Accuracy", "maximize")
    assert (spec.max_total_runs, spec.max_concurrent_runs, spec.max_duration_minutes) == (8, 2, 100)
