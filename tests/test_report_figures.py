"""The figures (:mod:`lrstudy.report.figures`) drawn from the synthetic store: what each axis
holds, read back from matplotlib."""

from __future__ import annotations

import math

import numpy as np
import pytest
from report_store import STUDY, T975_2, store  # noqa: F401 (fixture)

from lrstudy import report
from lrstudy.report import figures

# the module fixture runs once: keep the module on one pytest-xdist worker
pytestmark = pytest.mark.xdist_group("report")


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


def test_a_family_at_two_budgets_is_drawn_in_two_panels():
    """seeds-original runs fixed-sgd on the decay tutorial's MLP and fixed-baseline on the CNN:
    their curves never share an axis."""
    import pandas as pd

    rows, hist = [], []
    for name, model in (("fixed-baseline", "cnn"), ("fixed-large", "cnn"),
                        ("fixed-sgd", "mlp512_200")):
        for seed in range(2):
            run = f"{name}-{seed}"
            rows.append({"run_id": run, "scenario": name, "family": "fixed", "seed": seed,
                         "diverged": False, "model": model, "dataset": "d", "train_size": 100,
                         "batch_size": 10, "epochs": 2})
            hist += [{"run_id": run, "key": "val_loss", "step": e, "value": 1.0 - 0.1 * e,
                      "timestamp": 0} for e in range(2)]
    fig = report.plot_family_curves(pd.DataFrame(rows), pd.DataFrame(hist), keys=("val_loss",))
    titles = [ax.get_title() for ax in fig.get_axes()]
    assert titles == ["fixed @ cnn on d (100 train), batch 10, 2 epochs: val_loss",
                      "fixed @ mlp512_200 on d (100 train), batch 10, 2 epochs: val_loss"]
    assert [len(ax.get_lines()) for ax in fig.get_axes()] == [2, 1]


def test_a_regression_workloads_curves_are_its_rmse():
    """A suite's family on a classification workload and on a regression: each row's second
    panel is its own task's validation metric (val_accuracy, val_rmse), with its curve."""
    import pandas as pd

    rows, hist = [], []
    for name, dataset, task, key in (("fixed-baseline@cls", "digits", None, "val_accuracy"),
                                     ("fixed-baseline@reg", "friedman1", "regression",
                                      "val_rmse")):
        run = f"{name}-0"
        rows.append({"run_id": run, "scenario": name, "family": "fixed", "seed": 0,
                     "diverged": False, "model": "mlp128", "dataset": dataset,
                     "train_size": 100, "batch_size": 10, "epochs": 2, "task": task})
        hist += [{"run_id": run, "key": k, "step": e, "value": 0.5 + 0.1 * e, "timestamp": 0}
                 for k in ("val_loss", key) for e in range(2)]
    fig = report.plot_family_curves(pd.DataFrame(rows), pd.DataFrame(hist))
    titles = [ax.get_title().split(": ")[-1] for ax in fig.get_axes()]
    assert titles == ["val_loss", "val_accuracy", "val_loss", "val_rmse"]
    assert [len(ax.get_lines()) for ax in fig.get_axes()] == [1, 1, 1, 1]


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
    # the smoothed loss falls from 2.1 to 1.2: the axis spans that, a tenth of it either side
    assert ax.get_ylim() == pytest.approx((1.2 - 0.09, 2.1 + 0.09))
    empty = report.plot_range_tests(tests[:0], histories[:0])
    assert len(empty.get_axes()) == 1


def test_the_range_test_loss_axis_is_clipped_to_the_informative_region():
    """A sweep whose loss falls from 2.3 to 0.5 and then blows up to 400 (per batch; 60
    smoothed): the axis shows the fall and the minimum, not the blow-up (as fastai's plot)."""
    import pandas as pd


    lrs = np.geomspace(1e-7, 10, 60)
    smoothed = np.concatenate([np.linspace(2.3, 0.5, 40), np.geomspace(0.6, 60, 20)])
    raw = np.concatenate([smoothed[:40] + 0.05, np.geomspace(1, 400, 20)])
    history = pd.DataFrame([{"run_id": "r", "key": key, "step": i, "value": v, "timestamp": 0}
                            for key, values in (("finder_lr", lrs), ("finder_loss", raw),
                                                ("finder_loss_smoothed", smoothed))
                            for i, v in enumerate(values)])
    tests = pd.DataFrame([{"run_id": "r", "scenario": "finder", "model": "mlp128",
                           "optimizer": "adam", "suggestion_valley": 1e-3,
                           "suggested_lr": 1e-3}])
    (ax,) = report.plot_range_tests(tests, history).get_axes()
    low, high = ax.get_ylim()
    assert (low, high) == pytest.approx((0.5 - 0.18, 2.3 + 0.18))
    assert figures.loss_limits(smoothed) == pytest.approx((low, high))
    assert max(line.get_ydata().max() for line in ax.get_lines()[:2]) == pytest.approx(400)
    # a flat or empty sweep still gets an axis of some height
    assert figures.loss_limits([1.0, 1.0]) == pytest.approx((0.995, 1.005))
    assert figures.loss_limits([]) == (0.0, 1.0)


def test_sensitivity_lines_stay_within_one_phase():
    """A tutorial's demonstration at 1e-7, a tuning grid and the finals at the chosen LR, for
    one optimizer: three lines, none joining two phases (the demonstration is a lone point)."""
    import pandas as pd

    rows = [{"scenario": "fixed-too-small", "phase": "demo", "lr": 1e-7, "val": 0.17},
            *[{"scenario": "fixed-baseline", "phase": "tune", "lr": lr, "val": v + 0.01 * s}
              for lr, v in ((1e-4, 0.85), (1e-3, 0.88), (1e-2, 0.86)) for s in range(3)],
            *[{"scenario": "fixed-baseline", "phase": "final", "lr": 1e-3, "val": 0.88 + 0.01 * s}
              for s in range(3)],
            {"scenario": "fixed-too-large", "phase": "demo", "lr": 0.5, "val": 0.1,
             "diverged": True}]
    trials = pd.DataFrame([{"optimizer": "adam", "diverged": False, "study": "s", **r}
                           for r in rows]).rename(columns={"lr": "learning_rate",
                                                           "val": "final_val_accuracy"})
    lines = dict(figures.sensitivity_lines(trials))
    assert set(lines) == {("adam", "demo"), ("adam", "tune"), ("adam", "final")}
    assert lines["adam", "tune"]["mean"].tolist() == pytest.approx([0.86, 0.89, 0.87])
    assert lines["adam", "demo"]["learning_rate"].tolist() == [1e-7]  # the diverged one: a cross
    fig = report.plot_lr_sensitivity(trials)
    (ax,) = fig.get_axes()
    drawn = [line for line in ax.get_lines() if len(line.get_xdata()) > 0]
    assert len(drawn) == 3
    per_phase = {tuple(np.round(np.c_[g["learning_rate"], g["mean"]].ravel(), 9))
                 for g in lines.values()}
    for line in drawn:  # each line is one phase's points, no more
        points = np.c_[line.get_xdata(), line.get_ydata()].ravel()
        assert tuple(np.round(points, 9)) in per_phase, line.get_label()
    assert [list(line.get_xdata()) for line in drawn if 1e-7 in line.get_xdata()] == [[1e-7]]
    assert sorted(line.get_label() for line in drawn) == [
        "adam demonstration", "adam finals", "adam tuning"]
    assert ax.get_ylabel() == "val_accuracy at the last epoch"


def test_plot_test_accuracy(store):
    fig = report.plot_test_accuracy(store["trials"], store["table"])
    (ax,) = fig.get_axes()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["warmup-linear", "fixed-baseline", "fixed-large (1/4 diverged)",
                      "fixed-too-large (2/2 diverged)"]
    means = np.concatenate([line.get_xdata() for line in ax.get_lines()
                            if line.get_marker() == "o"])
    # ranked as the table ranks: a diverged seed at chance (0.1)
    assert sorted(means[np.isfinite(means)]) == pytest.approx(
        [0.1, np.mean([0.70, 0.71, 0.75, 0.1]), 0.82, 0.90])
    half = T975_2 * 0.02 / math.sqrt(3)
    bars = [tuple(line.get_xdata()) for line in ax.get_lines() if line.get_marker() != "o"]
    assert any(np.allclose(bar, [0.82 - half, 0.82 + half]) for bar in bars)
    crosses = [c for c in ax.collections if len(c.get_offsets()) and
               np.allclose(np.asarray(c.get_offsets())[:, 0], 0.1)]
    assert sum(len(c.get_offsets()) for c in crosses) == 3  # the three diverged seeds


def test_plot_forest_draws_each_difference_with_its_interval_and_the_margin(store):
    table = store["table"]
    fig = report.plot_forest(table, 0.003)
    (ax,) = [a for a in fig.get_axes()]
    compared = table[table["call"] != "reference"]
    assert [t.get_text() for t in ax.get_yticklabels()] == compared["scenario"].tolist()
    diamonds = np.concatenate([line.get_xdata() for line in ax.get_lines()
                               if line.get_marker() == "D"])
    assert sorted(diamonds) == pytest.approx(sorted(100 * compared["diff"]))
    (band,) = ax.patches
    assert band.get_x() == pytest.approx(-0.3) and band.get_width() == pytest.approx(0.6)
    assert "fixed-baseline" in ax.get_title()


def test_the_tuning_figure_has_a_panel_per_strategy():
    import pandas as pd


    grid = pd.DataFrame({"scenario": ["a"] * 3 + ["b"] * 3, "peak_lr": [1e-4, 1e-3, 1e-2] * 2,
                         "val_score": [0.7, 0.8, None, 0.6, 0.7, 0.9],
                         "val_sd": [0.01, 0.02, None, 0.01, 0.01, 0.03],
                         "chosen": [False, True, False, False, False, True],
                         "at_grid_edge": [False, False, False, False, False, True],
                         "stability": [0.9] * 3 + [float("nan")] * 3})
    fig = figures.plot_tuning(grid)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["a (kept 90%)", "b, capped"]
    assert all(ax.get_xscale() == "log" for ax in fig.axes)
    # the seeds' spread as error bars: one vertical segment per finite point
    from matplotlib.collections import LineCollection

    bars = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    assert [len(c.get_segments()) for c in bars] == [2]


def test_the_sensitivity_figure_scores_each_workload_on_its_own_metric():
    """A suite mixes tasks: a classification workload (its trials carry no task param) and a
    regression. Each gets its own panel, on its own validation metric (accuracy, RMSE): one
    frame scored on one metric would draw the classification's RMSE, which does not exist."""
    from across_trials import tuning

    grids = {"cls": {"fixed-baseline": {1e-3: [0.90, 0.92], 1e-2: [0.80, 0.82]}},
             "reg": {"fixed-baseline": {1e-3: [0.40, 0.42], 1e-2: [0.30, 0.32]}}}
    trials = tuning(grids, tasks={"reg": "regression"})
    trials = trials.assign(learning_rate=trials["peak_lr"], optimizer="adam", study="suite",
                           task=trials["task"].where(trials["task"] == "regression"),
                           model="mlp128",
                           dataset=trials["scenario"].map(lambda s: s.split("@")[1]))
    panels = figures.sensitivity_panels(trials)
    assert [label for label, _ in panels] == ["cls", "reg"]
    fig = report.plot_lr_sensitivity(trials)
    axes = {ax.get_title(): ax for ax in fig.get_axes()}
    assert set(axes) == {"cls", "reg"}
    assert axes["cls"].get_ylabel() == "val_accuracy at the last epoch"
    assert axes["reg"].get_ylabel() == "val_rmse at the last epoch"
    for name, means in (("cls", [0.91, 0.81]), ("reg", [0.41, 0.31])):
        (line,) = [line for line in axes[name].get_lines() if len(line.get_xdata())]
        assert line.get_xdata().tolist() == [1e-3, 1e-2]
        assert line.get_ydata().tolist() == pytest.approx(means)


def test_the_benchmark_figures_of_a_suite_show_each_task_in_its_own_metric():
    """The accuracy figure and the forest plot of a table that mixes a classification
    workload and a regression: each task on its own axis, the regression's RMSE and its
    change (not an accuracy, not points)."""
    from across_trials import finals

    scores = {"cls": {"fixed-baseline": [0.88, 0.89, 0.87], "warmup-cosine": [0.89, 0.90, 0.88]},
              "reg": {"fixed-baseline": [0.30, 0.31, 0.32], "warmup-cosine": [0.28, 0.29, 0.30]}}
    trials = finals(scores, tasks={"reg": "regression"})
    trials = trials.assign(task=trials["task"].where(trials["task"] == "regression"),
                           family="fixed", model="mlp128", train_time_s=1.0,
                           final_val_loss=0.3, test_loss=0.3, best_val_loss=0.3,
                           best_val_loss_epoch=2, epochs_to_target=np.nan,
                           time_to_target_s=np.nan,
                           dataset=trials["scenario"].str.split("@").str[1])
    table = report.benchmark_table(trials, "fixed-baseline", 0.003)
    by = table.set_index("scenario")
    assert by.loc["warmup-cosine@reg", "test_rmse_mean"] == pytest.approx(0.29)
    assert math.isnan(by.loc["warmup-cosine@reg", "test_accuracy_mean"])
    assert by.loc["warmup-cosine@cls", "test_accuracy_mean"] == pytest.approx(0.89)
    shown = report.format_table(table).set_index("scenario")
    assert shown.loc["warmup-cosine@reg", "test accuracy / RMSE"].startswith("0.2900 ± ")
    assert shown.loc["warmup-cosine@reg", "vs reference, points / RMSE [simultaneous 95% CI]"
                     ] == "-0.02 [-0.02, -0.02]"
    assert shown.loc["warmup-cosine@cls", "vs reference, points / RMSE [simultaneous 95% CI]"
                     ] == "+1.00 [+1.00, +1.00]"
    axes = report.plot_test_accuracy(trials, table).get_axes()
    assert [ax.get_xlabel().split(" (")[0] for ax in axes] == [
        "test accuracy", "test RMSE, lower is better"]
    means = [sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_marker() == "o")
             for ax in axes]
    assert means == [pytest.approx([0.88, 0.89]), pytest.approx([0.29, 0.31])]
    forest = {ax.get_title(): ax for ax in report.plot_forest(table, 0.003).get_axes()}
    (reg,) = [ax for title, ax in forest.items() if "fixed-baseline@reg" in title]
    (cls,) = [ax for title, ax in forest.items() if "fixed-baseline@cls" in title]
    assert reg.get_xlabel().startswith("difference in test RMSE, RMSE")
    assert cls.get_xlabel().startswith("difference in test accuracy, points")
    (diamond,) = [line for line in reg.get_lines() if line.get_marker() == "D"]
    assert diamond.get_xdata()[0] == pytest.approx(-0.02)
