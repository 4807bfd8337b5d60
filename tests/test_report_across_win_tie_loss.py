"""Win / tie / loss across workloads (lrstudy.report.pairwise): planted data, and the
false-call rate by simulation.

The simulation is the A/A study of ``tests/test_verdict_simulation.py`` made pairwise: 4,000
workloads of 8 strategies x 10 seeds with no true difference (test accuracy 0.88 + a seed
effect every strategy shares + noise of its own, SD 0.5 points per strategy), every pair
called from Bonferroni intervals over the workload's 28 pairs, vectorized over workloads with
:mod:`lrstudy.report.simultaneous` and :mod:`lrstudy.report.sequential`, and checked against
the module's own DataFrame entry point on the first workloads."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from across_trials import REGRESSION, finals, paired_scores

from lrstudy.report import pairwise, sequential, simultaneous

REF = "fixed-baseline"


def planted():
    """Five workloads, one a regression: ``great`` 2 points (0.2 RMSE) better than the rest;
    ``twin-a`` and ``twin-b`` identical seed for seed; ``same`` drawn like the reference."""
    rng = np.random.default_rng(11)
    scores, tasks = {}, {}
    for w in ("w1", "w2", "w3", "w4"):
        scores[w] = paired_scores(rng, {REF: 0.88, "great": 0.90, "twin-a": 0.88, "same": 0.88},
                                  10)
    scores["w5"] = paired_scores(rng, {REF: 3.0, "great": 2.8, "twin-a": 3.0, "same": 3.0},
                                 10, 0.02, 0.02)
    tasks["w5"] = REGRESSION
    for w in scores:
        scores[w]["twin-b"] = list(scores[w]["twin-a"])
    return finals(scores, tasks)


MARGINS = {"w1": 0.003, "w2": 0.003, "w3": 0.003, "w4": 0.003, "w5": 0.03}


def test_a_planted_better_strategy_wins_every_pair_and_identical_ones_tie():
    calls = pairwise.pairwise_calls(planted(), MARGINS)
    counts = pairwise.win_tie_loss(calls).set_index(["strategy", "other"])
    assert (counts["workloads"] == 5).all()  # every pair, on every workload
    assert (counts[list(pairwise.OUTCOMES)].sum(axis=1) == 5).all()
    great = counts.loc["great"]
    assert (great["win"] == 5).all() and (great["net"] == 5).all()
    assert (counts.xs("great", level="other")["loss"] == 5).all()  # the mirror
    twins = counts.loc[("twin-a", "twin-b")]
    assert twins["tie"] == 5  # zero differences: a zero-width interval at 0, inside the margin
    # strategies drawn alike are never called apart: ties or undecided
    alike = [REF, "twin-a", "twin-b", "same"]
    among = counts.loc[[(a, b) for a, b in itertools.permutations(alike, 2)]]
    assert (among["win"] == 0).all() and (among["loss"] == 0).all()
    # each row mirrors its transpose
    for (a, b), row in counts.iterrows():
        other = counts.loc[(b, a)]
        assert (row["win"], row["tie"], row["loss"], row["undecided"]) == (
            other["loss"], other["tie"], other["win"], other["undecided"])


def test_the_calls_are_the_verdicts_calls_with_the_intervals_over_the_workloads_pairs():
    calls = pairwise.pairwise_calls(planted(), MARGINS)
    w1 = calls[calls.workload == "w1"]
    assert len(w1) == 5 * 4  # ordered pairs of 5 strategies
    frame = planted()
    wide = frame[frame.scenario.str.endswith("@w1")].pivot(index="seed", columns="scenario",
                                                           values="test_accuracy")
    d = (wide["great@w1"] - wide[f"{REF}@w1"]).to_numpy()
    found = simultaneous.interval(d, 0.05, k=10)  # 10 unordered pairs of 5 strategies
    row = w1[(w1.strategy == "great") & (w1.other == REF)].iloc[0]
    assert (row["low"], row["high"], row["diff"]) == pytest.approx(
        (found["low"], found["high"], found["diff"]))
    assert row["outcome"] == {"better": "win", "worse": "loss", "equivalent": "tie",
                              "undecided": "undecided"}[
        simultaneous.call(found["low"], found["high"], 0.003)]
    net = pairwise.net_matrix(pairwise.win_tie_loss(calls))
    assert net.index[0] == "great" and np.isnan(np.diag(net.to_numpy())).all()


def test_empty_and_partial_workloads():
    assert pairwise.win_tie_loss(pairwise.pairwise_calls(
        finals({"w": {}}).assign(scenario=[]))).empty
    scores = {"w1": {"a": [0.9, 0.91, 0.9], "b": [0.8, 0.81, 0.8]},
              "w2": {"a": [0.9, 0.91, 0.9], "c": [0.8, 0.81, 0.8]}}
    counts = pairwise.win_tie_loss(pairwise.pairwise_calls(finals(scores)))
    assert set(map(tuple, counts[["strategy", "other"]].to_numpy())) == {
        ("a", "b"), ("b", "a"), ("a", "c"), ("c", "a")}
    assert (counts["workloads"] == 1).all()  # only the workloads both ran on


# ---- the false-call rate -----------------------------------------------------------------------

WORKLOADS = 4_000
STRATEGIES = 8
SEEDS = 10
ALPHA = 0.05
MARGIN = 0.003
PAIRS = list(itertools.combinations(range(STRATEGIES), 2))
K = len(PAIRS)


def test_with_no_true_difference_false_wins_and_losses_stay_below_the_nominal_level():
    rng = np.random.default_rng(2026)
    x = (0.88 + rng.normal(0, 0.003, (WORKLOADS, SEEDS, 1))
         + rng.normal(0, 0.004, (WORKLOADS, SEEDS, STRATEGIES)))
    a, b = np.array(PAIRS).T
    d = x[:, :, a] - x[:, :, b]  # workloads x seeds x pairs
    critical = sequential.critical_t(sequential.Design(), SEEDS, ALPHA / K)
    half = critical * d.std(axis=1, ddof=1) / np.sqrt(SEEDS)
    low, high = d.mean(axis=1) - half, d.mean(axis=1) + half
    calls = simultaneous.calls(low, high, MARGIN)
    false = np.isin(calls, ("better", "worse"))
    per_pair = false.mean()
    per_workload = false.any(axis=1).mean()
    ties = (calls == "equivalent").mean()
    print(f"W/T/L A/A over {WORKLOADS} workloads of {STRATEGIES} strategies x {SEEDS} seeds: "
          f"share of pairs called win/loss {per_pair:.5f} (Bonferroni bound {ALPHA / K:.5f}), "
          f"workloads with any false call {per_workload:.4f}, ties {ties:.3f}")
    assert per_pair <= ALPHA  # the nominal level, per pair ...
    assert per_pair <= 1.3 * ALPHA / K  # ... and Bonferroni's share of it, with room for chance
    assert per_workload <= ALPHA  # the family: all pairs of one workload
    # the module's DataFrame entry point makes the same calls
    for w in range(3):
        scores = {f"w{w}": {f"s{i}": x[w, :, i].tolist() for i in range(STRATEGIES)}}
        found = pairwise.pairwise_calls(finals(scores), MARGIN)
        found = found.set_index(["strategy", "other"])["outcome"]
        expected = [pairwise.OUTCOME_OF_CALL[c] for c in calls[w]]
        assert [found[(f"s{i}", f"s{j}")] for i, j in PAIRS] == expected

