"""The summary: tidy frames from a synthetic MLflow store, the table's numbers, the figures,
the executed notebook.

The store is filled through ``MlflowClient`` directly (not through ``lrstudy.report``), with
fixed values whose aggregates are known in closed form.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from scipy import stats

from lrstudy import report, tracking
from lrstudy.tracking import TAG

# the module fixture runs once: keep the module on one pytest-xdist worker
pytestmark = pytest.mark.xdist_group("report")

STUDY = "synth"
EPOCHS = 4
STEPS_PER_EPOCH = 2
T975_2 = stats.t.ppf(0.975, 2)


def _log(client, exp_id, tags, params=None, metrics=(), status="FINISHED"):
    run_id = client.create_run(exp_id, tags=tags).info.run_id
    entities = [Metric(key, float(value), 1_000 + step, step) for key, value, step in metrics]
    client.log_batch(run_id, metrics=entities,
                     params=[Param(k, str(v)) for k, v in (params or {}).items()])
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id


def _trial(client, exp_id, parents, scenario, family, seed, *, lr, optimizer="adam",
           baseline=None, diverged=False, status="FINISHED", val_loss=(), val_accuracy=(),
           final=None, study=STUDY):
    tags = {TAG + "study": study, TAG + "scenario": scenario, TAG + "family": family,
            TAG + "kind": "trial", TAG + "seed": str(seed),
            TAG + "run_key": f"{scenario}-{seed}", TAG + "diverged": str(diverged).lower()}
    if baseline:
        tags[TAG + "baseline"] = baseline
    if scenario in parents:
        tags["mlflow.parentRunId"] = parents[scenario]
    params = {"optimizer": optimizer, "learning_rate": lr, "schedule": "constant",
              "model": "mlp128", "dataset": "fashion_mnist", "train_size": 1000,
              "epochs": EPOCHS, "batch_size": 64, "seed": seed}
    metrics = [("val_loss", v, e) for e, v in enumerate(val_loss)]
    metrics += [("val_accuracy", v, e) for e, v in enumerate(val_accuracy)]
    steps = STEPS_PER_EPOCH * len(val_loss)
    metrics += [("step_learning_rate", lr * (1 + s), s) for s in range(steps)]
    metrics += [(k, v, 0) for k, v in (final or {}).items()]
    return _log(client, exp_id, tags, params, metrics, status)


def _healthy(seed, test_accuracy, test_loss, epochs_to_target=None, time_to_target=None):
    final = {"test_accuracy": test_accuracy, "test_loss": test_loss,
             "train_time_s": 30.0 + seed}
    if epochs_to_target is not None:
        final["epochs_to_target"] = epochs_to_target
        final["time_to_target_s"] = time_to_target
    return {
        "val_loss": [1.0, 0.6, 0.5 + 0.01 * seed, 0.7],
        "val_accuracy": [0.5, 0.7, 0.78, 0.80 + 0.01 * seed],
        "final": final,
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Scenarios (family, seeds):

    * fixed-baseline (fixed, 3 seeds): test accuracy 0.80/0.82/0.84, the family baseline;
    * fixed-large (fixed, 3 healthy seeds 0.70/0.71/0.75, 1 diverged, 1 FAILED, 1 RUNNING);
    * fixed-too-large (fixed, 2 seeds, both diverged);
    * warmup-linear (warmup, 1 seed, 0.90, no baseline);
    plus the scenario parent runs and one LR range test.
    """
    tmp = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = tracking.experiment_id(STUDY, uri, client)
    names = ["fixed-baseline", "fixed-large", "fixed-too-large", "warmup-linear"]
    parents = {n: _log(client, exp_id, {TAG + "kind": "scenario", TAG + "scenario": n,
                                        TAG + "study": STUDY}) for n in names}
    ids = {}
    base = {"baseline": "fixed-baseline"}
    for seed, (acc, loss, ett, ttt) in enumerate([(0.80, 0.50, 2, 10.0), (0.82, 0.45, 3, 20.0),
                                                  (0.84, 0.40, None, None)]):
        ids["fixed-baseline", seed] = _trial(client, exp_id, parents, "fixed-baseline", "fixed",
                                             seed, lr=1e-3, **base,
                                             **_healthy(seed, acc, loss, ett, ttt))
    for seed, acc in enumerate([0.70, 0.71, 0.75]):
        ids["fixed-large", seed] = _trial(client, exp_id, parents, "fixed-large", "fixed", seed,
                                          lr=1e-2, **base, **_healthy(seed, acc, 0.9))
    ids["fixed-large", 3] = _trial(client, exp_id, parents, "fixed-large", "fixed", 3, lr=1e-2,
                                   diverged=True, val_loss=[1.0, 5.0],
                                   val_accuracy=[0.3, 0.1], **base)
    ids["fixed-large", 4] = _trial(client, exp_id, parents, "fixed-large", "fixed", 4, lr=1e-2,
                                   status="FAILED", **base, **_healthy(0, 0.99, 0.01))
    ids["fixed-large", 5] = _trial(client, exp_id, parents, "fixed-large", "fixed", 5, lr=1e-2,
                                   status="RUNNING", **base, **_healthy(0, 0.99, 0.01))
    for seed in range(2):
        ids["fixed-too-large", seed] = _trial(
            client, exp_id, parents, "fixed-too-large", "fixed", seed, lr=0.5, **base,
            diverged=True, val_loss=[3.0], val_accuracy=[0.1])
    ids["warmup-linear", 0] = _trial(client, exp_id, parents, "warmup-linear", "warmup", 0,
                                     lr=5e-3, **_healthy(0, 0.90, 0.30, 1, 5.0))
    lrs = np.geomspace(1e-6, 1.0, 10)
    finder_metrics = [(k, v, i) for i, lr in enumerate(lrs)
                      for k, v in (("finder_lr", lr), ("finder_loss", 2.0 - i / 10),
                                   ("finder_loss_smoothed", 2.1 - i / 10))]
    finder_metrics += [("suggestion_steepest", 1e-3, 0), ("suggestion_valley", 1e-2, 0),
                       ("suggested_lr", 1e-2, 0)]
    ids["finder"] = _log(client, exp_id,
                         {TAG + "kind": "lr_range_test", TAG + "scenario": "finder",
                          TAG + "family": "finder", TAG + "study": STUDY},
                         {"model": "mlp128", "optimizer": "adam", "start_lr": 1e-6,
                          "end_lr": 1.0, "num_it": 10, "rule": "valley"}, finder_metrics)
    trials = report.load_trials(STUDY, uri)
    return {"uri": uri, "client": client, "exp_id": exp_id, "ids": ids, "trials": trials,
            "table": report.benchmark_table(trials), "parents": parents, "tmp": tmp}


def _row(table, scenario):
    rows = table[table["scenario"] == scenario]
    assert len(rows) == 1
    return rows.iloc[0]


# --------------------------------------------------------------------------- statistics


def test_mean_ci_closed_form():
    mean, half, n = report.mean_ci([0.80, 0.82, 0.84])
    assert n == 3
    assert mean == pytest.approx(0.82)
    assert half == pytest.approx(T975_2 * 0.02 / math.sqrt(3))
    assert report.t_interval([0.80, 0.82, 0.84]) == pytest.approx((0.82 - half, 0.82 + half))


def test_mean_ci_ignores_nan_and_needs_two_values():
    mean, half, n = report.mean_ci([0.5, float("nan")])
    assert (mean, n) == (0.5, 1) and math.isnan(half)
    mean, half, n = report.mean_ci([])
    assert n == 0 and math.isnan(mean) and math.isnan(half)


def test_aggregate_matches_mean_ci():
    frame = pd.DataFrame({"g": ["a", "a", "a", "b", "b"], "value": [0.80, 0.82, 0.84, 1.0, np.nan]})
    out = report.aggregate(frame, "g")
    a, b = out.iloc[0], out.iloc[1]
    assert (a["g"], a["n"], b["n"]) == ("a", 3, 1)
    assert a["mean"] == pytest.approx(0.82) and a["ci"] == pytest.approx(report.mean_ci(
        [0.80, 0.82, 0.84])[1])
    assert a["lo"] == pytest.approx(0.82 - a["ci"]) and math.isnan(b["ci"])


def test_welch_p_matches_scipy_and_needs_two_per_side():
    a, b = [0.70, 0.71, 0.75], [0.80, 0.82, 0.84]
    assert report.welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert math.isnan(report.welch_p([0.9], b))


# --------------------------------------------------------------------------- loading


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
        report.make_report("smoke", uri, out_dir=tmp_path / "out")
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


# --------------------------------------------------------------------------- table


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


def test_budget_and_format_table(store):
    budget = report.budget(store["trials"])
    assert budget.to_dict("records") == [{
        "model": "mlp128", "dataset": "fashion_mnist", "train_size": 1000, "batch_size": 64,
        "epochs": EPOCHS, "scenarios": 4, "trials": 10}]
    shown = report.format_table(store["table"])
    assert shown.loc[2, "test accuracy"] == "0.8200 ± 0.0497"
    assert shown.loc[2, "epochs to target (reached)"] == "2.5 (2/3)"
    assert shown.loc[3, "diverged / seeds"] == "1 / 4"
    assert shown.loc[3, "beyond seed noise"] == "yes"


# --------------------------------------------------------------------------- figures


def test_plot_family_curves(store):
    trials = store["trials"]
    histories = report.load_histories(trials["run_id"], ["val_loss", "val_accuracy"], store["uri"])
    fig = report.plot_family_curves(trials, histories)
    axes = fig.get_axes()
    assert len(axes) == 4  # families fixed, warmup x (val_loss, val_accuracy)
    fixed_loss = axes[0]
    assert fixed_loss.get_title() == "fixed: val_loss"
    # two means (baseline, large) + three diverged trials drawn one by one
    assert len(fixed_loss.get_lines()) == 5
    assert len(fixed_loss.collections) == 2  # the two bands
    means = {tuple(line.get_xdata()): line.get_ydata() for line in fixed_loss.get_lines()}
    assert any(np.allclose(y, [1.0, 0.6, 0.51, 0.7]) for y in means.values())
    labels = [t.get_text() for t in axes[1].get_legend().get_texts()]
    assert labels == ["fixed-baseline", "fixed-large (1/4 diverged)",
                      "fixed-too-large (2/2 diverged)"]


def test_plot_lr_curves(store):
    trials = store["trials"]
    steps = report.load_histories(report.one_seed_per_scenario(trials), report.STEP_KEYS,
                                  store["uri"])
    fig = report.plot_lr_curves(trials, steps)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["fixed", "warmup"]
    assert len(axes[0].get_lines()) == 3 and len(axes[1].get_lines()) == 1
    assert axes[0].get_yscale() == "log"
    assert np.allclose(axes[1].get_lines()[0].get_ydata(), 5e-3 * np.arange(1, 9))


def test_plot_lr_sensitivity_falls_back_to_fixed_scenarios(store):
    sens = report.sensitivity_trials(store["trials"], store["uri"])
    assert set(sens["scenario"]) == {"fixed-baseline", "fixed-large", "fixed-too-large"}
    fig = report.plot_lr_sensitivity(sens)
    (ax,) = fig.get_axes()
    assert ax.get_xscale() == "log"
    assert sorted(ax.get_lines()[0].get_xdata()) == pytest.approx([1e-3, 1e-2])
    crosses = [c for c in ax.collections if len(c.get_offsets()) == 3]
    assert crosses, "the three diverged trials are marked"
    assert sorted(crosses[0].get_offsets()[:, 0]) == pytest.approx([1e-2, 0.5, 0.5])
    low, high = ax.get_xlim()
    assert low < 1e-3 and high > 0.5


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


def test_plot_range_tests(store):
    tests = report.load_range_tests(STUDY, store["uri"])
    histories = report.load_histories(tests["run_id"], report.FINDER_KEYS, store["uri"])
    fig = report.plot_range_tests(tests, histories)
    (ax,) = fig.get_axes()
    assert ax.get_xscale() == "log"
    # loss, smoothed loss, steepest, valley, suggested
    assert len(ax.get_lines()) == 5
    assert [t.get_text() for t in ax.get_legend().get_texts()][2:] == [
        "steepest: 0.001", "valley: 0.01", "suggested: 0.01"]
    empty = report.plot_range_tests(tests[:0], histories[:0])
    assert len(empty.get_axes()) == 1


def test_plot_test_accuracy(store):
    fig = report.plot_test_accuracy(store["trials"], store["table"])
    (ax,) = fig.get_axes()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["warmup-linear", "fixed-baseline", "fixed-large (1/4 diverged)",
                      "fixed-too-large (2/2 diverged)"]
    means = np.concatenate([line.get_xdata() for line in ax.get_lines()
                            if line.get_marker() == "o"])
    assert sorted(means[np.isfinite(means)]) == pytest.approx(
        [np.mean([0.70, 0.71, 0.75]), 0.82, 0.90])
    half = T975_2 * 0.02 / math.sqrt(3)
    bars = [tuple(line.get_xdata()) for line in ax.get_lines() if line.get_marker() != "o"]
    assert any(np.allclose(bar, [0.82 - half, 0.82 + half]) for bar in bars)


# --------------------------------------------------------------------------- report


def test_make_report_without_trials_names_study_and_store(store, tmp_path):
    with pytest.raises(report.NoTrialsError) as info:
        report.make_report("nope", store["uri"], out_dir=tmp_path)
    assert "'nope'" in str(info.value) and store["uri"] in str(info.value)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_make_report_executes_exports_and_logs(store, tmp_path):
    html = report.make_report(STUDY, store["uri"], out_dir=tmp_path)
    assert html == tmp_path / "summary.html"
    text = html.read_text()
    assert text.count("<img") >= 5
    assert "data:image/png;base64" in text
    assert "fixed-baseline" in text and "0.8200 ± 0.0497" in text
    assert (tmp_path / "summary.ipynb").exists()
    client = store["client"]
    runs = tracking.search(client, [store["exp_id"]], f"tags.`{TAG}kind` = 'summary'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert artifacts == {"summary.html", "summary.ipynb"}
    assert len(report.load_trials(STUDY, store["uri"])) == 10  # the summary run is no trial


@pytest.mark.slow
def test_bench_summary_times_each_stage(tmp_path):
    timings = report.bench_summary(n_trials=6, epochs=3, tmpdir=tmp_path, seeds=3,
                                   steps_per_epoch=2)
    stages = ("load_trials_s", "load_histories_s", "benchmark_table_s", "figures_s")
    assert all(timings[s] > 0 for s in stages)
    assert timings["summary_s"] == pytest.approx(sum(timings[s] for s in stages))
    assert timings["rows_loaded"] == 6 * 3 * len(report.EPOCH_KEYS) + 2 * 3 * 2 * 2 + 2 * 100 * 3


def test_bench_summary_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Received: n_trials=0"):
        report.bench_summary(n_trials=0)
