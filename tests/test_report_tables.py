"""The benchmark table (:mod:`lrstudy.report.tables`): means, t-intervals, diverged seeds,
ranks and the test against the family baseline, on the synthetic store."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_store import T975_2, _row, store  # noqa: F401 (fixture)
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


def test_table_diverged_are_counted_not_averaged(store):
    table = store["table"]
    large = _row(table, "fixed-large")
    assert (large["seeds"], large["diverged"]) == (4, 1)  # FAILED and RUNNING not counted
    assert large["test_accuracy_mean"] == pytest.approx(np.mean([0.70, 0.71, 0.75]))
    assert large["val_accuracy_mean"] == pytest.approx(0.81)  # not the diverged 0.1
    too_large = _row(table, "fixed-too-large")
    assert (too_large["seeds"], too_large["diverged"]) == (2, 2)
    assert math.isnan(too_large["test_accuracy_mean"]) and pd.isna(too_large["rank"])


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
    assert table["rank"].tolist()[:3] == [1, 2, 3]
    ranks = dict(zip(table["scenario"], table["family_rank"]))
    assert (ranks["warmup-linear"], ranks["fixed-baseline"], ranks["fixed-large"]) == (1, 1, 2)


def test_table_against_baseline(store):
    table = store["table"]
    large = _row(table, "fixed-large")
    assert large["vs_baseline_test_accuracy"] == pytest.approx(np.mean([0.70, 0.71, 0.75]) - 0.82)
    expected = stats.ttest_ind([0.70, 0.71, 0.75], [0.80, 0.82, 0.84], equal_var=False).pvalue
    assert large["vs_baseline_p"] == pytest.approx(expected)
    assert expected < 0.05 and bool(large["differs_from_baseline"])
    baseline = _row(table, "fixed-baseline")
    assert math.isnan(baseline["vs_baseline_p"]) and not baseline["differs_from_baseline"]
    assert math.isnan(_row(table, "warmup-linear")["vs_baseline_test_accuracy"])
    assert math.isnan(_row(table, "fixed-too-large")["vs_baseline_p"])


def test_table_with_one_seed_per_side_gives_nan_p_not_error():
    trials = pd.DataFrame({
        "run_id": ["a", "b"], "scenario": ["s", "base"], "family": ["fixed", "fixed"],
        "baseline": ["base", "base"], "diverged": [False, False],
        "test_accuracy": [0.5, 0.6], "test_loss": [1.0, 0.9],
        "final_val_accuracy": [0.5, 0.6], "final_val_loss": [1.0, 0.9],
        "best_val_loss": [1.0, 0.9], "best_val_loss_epoch": [1, 1],
        "epochs_to_target": [np.nan, np.nan], "time_to_target_s": [np.nan, np.nan],
        "train_time_s": [1.0, 1.0],
    })
    row = _row(report.benchmark_table(trials), "s")
    assert row["vs_baseline_test_accuracy"] == pytest.approx(-0.1)
    assert math.isnan(row["vs_baseline_p"]) and not row["differs_from_baseline"]


def test_format_table(store):
    shown = report.format_table(store["table"])
    assert shown.loc[2, "test accuracy"] == "0.8200 ± 0.0497"
    assert shown.loc[2, "epochs to target (reached)"] == "2.5 (2/3)"
    assert shown.loc[3, "diverged / seeds"] == "1 / 4"
    assert shown.loc[3, "beyond seed noise"] == "yes"
