"""The LR range test calibrated across workloads (lrstudy.report.calibration) on a planted
frame: per workload, finder_regret's numbers, and the ratio's spread over the range-test
seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from across_trials import finals

from lrstudy.report import calibration, frames, tuning

REF = "fixed-baseline"
FED = "fixed-from-finder-valley"


def planted():
    """Two workloads. w1: the valley rule suggests 0.3x the tuned LR and costs 2 points;
    w2: it suggests 2x and costs nothing. w2's finals name their twin by strategy alone."""
    rng = np.random.default_rng(3)
    base = {w: rng.normal(0.88, 0.004, 10) for w in ("w1", "w2")}
    scores = {"w1": {REF: base["w1"], FED: base["w1"] - 0.02 + rng.normal(0, 0.001, 10)},
              "w2": {REF: base["w2"], FED: base["w2"] + rng.normal(0, 0.001, 10)}}
    params = {("w1", REF): {"peak_lr": 1e-3}, ("w2", REF): {"peak_lr": 1e-3},
              ("w1", FED): {"peak_lr": 3e-4, "finder.rule": "valley", "finder.key": "k1",
                            "finder.twin": f"{REF}@w1"},
              ("w2", FED): {"peak_lr": 2e-3, "finder.rule": "valley", "finder.key": "k2",
                            "finder.twin": REF}}
    trials = finals(scores, params=params)
    range_tests = pd.DataFrame({
        "run_id": [f"r{i}" for i in range(6)], "scenario": [f"{FED}@w1"] * 3 + [f"{FED}@w2"] * 3,
        "finder_key": ["k1"] * 3 + ["k2"] * 3, "seed": [0, 1, 2] * 2,
        "suggestion_valley": [2e-4, 3e-4, 5e-4, 1e-3, 2e-3, 4e-3],
        "suggestion_steepest": [1e-2] * 6})
    return trials, range_tests


def test_calibration_per_workload_with_the_ratios_spread():
    trials, range_tests = planted()
    table = calibration.calibration_table(trials, range_tests).set_index("workload")
    assert table["strategy"].tolist() == [FED, FED] and (table["rule"] == "valley").all()
    assert table.loc["w1", "twin"] == f"{REF}@w1" and table.loc["w2", "twin"] == f"{REF}@w2"
    assert table["ratio"].to_dict() == pytest.approx({"w1": 0.3, "w2": 2.0})
    assert table["ratio_low"].to_dict() == pytest.approx({"w1": 0.2, "w2": 1.0})
    assert table["ratio_high"].to_dict() == pytest.approx({"w1": 0.5, "w2": 4.0})
    assert (table["range_tests"] == 3).all() and (table["seeds"] == 10).all()
    assert table.loc["w1", "regret"] == pytest.approx(-2.0, abs=0.15)  # accuracy points
    assert table.loc["w1", "regret_high"] < 0 < table.loc["w2", "regret_high"]
    assert table.loc["w2", "regret_low"] < 0
    assert (table["unit"] == "accuracy points").all()


def test_calibration_reuses_finder_regret_workload_by_workload():
    trials, range_tests = planted()
    table = calibration.calibration_table(trials, range_tests).set_index("workload")
    w1 = trials[trials["scenario"].str.endswith("@w1")]
    split = frames.phases(w1)
    alone = tuning.finder_regret(pd.concat([split["ranked"], split["finder"]])).iloc[0]
    for column in ("suggested_lr", "tuned_lr", "ratio", "regret", "regret_low", "regret_high"):
        assert table.loc["w1", column] == pytest.approx(alone[column])


def test_without_range_tests_or_fed_strategies():
    trials, _ = planted()
    bare = calibration.calibration_table(trials)
    assert bare["range_tests"].tolist() == [0, 0] and bare["ratio_low"].isna().all()
    assert bare["ratio"].notna().all()
    none = calibration.calibration_table(trials[~trials["scenario"].str.startswith(FED)])
    assert none.empty and none.columns.tolist() == calibration.COLUMNS
