"""The tuning's evidence (lrstudy.report.tuning), on hand-made trial frames: the grid's means
and spreads, the chosen point, a capped edge winner, the choice's bootstrap stability, the
range test's regret against its tuned twin, and how often a plateau rule fired."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lrstudy.report import frames, tuning


def _tune_rows(name, accs_per_point, lrs=(1e-4, 1e-3, 1e-2), diverged=()):
    rows = []
    for lr, accs in zip(lrs, accs_per_point):
        for seed, acc in enumerate(accs):
            rows.append({"scenario": name, "peak_lr": lr, "seed": 1000 + seed,
                         "final_val_accuracy": acc, "phase": "tune",
                         "diverged": (lr, seed) in diverged})
    return rows


def _finals(name, lr, n=3, **params):
    return [{"scenario": name, "peak_lr": lr, "seed": s, "final_val_accuracy": 0.0,
             "phase": "final", "diverged": False, **params} for s in range(n)]


def test_tuning_table_means_spreads_the_chosen_point_and_a_capped_edge_winner():
    rows = (_tune_rows("a", [[0.70, 0.72], [0.80, 0.82], [0.75, 0.77]])
            + _tune_rows("b", [[0.60, 0.62], [0.70, 0.72], [0.90, 0.92]], diverged={(1e-4, 0)})
            + _finals("a", 1e-3, **{"tune.extended_below": "0", "tune.extended_above": "0"})
            + _finals("b", 1e-2, **{"tune.extended_below": "0", "tune.extended_above": "2"}))
    rows.append({"scenario": "d", "peak_lr": 0.5, "final_val_accuracy": 0.1, "diverged": True,
                 "phase": "demo"})
    split = frames.phases(pd.DataFrame(rows))
    assert [len(split[k]) for k in ("ranked", "tune", "demo")] == [6, 12, 1]
    grid = tuning.tuning_table(split["tune"], split["ranked"])
    chosen = grid[grid["chosen"]].set_index("scenario")
    assert chosen["peak_lr"].to_dict() == {"a": 1e-3, "b": 1e-2}
    assert chosen["at_grid_edge"].to_dict() == {"a": False, "b": True}
    assert chosen["extended"].to_dict() == {"a": 0, "b": 2}
    assert chosen.loc["a", "val_score"] == pytest.approx(0.81)
    assert chosen.loc["a", "val_sd"] == pytest.approx(np.std([0.80, 0.82], ddof=1))
    point = grid[(grid.scenario == "b") & (grid.peak_lr == 1e-4)].iloc[0]
    assert math.isnan(point["val_score"]) and point["diverged_seeds"] == 1
    assert (grid["seeds"] == 2).all()


def test_choice_stability_is_the_share_of_seed_resamples_that_keep_the_choice():
    # clear: every seed prefers 1e-3 -> stable 1.0
    clear = _tune_rows("clear", [[0.7, 0.7, 0.7], [0.8, 0.8, 0.8], [0.6, 0.6, 0.6]])
    # split: seed 0 prefers 1e-4 strongly, seeds 1 and 2 prefer 1e-3 a little
    split = _tune_rows("split", [[0.90, 0.70, 0.70], [0.78, 0.78, 0.78], [0.5, 0.5, 0.5]])
    tune = pd.DataFrame(clear + split)
    final = pd.DataFrame(_finals("clear", 1e-3) + _finals("split", 1e-4))
    stability = tuning.choice_stability(tune, final, resamples=4000)
    assert stability["clear"] == 1.0
    # 1e-4 keeps the best mean iff seed 0 is drawn at least twice in 3 draws:
    # 0.7 + 0.2 k / 3 > 0.78 for k >= 2, P = 3 (1/3)^2 (2/3) + (1/3)^3 = 7/27
    assert stability["split"] == pytest.approx(7 / 27, abs=0.03)
    one_seed = tuning.choice_stability(pd.DataFrame(_tune_rows("x", [[0.7], [0.8], [0.6]])),
                                       pd.DataFrame(_finals("x", 1e-3)))
    assert math.isnan(one_seed["x"])


def test_finder_regret_pairs_each_rule_with_its_twin_by_seed():
    rng = np.random.default_rng(0)
    seeds = range(10)
    base = rng.normal(0.88, 0.004, 10)
    rows = [{"scenario": "fixed-baseline", "seed": s, "peak_lr": 1e-3, "phase": "final",
             "test_accuracy": base[s], "finder.twin": None, "finder.rule": None}
            for s in seeds]
    loss = {"valley": 0.02, "steepest": 0.0}
    for rule, cost in loss.items():
        rows += [{"scenario": f"fixed-from-finder-{rule}", "seed": s, "phase": "final",
                  "peak_lr": 3e-4 if rule == "valley" else 1e-3, "finder.rule": rule,
                  "finder.twin": "fixed-baseline",
                  "test_accuracy": base[s] - cost + rng.normal(0, 0.001)} for s in seeds]
    trials = pd.DataFrame(rows)
    split = frames.phases(trials)
    assert set(split["ranked"]["scenario"]) == {"fixed-baseline"}  # the fed ones are not ranked
    assert len(split["finder"]) == 20
    table = tuning.finder_regret(pd.concat([split["ranked"], split["finder"]])).set_index("rule")
    valley = table.loc["valley"]
    assert valley["twin"] == "fixed-baseline" and valley["seeds"] == 10
    assert valley["ratio"] == pytest.approx(0.3)
    assert valley["regret"] == pytest.approx(-2.0, abs=0.15)  # points of accuracy
    assert valley["regret_high"] < 0 < table.loc["steepest", "regret_high"]
    # Bonferroni over the two rules: wider than one unadjusted t-interval
    diff = 100 * (trials[trials.scenario == "fixed-from-finder-valley"]["test_accuracy"].to_numpy()
                  - base)
    unadjusted = stats.t.ppf(0.975, 9) * diff.std(ddof=1) / np.sqrt(10)
    assert (valley["regret_high"] - valley["regret_low"]) / 2 > unadjusted


def test_plateau_fired_counts_finals_whose_lr_dropped():
    finals = pd.DataFrame({"scenario": ["plateau"] * 4 + ["fixed-baseline"],
                           "family": ["plateau"] * 4 + ["fixed"],
                           "peak_lr": [1e-3] * 5,
                           "final_learning_rate": [2e-4, 1e-3, 4e-5, 2e-4, 1e-3]})
    table = tuning.plateau_fired(finals).set_index("scenario")
    assert table.loc["plateau"].to_dict() == {"fired": 3, "finals": 4}
    assert "fixed-baseline" not in table.index


def test_the_verdict_names_strategies_tuned_at_a_capped_edge():
    from lrstudy.report import verdict

    finals = pd.DataFrame({"scenario": ["a", "a", "b", "c"],
                           "tune.capped": ["true", "true", "false", None]})
    assert verdict.capped_note(finals) == (
        "Tuned at the edge of a grid grown to its cap, so their best LR may lie beyond it: a.")
    assert verdict.capped_note(finals.drop(columns="tune.capped")) == ""
    assert verdict.capped_note(finals[finals.scenario != "a"]) == ""


def test_what_each_strategy_also_changes_is_read_from_the_experiment(store):
    from lrstudy.report import frames
    from lrstudy.tracking import store as tracking

    client = tracking.client(store)
    exp = tracking.experiment_id("s", store, client)
    assert frames.study_differs("s", store).empty
    client.set_experiment_tag(exp, "lrstudy.differs", '{"one-cycle": "cycles momentum"}')
    table = frames.study_differs("s", store)
    assert table.to_dict("records") == [{"strategy": "one-cycle", "also changes":
                                         "cycles momentum"}]


def test_the_tuning_table_scores_each_workload_on_its_own_metric():
    """A suite mixes tasks: a classification workload's trials (no task param) are scored on
    validation accuracy, a regression's on validation RMSE, in one table."""
    import pandas as pd

    from lrstudy.report import tuning

    rows = []
    for seed in (1000, 1001):
        for lr, acc, rmse in ((1e-3, 0.90, 0.40), (1e-2, 0.80, 0.30)):
            rows.append({"scenario": "a@cls", "peak_lr": lr, "seed": seed, "task": None,
                         "final_val_accuracy": acc, "final_val_rmse": float("nan"),
                         "diverged": False})
            rows.append({"scenario": "a@reg", "peak_lr": lr, "seed": seed,
                         "task": "regression", "final_val_accuracy": float("nan"),
                         "final_val_rmse": rmse, "diverged": False})
    tune = pd.DataFrame(rows)
    final = pd.DataFrame([{"scenario": "a@cls", "peak_lr": 1e-3, "task": None},
                          {"scenario": "a@reg", "peak_lr": 1e-2, "task": "regression"}])
    grid = tuning.tuning_table(tune, final).set_index(["scenario", "peak_lr"])
    assert grid.loc[("a@cls", 1e-3), "val_score"] == pytest.approx(0.90)
    assert grid.loc[("a@reg", 1e-2), "val_score"] == pytest.approx(0.30)
    assert grid.loc[("a@cls", 1e-3), "chosen"] and grid.loc[("a@reg", 1e-2), "chosen"]


def test_finder_regret_scores_each_workload_on_its_own_metric():
    """A suite mixes tasks: on the classification workload the valley rule costs 2 accuracy
    points, on the regression 0.05 RMSE. Each regret is read on its own workload's metric,
    and its interval holds together with its own workload's comparisons only (one fed
    strategy each: the plain t-interval)."""
    from across_trials import finals

    rng = np.random.default_rng(5)
    base = {"cls": rng.normal(0.88, 0.004, 8), "reg": rng.normal(0.30, 0.01, 8)}
    fed = {"cls": base["cls"] - 0.02 + rng.normal(0, 0.002, 8),
           "reg": base["reg"] + 0.05 + rng.normal(0, 0.002, 8)}
    params = {(w, s): ({"peak_lr": 1e-3} if s == "fixed-baseline" else
                       {"peak_lr": 3e-4, "finder.rule": "valley",
                        "finder.twin": f"fixed-baseline@{w}"})
              for w in base for s in ("fixed-baseline", "fixed-from-finder-valley")}
    trials = finals({w: {"fixed-baseline": base[w], "fixed-from-finder-valley": fed[w]}
                     for w in base}, tasks={"reg": "regression"}, params=params)
    trials["task"] = trials["task"].where(trials["task"] == "regression")  # as logged
    trials = trials.assign(model="mlp128", dataset=trials["scenario"].str.split("@").str[1])
    table = tuning.finder_regret(trials).set_index("twin")
    cls, reg = table.loc["fixed-baseline@cls"], table.loc["fixed-baseline@reg"]
    assert cls["unit"] == "accuracy points" and reg["unit"] == "RMSE"
    diff = {"cls": 100 * (fed["cls"] - base["cls"]), "reg": -(fed["reg"] - base["reg"])}
    for row, name in ((cls, "cls"), (reg, "reg")):
        d = diff[name]
        half = stats.t.ppf(0.975, 7) * d.std(ddof=1) / np.sqrt(8)
        assert row["regret"] == pytest.approx(d.mean())
        assert (row["regret_low"], row["regret_high"]) == pytest.approx(
            (d.mean() - half, d.mean() + half))
    assert cls["regret"] == pytest.approx(-2.0, abs=0.2)
    assert reg["regret"] == pytest.approx(-0.05, abs=0.005)
