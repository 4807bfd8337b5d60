"""Tidy frames from the synthetic store (:mod:`lrstudy.report.frames`): which runs count,
the columns, SQL and client reads giving the same frames, missing and deleted stores."""

from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest
from mlflow import MlflowClient
from report_store import EPOCHS, STUDY, _healthy, _trial, store  # noqa: F401 (fixture)

from lrstudy import report
from lrstudy.execution import report_run
from lrstudy.tracking import store as tracking

# the module fixture runs once: keep the module on one pytest-xdist worker
pytestmark = pytest.mark.xdist_group("report")


def test_load_trials_keeps_finished_trials_only(store):
    trials, ids = store["trials"], store["ids"]
    got = set(zip(trials["scenario"], trials["seed"].astype(int)))
    assert got == {("fixed-baseline", 0), ("fixed-baseline", 1), ("fixed-baseline", 2),
                   ("fixed-large", 0), ("fixed-large", 1), ("fixed-large", 2),
                   ("fixed-large", 3), ("fixed-too-large", 0), ("fixed-too-large", 1),
                   ("warmup-linear", 0)}
    excluded = {ids["fixed-large", 4], ids["fixed-large", 5], ids["finder"],
                *store["parents"].values()}
    assert excluded.isdisjoint(trials["run_id"])
    assert trials.loc[trials["diverged"], "run_id"].tolist() == [
        ids["fixed-large", 3], ids["fixed-too-large", 0], ids["fixed-too-large", 1]]


def test_load_trials_columns(store):
    trials = store["trials"]
    row = trials[(trials["scenario"] == "fixed-baseline") & (trials["seed"] == 1)].iloc[0]
    assert row["learning_rate"] == pytest.approx(1e-3)
    assert row["epochs"] == EPOCHS and row["batch_size"] == 64
    assert row["optimizer"] == "adam" and row["baseline"] == "fixed-baseline"
    assert row["test_accuracy"] == pytest.approx(0.82)
    assert row["final_val_accuracy"] == pytest.approx(0.81)
    assert row["final_val_loss"] == pytest.approx(0.7)
    assert row["best_val_loss"] == pytest.approx(0.51) and row["best_val_loss_epoch"] == 3
    diverged = trials[trials["run_id"] == store["ids"]["fixed-large", 3]].iloc[0]
    assert math.isnan(diverged["test_accuracy"])
    assert pd.isna(_row_of(trials, "warmup-linear")["baseline"])
    for name, parent in store["parents"].items():  # each trial knows its scenario run
        assert set(trials.loc[trials["scenario"] == name, "parent_run_id"]) == {parent}


def _row_of(trials, scenario):
    return trials[trials["scenario"] == scenario].iloc[0]


def test_load_trials_sql_equals_client(store):
    via_sql = report.load_trials(STUDY, store["uri"], method="sql")
    via_client = report.load_trials(STUDY, store["uri"], method="client")
    assert set(via_sql.columns) == set(via_client.columns)
    pd.testing.assert_frame_equal(via_sql, via_client[via_sql.columns])
    pd.testing.assert_frame_equal(via_sql, store["trials"][via_sql.columns])
    tests_sql = report.load_range_tests(STUDY, store["uri"], method="sql")
    tests_client = report.load_range_tests(STUDY, store["uri"], method="client")
    pd.testing.assert_frame_equal(tests_sql, tests_client[tests_sql.columns])


def test_load_trials_without_trials_names_study_and_store(store):
    with pytest.raises(report.NoTrialsError) as info:
        report.load_trials("nope", store["uri"])
    assert "'nope'" in str(info.value) and store["uri"] in str(info.value)


def test_missing_store_is_an_error_not_a_new_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'absent.db'}"
    with pytest.raises(report.NoTrialsError, match="absent.db"):
        report.load_trials("smoke", uri)
    with pytest.raises(report.NoTrialsError, match="'smoke'"):
        report_run.make_report("smoke", uri, out_dir=tmp_path / "out")
    assert not (tmp_path / "absent.db").exists() and not (tmp_path / "out").exists()


def test_deleted_study_has_no_trials(store, tmp_path):
    shutil.copy(store["tmp"] / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.delete_experiment(client.get_experiment_by_name(STUDY).experiment_id)
    for method in ("sql", "client"):
        with pytest.raises(report.NoTrialsError, match="'synth'"):
            report.load_trials(STUDY, uri, method=method)


def test_histories_bulk_equals_get_metric_history(store):
    client, trials = store["client"], store["trials"]
    keys = ["val_loss", "val_accuracy", "step_learning_rate"]
    bulk = report.load_histories(trials["run_id"], keys, store["uri"], method="sql")
    assert len(bulk) > 0
    for run_id in trials["run_id"]:
        for key in keys:
            expected = sorted((m.step, m.value, m.timestamp)
                              for m in client.get_metric_history(run_id, key))
            part = bulk[(bulk["run_id"] == run_id) & (bulk["key"] == key)]
            assert list(zip(part["step"], part["value"], part["timestamp"])) == expected
    assert report.load_histories(trials["run_id"], keys, store["uri"]).equals(bulk)
    via_client = report.load_histories(trials["run_id"], keys, store["uri"], method="client")
    pd.testing.assert_frame_equal(via_client, bulk)


def test_load_histories_edge_cases(store):
    empty = report.load_histories([], ["val_loss"], store["uri"])
    assert list(empty.columns) == ["run_id", "key", "step", "value", "timestamp"]
    assert empty.empty
    with pytest.raises(ValueError, match="Received: method='fast'"):
        report.load_histories(["x"], ["val_loss"], store["uri"], method="fast")


def test_one_seed_per_scenario(store):
    ids = store["ids"]
    assert sorted(report.one_seed_per_scenario(store["trials"])) == sorted([
        ids["fixed-baseline", 0], ids["fixed-large", 0], ids["fixed-too-large", 0],
        ids["warmup-linear", 0]])


def test_load_range_tests(store):
    tests = report.load_range_tests(STUDY, store["uri"])
    assert tests["run_id"].tolist() == [store["ids"]["finder"]]
    row = tests.iloc[0]
    assert row["suggested_lr"] == pytest.approx(1e-2)
    assert row["suggestion_steepest"] == pytest.approx(1e-3)
    assert math.isnan(row["suggestion_minimum"])
    assert report.load_range_tests("nope", store["uri"]).empty


def test_sensitivity_uses_lr_sweep_when_it_exists(store, tmp_path):
    shutil.copy(store["tmp"] / "mlflow.db", tmp_path / "mlflow.db")  # skips the migrations
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = tracking.experiment_id("lr-sweep", uri, client)
    for lr in (1e-3, 1e-1):
        _trial(client, exp_id, {}, f"sweep-{lr:g}", "fixed", 0, lr=lr, study="lr-sweep",
               **_healthy(0, 0.8, 0.5))
    own = pd.DataFrame({"family": ["fixed"], "schedule": ["constant"], "scenario": ["x"]})
    sens = report.sensitivity_trials(own, uri)
    assert set(sens["study"]) == {"lr-sweep"}
    assert sorted(sens["learning_rate"]) == pytest.approx([1e-3, 1e-1])


def test_budget(store):
    budget = report.budget(store["trials"])
    assert budget.to_dict("records") == [{
        "model": "mlp128", "dataset": "fashion_mnist", "train_size": 1000, "batch_size": 64,
        "epochs": EPOCHS, "scenarios": 4, "trials": 10}]
