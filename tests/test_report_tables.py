"""The benchmark table (:mod:`lrstudy.report.tables`): means, t-intervals, diverged seeds,
ranks and the test against the family baseline, on the synthetic store."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_store import STUDY, T975_2, _row, store  # noqa: F401 (fixture)
from scipy import stats

from lrstudy import report

# the module fixture runs once: keep the module on one pytest-xdist worker
pytestmark = pytest.mark.xdist_group("report")


def test_table_means_and_intervals(store):
    row = _row(store["table"], "fixed-baseline")
    assert (row["seeds"], row["diverged"]) == (3, 0)
    assert row["test_accuracy_mean"] == pytest.approx(0.82)
    assert row["test_accuracy_ci"] == pytest.approx(T975_2 * 0.02 / math.sqrt(3))
    assert row["test_loss_mean"] == pytest.approx(0.45)
    assert row["test_loss_ci"] == pytest.approx(T975_2 * 0.05 / math.sqrt(3))
    assert row["val_accuracy_mean"] == pytest.approx(0.81)
    assert row["val_accuracy_ci"] == pytest.approx(T975_2 * 0.01 / math.sqrt(3))
    assert row["val_loss_mean"] == pytest.approx(0.7) and row["val_loss_ci"] == pytest.approx(0)
    assert (row["optimizer"], row["schedule"]) == ("adam", "constant")
    assert row["learning_rate"] == pytest.approx(1e-3)


def test_table_diverged_seeds_score_at_chance_and_are_counted(store):
    table = store["table"]
    large = _row(table, "fixed-large")
    assert (large["seeds"], large["diverged"]) == (4, 1)  # FAILED and RUNNING not counted
    # the ranked test accuracy scores the diverged seed at chance (1/10) ...
    assert large["test_accuracy_mean"] == pytest.approx(np.mean([0.70, 0.71, 0.75, 0.1]))
    # ... every other mean leaves it out
    assert large["val_accuracy_mean"] == pytest.approx(0.81)  # not the diverged 0.1
    too_large = _row(table, "fixed-too-large")
    assert (too_large["seeds"], too_large["diverged"]) == (2, 2)
    assert too_large["test_accuracy_mean"] == pytest.approx(0.1) and too_large["rank"] == 4


def test_table_single_seed_has_nan_interval(store):
    row = _row(store["table"], "warmup-linear")
    assert row["test_accuracy_mean"] == pytest.approx(0.90)
    assert math.isnan(row["test_accuracy_ci"]) and math.isnan(row["val_loss_ci"])


def test_table_targets_best_epoch_and_time(store):
    row = _row(store["table"], "fixed-baseline")
    assert row["reached_target"] == 2
    assert row["epochs_to_target_mean"] == pytest.approx(2.5)
    assert row["time_to_target_s_mean"] == pytest.approx(15.0)
    assert row["train_time_s_mean"] == pytest.approx(31.0)
    assert row["best_val_loss_mean"] == pytest.approx(0.51)
    assert row["best_val_loss_epoch_mean"] == pytest.approx(3.0)
    assert _row(store["table"], "fixed-large")["reached_target"] == 0


def test_table_ranks(store):
    table = store["table"]
    assert table["scenario"].tolist() == [
        "warmup-linear", "fixed-baseline", "fixed-large", "fixed-too-large"]
    assert table["rank"].tolist() == [1, 2, 3, 4]
    ranks = dict(zip(table["scenario"], table["family_rank"]))
    assert (ranks["warmup-linear"], ranks["fixed-baseline"], ranks["fixed-large"]) == (1, 1, 2)
    assert table["p_best"].sum() == pytest.approx(1.0)


def test_table_against_the_reference_is_paired_with_simultaneous_intervals(store):
    """Without a reference named, the budget's family baseline is the reference; each
    strategy is compared on the seeds both have, with Bonferroni t-intervals over the
    comparisons that have an interval (here 2), and the call read from that interval.
    (Replaces the Holm-p test: the call no longer comes from a p-value beside the interval.)"""
    table = store["table"]
    assert set(table["reference"]) == {"fixed-baseline"}
    large = _row(table, "fixed-large")
    assert large["n_pairs"] == 3  # seed 3 (diverged) has no baseline partner
    assert large["diff"] == pytest.approx(-0.10)
    for name, x, y in (("fixed-large", [0.70, 0.71, 0.75], [0.80, 0.82, 0.84]),
                       ("fixed-too-large", [0.1, 0.1], [0.80, 0.82])):
        d = np.subtract(x, y)
        low, high = stats.t.interval(1 - 0.05 / 2, d.size - 1, loc=d.mean(), scale=stats.sem(d))
        row = _row(table, name)
        assert (row["diff_low"], row["diff_high"]) == pytest.approx((low, high))
        p = stats.ttest_rel(x, y).pvalue
        assert row["p_adjusted"] == pytest.approx(min(1.0, 2 * p))
        assert (row["p_adjusted"] < 0.05) == (high < 0 or low > 0)  # one procedure
    assert large["call"] == "worse"
    assert _row(table, "fixed-baseline")["call"] == "reference"
    single = _row(table, "warmup-linear")  # one seed: a difference, no interval
    assert single["n_pairs"] == 1 and math.isnan(single["diff_low"])
    assert math.isnan(single["p_adjusted"]) and single["call"] == "undecided"


def test_table_with_one_seed_per_side_gives_nan_p_not_error():
    trials = pd.DataFrame({
        "run_id": ["a", "b"], "scenario": ["s", "base"], "family": ["fixed", "fixed"],
        "baseline": ["base", "base"], "diverged": [False, False], "seed": [0, 0],
        "test_accuracy": [0.5, 0.6], "test_loss": [1.0, 0.9],
        "final_val_accuracy": [0.5, 0.6], "final_val_loss": [1.0, 0.9],
        "best_val_loss": [1.0, 0.9], "best_val_loss_epoch": [1, 1],
        "epochs_to_target": [np.nan, np.nan], "time_to_target_s": [np.nan, np.nan],
        "train_time_s": [1.0, 1.0],
    })
    row = _row(report.benchmark_table(trials), "s")
    assert row["diff"] == pytest.approx(-0.1)
    assert math.isnan(row["p_adjusted"]) and row["call"] == "undecided"


def test_format_table(store):
    shown = report.format_table(store["table"])
    assert shown.loc[2, "test accuracy"] == "0.8200 ± 0.0497"
    assert shown.loc[2, "vs reference, points [simultaneous 95% CI]"] == "reference"
    assert shown.loc[3, "vs reference, points [simultaneous 95% CI]"].startswith("-10.00 [")
    assert shown.loc[2, "epochs to target (reached)"] == "2.5 (2/3)"
    assert shown.loc[3, "diverged / seeds"] == "1 / 4"
    assert shown.loc[3, "call"] == "worse"


def test_finder_calibration_gives_each_rules_median_and_spread():
    import pandas as pd

    from lrstudy.report import tables

    tests = pd.DataFrame({"finder_key": ["k"] * 3, "optimizer": ["adam"] * 3,
                          "scenario": ["fixed-from-finder-valley"] * 3,
                          "suggestion_valley": [1e-3, 1e-2, 1e-1],
                          "suggestion_steepest": [1e-3, 1e-3, 1e-3],
                          "suggestion_minimum": [None] * 3, "suggestion_slide": [None] * 3})
    table = tables.finder_calibration(tests).set_index("rule")
    assert set(table.index) == {"valley", "steepest"}  # no suggestion: no row
    assert table.loc["valley", "median_lr"] == pytest.approx(1e-2)
    assert table.loc["valley", "spread_decades"] == pytest.approx(2.0)
    assert table.loc["steepest", "spread_decades"] == 0 and table["seeds"].tolist() == [3, 3]
    # a suite's range tests, one set-up per workload: each row says which
    suite = pd.concat([tests.assign(scenario=f"fixed-from-finder-valley@{w}", finder_key=w)
                       for w in ("cnn", "digits")], ignore_index=True)
    both = tables.finder_calibration(suite)
    assert both.columns[0] == "workload"
    assert both.groupby("workload")["rule"].apply(list).to_dict() == {
        "cnn": ["valley", "steepest"], "digits": ["valley", "steepest"]}

def test_the_readable_table_splits_into_parts_that_keep_every_column(store):
    from lrstudy.report import tables

    shown = report.format_table(store["table"])
    parts = tables.table_parts(shown)
    assert list(parts) == ["comparison", "training"]
    assert all(part.index.equals(shown.index) for part in parts.values())
    assert all(part.columns[0] == "scenario" for part in parts.values())
    columns = [c for part in parts.values() for c in part.columns if c != "scenario"]
    assert sorted(columns) == sorted(c for c in shown.columns if c != "scenario")  # each once
    assert "call" in parts["comparison"] and "train time s" in parts["training"]


def test_the_calibration_table_of_a_range_test_is_filled(store):
    """One row per rule that suggested something, every number there (the report shows the
    table only when it has rows)."""
    from lrstudy.report import tables

    table = tables.finder_calibration(report.load_range_tests(STUDY, store["uri"]))
    assert table["rule"].tolist() == ["valley", "steepest"]
    assert not table.isna().any().any()
    assert table["median_lr"].tolist() == pytest.approx([1e-2, 1e-3])
    assert tables.finder_calibration(report.load_range_tests("nope", store["uri"])).empty
