"""The strategy and workload of a trial (lrstudy.report.workloads) and performance profiles
across workloads (lrstudy.report.profiles), against a hand computation on planted finals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from across_trials import REGRESSION, finals

from lrstudy.report import profiles, workloads


def test_split_scenario_names_the_strategy_and_the_workload():
    assert workloads.split_scenario("warmup-cosine@cnn") == ("warmup-cosine", "cnn")
    assert workloads.split_scenario("fixed-baseline") == ("fixed-baseline", "")
    assert workloads.split_scenario("a@b@c") == ("a", "b@c")  # the first @ splits
    for bad in ("", "@cnn", None):
        with pytest.raises(ValueError, match="Received: name="):
            workloads.split_scenario(bad)


def test_with_workloads_adds_the_columns_once():
    trials = pd.DataFrame({"scenario": ["a@w1", "b@w2", "c"]})
    out = workloads.with_workloads(trials)
    assert out[["strategy", "workload"]].to_numpy().tolist() == [["a", "w1"], ["b", "w2"],
                                                                 ["c", ""]]
    assert workloads.with_workloads(out) is out
    assert "strategy" not in trials  # the input is not changed


# Planted: error rates and RMSEs that are exact binary fractions, so the ratios are exact.
# w1: A and B tie for best (error 0.125), C at 0.25 (ratio 2).
# w2: A best (0.0625), B ratio 2, C ratio 3.
# w3 (regression, RMSE): A 2.0, B 3.0 (ratio 1.5), C did not run (ratio inf).
# Two seeds each, symmetric about the mean.
D = 1 / 64
PLANTED = {"w1": {"A": [0.875 - D, 0.875 + D], "B": [0.875 + D, 0.875 - D],
                  "C": [0.75 - D, 0.75 + D]},
           "w2": {"A": [0.9375 - D, 0.9375 + D], "B": [0.875, 0.875], "C": [0.8125 - D,
                                                                             0.8125 + D]},
           "w3": {"A": [2.0 - D, 2.0 + D], "B": [3.0, 3.0]}}
TASKS = {"w3": REGRESSION}


def test_performance_ratios_by_hand():
    ratios = profiles.performance_ratios(finals(PLANTED, TASKS))
    r = ratios.set_index(["workload", "strategy"])["ratio"]
    assert r.to_dict() == {("w1", "A"): 1.0, ("w1", "B"): 1.0, ("w1", "C"): 2.0,
                           ("w2", "A"): 1.0, ("w2", "B"): 2.0, ("w2", "C"): 3.0,
                           ("w3", "A"): 1.0, ("w3", "B"): 1.5, ("w3", "C"): math.inf}
    cost = ratios.set_index(["workload", "strategy"])["cost"]
    assert cost[("w1", "C")] == 0.25 and cost[("w3", "B")] == 3.0  # error, and RMSE itself
    assert math.isnan(cost[("w3", "C")])


def test_performance_profile_by_hand():
    ratios = profiles.performance_ratios(finals(PLANTED, TASKS))
    taus = [1.0, 1.5, 2.0, 3.0, 100.0]
    profile = profiles.performance_profile(ratios, taus)
    share = profile.pivot(index="tau", columns="strategy", values="share")
    third = 1 / 3
    assert share["A"].tolist() == [1.0] * 5  # best everywhere: 1 from tau = 1
    assert share["B"].tolist() == pytest.approx([third, 2 * third, 1, 1, 1])  # a tie counts
    assert share["C"].tolist() == pytest.approx([0, 0, third, 2 * third, 2 * third])
    # the default taus step exactly where the profiles do
    default = profiles.performance_profile(ratios)
    assert sorted(default["tau"].unique())[:4] == [1.0, 1.5, 2.0, 3.0]
    with pytest.raises(ValueError, match="taus"):
        profiles.performance_profile(ratios, [0.5, 1.0])


def test_a_diverged_seed_counts_at_chance_as_in_the_verdict():
    scores = {"w": {"A": [0.9, 0.9], "B": [0.9, 0.97]}}
    # B's second seed diverged: it scores chance (0.1), whatever it measured
    ratios = profiles.performance_ratios(finals(scores, diverged={("w", "B", 1)}))
    cost = ratios.set_index("strategy")["cost"]
    assert cost["B"] == pytest.approx(1 - (0.9 + 0.1) / 2)
    assert cost["A"] == pytest.approx(0.1)


def test_the_best_cost_zero_and_an_empty_study():
    ratios = profiles.performance_ratios(finals({"w": {"A": [1.0, 1.0], "B": [0.5, 0.5]}}))
    assert ratios.set_index("strategy")["ratio"].to_dict() == {"A": 1.0, "B": math.inf}
    empty = profiles.performance_ratios(finals({"w": {}}).iloc[0:0].assign(scenario=[]))
    assert empty.empty and profiles.performance_profile(empty).empty
    assert np.array_equal(profiles.default_taus(empty), [1.0, 1.05])


def test_the_docstring_examples_run():
    import doctest

    assert doctest.testmod(workloads).failed == 0
