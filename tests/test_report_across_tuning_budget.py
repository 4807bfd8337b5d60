"""Tuning-budget curves (lrstudy.report.tuning_budget): Dodge et al.'s expected maximum
against brute-force enumeration, then the curves, the one-shot point and the table of the
best strategy per budget on planted tuning grids."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from across_trials import REGRESSION, finals, tuning

from lrstudy.report import tuning_budget
from lrstudy.report.aggregate_score import normalize

REF = "fixed-baseline"
GRID = (0.0001, 0.0003162, 0.001, 0.003162, 0.01)  # lr_scale.lr_grid(0.001, 5, 2)


@pytest.mark.parametrize("values", [[0.7], [0.5, 0.9], [0.8, 0.8, 0.6], [0.1, 0.4, 0.4, 0.9],
                                    [3.0, 1.0, 2.0, 2.0, 5.0]])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_expected_best_is_the_mean_over_all_ordered_draws(values, n):
    draws = list(itertools.product(values, repeat=n))  # all N^n ordered draws, equally likely
    brute = np.mean([max(d) for d in draws])
    assert tuning_budget.expected_best(values, [n])[0] == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize("points", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_choice_probabilities_are_the_frequencies_of_the_best_rank(points, n):
    counts = np.zeros(points)
    for draw in itertools.product(range(points), repeat=n):
        counts[max(draw)] += 1
    p = tuning_budget.choice_probabilities(points, [n])[0]
    assert p == pytest.approx(counts / points ** n, abs=1e-12)
    assert p.sum() == pytest.approx(1.0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="points"):
        tuning_budget.choice_probabilities(0, [1])
    with pytest.raises(ValueError, match="`n`"):
        tuning_budget.choice_probabilities(3, [0])
    with pytest.raises(ValueError, match="grid"):
        tuning_budget.tuning_curves(pd.DataFrame({"scenario": []}), grid="all")


# Planted grids, three tuning seeds per point with equal values (so a point's score is its
# value). w1 (accuracy): "flat" is good everywhere, "peaky" has one excellent point among bad
# ones, the reference is best at its catalogue LR (the middle). w2 (RMSE, lower is better).
W1 = {REF: [0.80, 0.85, 0.88, 0.86, 0.70], "flat": [0.86, 0.86, 0.87, 0.87, 0.86],
      "peaky": [0.5, 0.6, 0.7, 0.99, 0.6]}
W2 = {REF: [3.0, 2.8, 2.5, 2.6, 4.0], "flat": [2.6] * 5, "peaky": [5.0, 5.0, 5.0, 2.0, 5.0]}


def planted_trials() -> pd.DataFrame:
    grids = {w: {s: {lr: [v] * 3 for lr, v in zip(GRID, values)} for s, values in table.items()}
             for w, table in (("w1", W1), ("w2", W2))}
    tune = tuning(grids, {"w2": REGRESSION})
    chosen = {(w, s): GRID[int(np.argmax(v) if w == "w1" else np.argmin(v))]
              for w, table in (("w1", W1), ("w2", W2)) for s, v in table.items()}
    tests = {"w1": {s: [0.87, 0.88] for s in W1}, "w2": {s: [2.7, 2.9] for s in W2}}
    final = finals(tests, {"w2": REGRESSION},
                   params={key: {"peak_lr": lr} for key, lr in chosen.items()})
    return pd.concat([tune, final], ignore_index=True)


def test_the_curves_start_at_the_grid_mean_and_end_at_its_best():
    curves = tuning_budget.tuning_curves(planted_trials()).set_index(
        ["workload", "strategy", "n"])
    for w, table, sign in (("w1", W1, 1), ("w2", W2, -1)):
        for s, values in table.items():
            curve = curves.loc[(w, s)]
            assert curve.loc[1, "expected_val"] == pytest.approx(np.mean(values))
            oriented = sign * np.array(values)
            for n in (3, 5):
                assert curve.loc[n, "expected_val"] == pytest.approx(
                    sign * tuning_budget.expected_best(oriented, [n])[0])
            assert curve.loc[1, "points"] == 5
            assert curve.loc[1, "tuned_score"] == pytest.approx(oriented.max())
            # the finals ran at the grid's best: n draws find it unless all miss it
            assert curve["p_winner"].to_numpy() == pytest.approx(1 - 0.8 ** np.arange(1, 6))
            assert curve["winner_test"].iloc[0] == pytest.approx(0.875 if w == "w1" else 2.8)
            # the one-shot point: the catalogue LR, the grid's middle
            assert curve.loc[1, "catalogue_lr"] == 0.001
            assert curve.loc[1, "catalogue_val"] == pytest.approx(values[2])
    metric = curves.reset_index().groupby("workload")["metric"].first().to_dict()
    assert metric == {"w1": "val_accuracy", "w2": "val_rmse"}


def test_the_best_strategy_with_1_3_and_5_tuning_runs():
    curves = tuning_budget.tuning_curves(planted_trials())
    table = tuning_budget.best_by_budget(curves, reference=REF)
    assert table.columns.tolist() == [1, 3, 5]
    assert table.loc["w1"].tolist() == ["flat", "flat", "peaky"]  # one great point needs runs
    # on w2 the reference's good middle point beats flat's 2.6 once 5 runs likely find it
    assert table.loc["w2"].tolist() == ["flat", "flat", REF]
    # over workloads: each workload's expected scores normalized, 0 at the reference with its
    # whole grid, 1 at the best strategy with its whole grid, then the mean
    expected = {}
    for n in (1, 3, 5):
        z = {}
        for table_, sign in ((W1, 1), (W2, -1)):
            tuned = {s: max(sign * np.array(v)) for s, v in table_.items()}
            for s, v in table_.items():
                e = tuning_budget.expected_best(sign * np.array(v), [n])[0]
                z.setdefault(s, []).append(normalize(e, tuned[REF], max(tuned.values()),
                                                     0.003))
        expected[n] = max(z, key=lambda s: np.mean(z[s]))
    assert table.loc[tuning_budget.ALL_WORKLOADS].tolist() == [expected[1], expected[3],
                                                                expected[5]]
    assert expected[1] == "flat" and expected[5] == REF  # peaky's w2 costs it the aggregate


def test_a_point_with_a_diverged_seed_ranks_last_as_in_the_tuning():
    # A's mean with the diverged seed at chance (0.1) is 0.633, above B's 0.6; the tuning
    # ranks A last all the same, so many draws end at B
    grids = {"w": {"s": {0.001: [0.9, 0.9, 0.9], 0.01: [0.6, 0.6, 0.6]}}}
    tune = tuning(grids, diverged={("w", "s", 0.001, 1002)})
    final = finals({"w": {"s": [0.6, 0.6]}}, params={("w", "s"): {"peak_lr": 0.01}})
    curves = tuning_budget.tuning_curves(pd.concat([tune, final]), max_n=40)
    points = tuning_budget.tuning_points(pd.concat([tune, final])).set_index("peak_lr")
    assert points.loc[0.001, "val"] == pytest.approx((0.9 + 0.9 + 0.1) / 3)
    assert points.loc[0.001, "diverged_seeds"] == 1
    weights = tuning_budget.choice_probabilities(2, curves["n"])
    assert curves["expected_val"].to_numpy() == pytest.approx(
        weights @ [points.loc[0.001, "val"], 0.6])
    assert curves["expected_val"].iloc[-1] == pytest.approx(0.6)
    assert curves["p_winner"].iloc[-1] == pytest.approx(1.0)
    assert np.isnan(curves["catalogue_lr"].iloc[0])  # two points: no middle one


def test_an_extended_grid_and_a_given_catalogue_lr():
    grid = dict(zip((*GRID, 0.03162), [0.5, 0.6, 0.7, 0.8, 0.85, 0.9]))
    tune = tuning({"w": {"s": {lr: [v] * 3 for lr, v in grid.items()}}})
    final = finals({"w": {"s": [0.9, 0.9]}}, params={("w", "s"): {
        "peak_lr": 0.03162, "tune.extended_below": "0", "tune.extended_above": "1"}})
    trials = pd.concat([tune, final])
    initial = tuning_budget.tuning_curves(trials)
    assert (initial["points"] == 5).all() and (initial["p_winner"] == 0).all()
    assert initial["catalogue_lr"].iloc[0] == 0.001  # the initial grid's middle
    assert initial["expected_val"].iloc[0] == pytest.approx(np.mean([0.5, 0.6, 0.7, 0.8, 0.85]))
    tried = tuning_budget.tuning_curves(trials, grid="tried")
    assert (tried["points"] == 6).all()
    assert tried["p_winner"].iloc[0] == pytest.approx(1 / 6)
    given = tuning_budget.tuning_curves(trials, catalogue={"s@w": 0.003162})
    assert given["catalogue_val"].iloc[0] == pytest.approx(0.8)


def test_the_docstring_examples_run():
    import doctest

    assert doctest.testmod(tuning_budget).failed == 0
