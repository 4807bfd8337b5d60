"""The aggregate score across workloads (lrstudy.report.aggregate_score): the normalization
(the reference at 0, the best at 1, the margin's floor), the rectangle of common seeds, and
the IQM with its stratified bootstrap interval against rliable's own functions."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import numpy as np
import pytest
from across_trials import REGRESSION, finals, paired_scores
from rliable import metrics

from lrstudy.report import aggregate_score

REF = "fixed-baseline"


def planted(seed: int = 0):
    """Four workloads, one a regression (RMSE); ``good`` 1 point (0.1 RMSE) better than the
    reference, ``bad`` worse; w4 has 7 final seeds where the others have 10, and on w2 ``good``
    lacks seed 0."""
    rng = np.random.default_rng(seed)
    scores = {}
    for w, seeds in (("w1", 10), ("w2", 10), ("w3", 10), ("w4", 7)):
        scores[w] = paired_scores(rng, {REF: 0.88, "good": 0.89, "bad": 0.87}, seeds)
    scores["w2"]["good"][0] = None
    scores["w3"] = paired_scores(rng, {REF: 3.0, "good": 2.9, "bad": 3.1}, 10, 0.02, 0.02)
    return finals(scores, {"w3": REGRESSION})


def test_normalization_puts_the_reference_at_0_and_the_best_at_1():
    z = aggregate_score.normalized_scores(planted(), REF)
    means = z.groupby(["workload", "strategy"])["normalized"].mean().unstack()
    assert means[REF].to_numpy() == pytest.approx(0.0, abs=1e-12)
    assert means["good"].to_numpy() == pytest.approx(1.0)  # good is best on every workload
    assert (means["bad"] < 0).all()
    # the rectangle: 7 seeds per workload (w4's count), on w2 the first 7 of seeds 1..9
    seeds = z.groupby("workload")["seed"].unique()
    assert all(len(s) == 7 for s in seeds)
    assert sorted(seeds["w2"]) == list(range(1, 8)) and sorted(seeds["w4"]) == list(range(7))
    # a regression normalizes its RMSE the same way, lower being better
    w3 = z[(z.workload == "w3") & (z.strategy == "good")]
    assert (w3["score"] < -2).all()  # oriented: -rmse


def test_the_scale_is_floored_at_the_margin_when_the_reference_is_best():
    scores = {"w": {REF: [0.90, 0.91, 0.92], "other": [0.88, 0.89, 0.90]}}
    z = aggregate_score.normalized_scores(finals(scores), REF, margin=0.01)
    means = z.groupby("strategy")["normalized"].mean()
    assert means[REF] == pytest.approx(0.0, abs=1e-12)
    assert means["other"] == pytest.approx(-2.0)  # 2 points short, in margins of 1 point
    # a best strategy within the margin scores its gap in margins, not a blown-up 1
    close = {"w": {REF: [0.90, 0.91], "other": [0.905, 0.915]}}
    z = aggregate_score.normalized_scores(finals(close), REF, margin=0.01)
    assert z.groupby("strategy")["normalized"].mean()["other"] == pytest.approx(0.5)
    # a margin per workload
    z = aggregate_score.normalized_scores(finals(close), REF, margin={"w": 0.02})
    assert z.groupby("strategy")["normalized"].mean()["other"] == pytest.approx(0.25)


def test_workloads_without_the_reference_and_partial_strategies_are_left_out():
    scores = {"w1": {REF: [0.9, 0.91], "a": [0.92, 0.93], "b": [0.8, 0.81]},
              "w2": {REF: [0.9, 0.91], "a": [0.95, 0.96]},
              "w3": {"a": [0.5, 0.6]}}  # no reference: no zero point
    z = aggregate_score.normalized_scores(finals(scores), REF)
    assert set(z["workload"]) == {"w1", "w2"}
    assert set(z["strategy"]) == {REF, "a"}  # b did not run on w2
    assert aggregate_score.normalized_scores(finals(scores), "nobody").empty


@pytest.fixture
def rliable_library():
    """rliable's own ``library`` module. With the pandas this project pins, ``import arch``
    fails in arch's univariate models, which rliable does not use; its bootstrap module
    imports on its own, so for this test only the package ``arch`` is stood in by an empty
    module over the same folder (arch's ``__init__`` is not run)."""
    try:
        yield importlib.import_module("rliable.library")
        return
    except TypeError:
        pass
    spec = importlib.util.find_spec("arch")
    stub = types.ModuleType("arch")
    stub.__path__ = list(spec.submodule_search_locations)
    saved = {k: sys.modules.pop(k) for k in list(sys.modules)
             if k == "arch" or k.startswith("arch.") or k == "rliable.library"}
    sys.modules["arch"] = stub
    try:
        yield importlib.import_module("rliable.library")
    finally:
        for k in [k for k in sys.modules
                  if k == "arch" or k.startswith("arch.") or k == "rliable.library"]:
            del sys.modules[k]
        sys.modules.update(saved)


def test_iqm_and_interval_are_rliables_number_for_number(rliable_library):
    reps, seed = 2000, 7
    z = aggregate_score.normalized_scores(planted(), REF)
    matrices = aggregate_score.score_matrices(z)
    assert {m.shape for m in matrices.values()} == {(7, 4)}
    table = aggregate_score.iqm_table(planted(), REF, reps=reps, seed=seed).set_index(
        "strategy")

    def iqm(x):
        return np.array([metrics.aggregate_iqm(x)])

    state = np.random.get_state()
    try:
        for name, matrix in matrices.items():
            np.random.seed(seed)  # rliable's StratifiedBootstrap draws from np.random
            try:
                points, intervals = rliable_library.get_interval_estimates(
                    {name: matrix}, iqm, reps=reps)
            except TypeError as error:  # arch >= 8 refuses rliable 1.2's random_state=None
                pytest.skip(f"rliable.library cannot run here: {error}")
            assert table.loc[name, "iqm"] == pytest.approx(points[name][0], abs=1e-12)
            assert (table.loc[name, "low"], table.loc[name, "high"]) == pytest.approx(
                tuple(intervals[name][:, 0]), abs=1e-12)
    finally:
        np.random.set_state(state)
    assert table.index[0] == "good" and table.loc["good", "low"] > table.loc[REF, "high"]
    assert (table["seeds"] == 7).all() and (table["workloads"] == 4).all()


def test_the_bootstrap_is_seeded_and_leaves_numpys_global_state_alone():
    matrix = np.random.default_rng(1).normal(size=(6, 3))
    before = np.random.get_state()[1].copy()
    first = aggregate_score.stratified_bootstrap(matrix, reps=3000, seed=5)
    assert first == aggregate_score.stratified_bootstrap(matrix, reps=3000, seed=5)
    assert first != aggregate_score.stratified_bootstrap(matrix, reps=3000, seed=6)
    assert np.array_equal(before, np.random.get_state()[1])
    low, high = first
    assert low < metrics.aggregate_iqm(matrix) < high
