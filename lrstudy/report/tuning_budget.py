"""Tuning-budget curves: what a strategy reaches on validation when its LR gets ``n`` tuning
runs instead of the whole grid (Dodge et al. 2019, "Show your work: improved reporting of
experimental results", EMNLP; Crowded Valley, Schmidt et al. 2021, reports results per tuning
budget the same way).

**The points.** Per workload and strategy, from its tuning trials only (phase ``tune``, never
scored on the test set): each grid point's score is the mean of the final validation metric
over its tuning seeds, a diverged seed scored as the verdict scores a final (chance accuracy,
or the worst validation RMSE of the workload's tuning; :func:`lrstudy.report.verdict.seed_scores`),
oriented so that higher is better.

**The curve.** Draw ``n`` of the ``N`` grid points at random with replacement and keep the
best: its expected score is Dodge et al.'s expected maximum

    E[best of n] = sum_i v_(i) [(i / N)^n - ((i - 1) / N)^n]

with the points ranked ``v_(1)`` (worst) to ``v_(N)`` (best): ``(i / N)^n`` is the chance that
all ``n`` draws fall among the ``i`` lowest (:func:`choice_probabilities`). The points are
ranked as the tuning ranks them (:func:`lrstudy.spec.competition.best_point`): a point with a
diverged tuning seed last (the tuning scores it ``-inf``), ties to the smaller LR; without
diverged points this is exactly the expected maximum (:func:`expected_best`). The grid is the
initial one by default (``grid="initial"``): the ``N`` points every strategy got before any
extension, a search space fixed in advance as Dodge et al.'s is; ``grid="tried"`` adds the
points the grid grew by past a winning edge (which exist only because that edge won).

**The one-shot point.** The LR a practitioner tries first is the scenario's catalogue LR, on
which the tuning grid is centred in log space (:func:`lrstudy.spec.lr_scale.lr_grid`): with an
odd number of points it is the initial grid's middle point. Its validation score is shown
beside ``n = 1``, where the curve is the average over the grid. Give ``catalogue`` (scenario
to LR, e.g. :func:`lrstudy.spec.lr_scale.peak_lr` of each scenario) or let it be read from the
grid (the initial grid's geometric middle); none where no grid point sits there (an even
grid, or a given LR off the grid: only a trained point has a score).

**Test scores.** The curves are of validation scores only, and say so. The finals ran at one
grid point, the full tuning's winner; no other point was ever scored on the test set (by
design: the test set is for the finals). The expected test score of the point ``n`` draws
choose is therefore known only on the draws that choose the winner: the curves give the
probability of that, ``p_winner``, and the finals' mean test score there, ``winner_test``.
With probability ``p_winner`` a search of ``n`` runs ends where the finals did, at that test
score; what it scores elsewhere was not measured, and a curve of expected test scores would
have to invent it (from a model of the validation-test gap).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lrstudy.report.aggregate_score import normalize
from lrstudy.report.frames import phases
from lrstudy.report.verdict import MARGIN, seed_scores
from lrstudy.report.workloads import REFERENCE, by_workload, margin_of, workload_tasks

BUDGETS = (1, 3, 5)  # the tuning runs the report's table answers for
GRIDS = ("initial", "tried")
RTOL = 1e-3  # grid LRs carry 4 significant digits (lr_scale.significant)
ALL_WORKLOADS = "all workloads (mean normalized)"


def choice_probabilities(points: int, n) -> np.ndarray:
    """``[len(n), points]``: the probability that the best of ``n`` draws with replacement
    from ``points`` ranked points is the point of rank ``i`` (0 the worst):
    ``((i + 1) / N)^n - (i / N)^n``. Each row sums to 1."""
    if points < 1:
        raise ValueError(f"Argument `points` must be >= 1. Received: points={points!r}")
    n = np.atleast_1d(np.asarray(n, float))[:, None]
    if (n < 1).any():
        raise ValueError(f"Argument `n` must be >= 1. Received: n={n.ravel().tolist()!r}")
    i = np.arange(points)
    return ((i + 1) / points) ** n - (i / points) ** n


def expected_best(values, n) -> np.ndarray:
    """Dodge et al.'s expected maximum of ``n`` draws with replacement from ``values``, for
    each ``n``: ``sum_i v_(i) [(i / N)^n - ((i - 1) / N)^n]`` over the sorted values.

    >>> expected_best([0.1, 0.2, 0.3], [1, 2]).round(4).tolist()
    [0.2, 0.2444]
    """
    v = np.sort(np.asarray(values, float))
    return choice_probabilities(v.size, n) @ v


def _catalogue_lr(lrs: np.ndarray) -> float:
    """The middle of a grid in log space, when a point sits there (an odd grid); else NaN."""
    middle = float(np.sqrt(lrs.min() * lrs.max()))
    close = np.isclose(lrs, middle, rtol=RTOL, atol=0)
    return float(lrs[close][0]) if close.any() else np.nan


def tuning_points(trials: pd.DataFrame,
                  catalogue: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Every tuning grid point: ``workload, strategy, scenario, peak_lr``, ``score`` (the
    oriented mean over its tuning seeds, module docstring), ``val`` (the same in the metric's
    own units: accuracy, or RMSE), ``metric``, ``seeds``, ``diverged_seeds``, ``initial``
    (part of the grid before any extension), ``chosen`` (the LR its finals ran at) and
    ``catalogue`` (the one-shot point: ``catalogue[scenario]``, else the initial grid's
    middle)."""
    frames = []
    tasks = workload_tasks(trials)
    for workload, group in by_workload(trials):
        split = phases(group)
        tune, final = split["tune"], split["ranked"]
        if tune.empty:
            continue
        task = tasks[workload]
        key = tune["scenario"].astype(str) + "|" + tune["peak_lr"].astype(float).map(repr)
        scores = seed_scores(tune.assign(scenario=key), f"final_{task.val_metric}")
        points = (tune.assign(key=key).groupby("key", sort=False)
                  .agg(scenario=("scenario", "first"), strategy=("strategy", "first"),
                       peak_lr=("peak_lr", "first"), seeds=("seed", "size"),
                       diverged_seeds=("diverged", "sum")))
        points["score"] = scores.mean().reindex(points.index)
        points["val"] = points["score"] if task.higher_is_better else -points["score"]
        points = points.reset_index(drop=True).assign(workload=workload,
                                                      metric=task.val_metric)
        points["peak_lr"] = points["peak_lr"].astype(float)
        points["diverged_seeds"] = points["diverged_seeds"].astype(int)
        frames.append(_mark(points, final, catalogue))
    columns = ["workload", "strategy", "scenario", "peak_lr", "score", "val", "metric",
               "seeds", "diverged_seeds", "initial", "chosen", "catalogue"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)[columns]
    return out.sort_values(["workload", "strategy", "peak_lr"], ignore_index=True)


def _extended(final: pd.DataFrame, scenario: str) -> tuple[int, int]:
    """How many points the grid of ``scenario`` grew by below and above (its finals'
    ``tune.extended_below`` and ``tune.extended_above``; none without finals)."""
    rows = final[final["scenario"] == scenario]
    counts = []
    for column in ("tune.extended_below", "tune.extended_above"):
        value = (pd.to_numeric(rows[column], errors="coerce").dropna()
                 if column in rows else pd.Series(dtype=float))
        counts.append(int(value.iloc[0]) if len(value) else 0)
    return counts[0], counts[1]


def _mark(points: pd.DataFrame, final: pd.DataFrame,
          catalogue: Mapping[str, float] | None) -> pd.DataFrame:
    """``points`` of one workload with ``initial``, ``chosen`` and ``catalogue`` marked."""
    points = points.sort_values(["scenario", "peak_lr"], ignore_index=True)
    chosen = (final.groupby("scenario")["peak_lr"].first()
              if len(final) and "peak_lr" in final else pd.Series(dtype=float))
    points["initial"] = points["chosen"] = points["catalogue"] = False
    for scenario, rows in points.groupby("scenario"):
        below, above = _extended(final, scenario)
        initial = rows.index[below:len(rows) - above]
        points.loc[initial, "initial"] = True
        lrs = points.loc[initial, "peak_lr"].to_numpy(float)
        given = (catalogue or {}).get(scenario)
        one_shot = float(given) if given is not None else (
            _catalogue_lr(lrs) if lrs.size else np.nan)
        points.loc[rows.index, "catalogue"] = np.isclose(rows["peak_lr"], one_shot, rtol=RTOL,
                                                         atol=0)
        won = chosen.get(scenario, np.nan)
        points.loc[rows.index, "chosen"] = np.isclose(rows["peak_lr"], won, rtol=RTOL, atol=0)
    return points


def _ranked(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` (one strategy's points) in the tuning's order of preference, worst first: a
    point with a diverged seed below every other, then by score, ties to the smaller LR."""
    order = np.lexsort((-rows["peak_lr"].to_numpy(float), rows["score"].to_numpy(float),
                        (rows["diverged_seeds"] == 0).to_numpy()))
    return rows.iloc[order]


def _winner_tests(trials: pd.DataFrame) -> dict[tuple[str, str], float]:
    """``(workload, strategy)`` to the finals' mean test score, in the metric's own units
    (a diverged seed as the verdict counts it)."""
    out = {}
    tasks = workload_tasks(trials)
    for workload, group in by_workload(trials):
        final = phases(group)["ranked"]
        if final.empty:
            continue
        sign = 1.0 if tasks[workload].higher_is_better else -1.0
        means = sign * seed_scores(final).mean()
        names = dict(zip(final["scenario"], final["strategy"]))
        out.update({(workload, names[s]): float(v) for s, v in means.items()})
    return out


def tuning_curves(trials: pd.DataFrame, grid: str = "initial",
                  catalogue: Mapping[str, float] | None = None,
                  max_n: int | None = None) -> pd.DataFrame:
    """Per workload, strategy and ``n`` from 1 to ``max_n`` (default: the largest grid, and
    at least the largest of :data:`BUDGETS`): ``points`` (N), ``expected_score`` (oriented)
    and ``expected_val`` (the metric's own units) of the best of ``n`` random grid points,
    ``tuned_score`` (the grid's best: the curve's limit), ``p_winner`` (the chance that the
    ``n`` draws choose the LR the finals ran at), ``winner_test`` (the finals' mean test
    score), ``catalogue_lr`` and ``catalogue_val`` (the one-shot point), ``metric``. Module
    docstring: what the curve means and why it has no test scores."""
    if grid not in GRIDS:
        raise ValueError(f"Argument `grid` must be one of {', '.join(GRIDS)}. Received: "
                         f"grid={grid!r}")
    points = tuning_points(trials, catalogue)
    if grid == "initial":
        points = points[points["initial"].astype(bool)]  # (an empty mask, not column names)
    sizes = points.groupby(["workload", "strategy"]).size()
    top = int(max_n or max([*sizes.tolist(), *BUDGETS]))
    ns = np.arange(1, top + 1)
    tests = _winner_tests(trials)
    tasks = workload_tasks(trials)
    rows = []
    for (workload, strategy), group in points.groupby(["workload", "strategy"], sort=True):
        ranked = _ranked(group)
        weights = choice_probabilities(len(ranked), ns)
        expected = weights @ ranked["score"].to_numpy(float)
        sign = 1.0 if tasks[workload].higher_is_better else -1.0
        one_shot = ranked[ranked["catalogue"]]
        chosen = ranked["chosen"].to_numpy()
        rows.append(pd.DataFrame({
            "workload": workload, "strategy": strategy, "metric": ranked["metric"].iloc[0],
            "n": ns, "points": len(ranked), "expected_score": expected,
            "expected_val": sign * expected, "tuned_score": float(ranked["score"].iloc[-1]),
            "p_winner": weights[:, chosen].sum(axis=1) if chosen.any() else
            (0.0 if (workload, strategy) in tests else np.nan),
            "winner_test": tests.get((workload, strategy), np.nan),
            "catalogue_lr": one_shot["peak_lr"].iloc[0] if len(one_shot) else np.nan,
            "catalogue_val": one_shot["val"].iloc[0] if len(one_shot) else np.nan}))
    if not rows:
        return pd.DataFrame(columns=["workload", "strategy", "metric", "n", "points",
                                     "expected_score", "expected_val", "tuned_score",
                                     "p_winner", "winner_test", "catalogue_lr",
                                     "catalogue_val"])
    return pd.concat(rows, ignore_index=True)


def budget_scores(curves: pd.DataFrame, budgets=BUDGETS, reference: str = REFERENCE,
                  margin: float | Mapping[str, float] = MARGIN) -> pd.DataFrame:
    """The curves at ``budgets``, each workload's expected scores normalized as the aggregate
    score normalizes finals (:func:`lrstudy.report.aggregate_score.normalize`): 0 at the
    reference's fully tuned validation score (its ``tuned_score``), 1 at the best fully
    tuned score of the workload, the scale floored at the margin. So 1 is "as good as the
    best strategy with the whole grid", 0 "as good as the reference with the whole grid".
    Columns ``n, workload, strategy, expected_val, normalized`` (NaN on a workload without
    the reference)."""
    at = curves[curves["n"].isin(list(budgets))].copy()
    at["normalized"] = np.nan
    for workload, rows in at.groupby("workload"):
        limits = rows.groupby("strategy")["tuned_score"].first()
        if reference not in limits:
            continue
        at.loc[rows.index, "normalized"] = normalize(
            rows["expected_score"], limits[reference], limits.max(),
            margin_of(margin, workload))
    return at[["n", "workload", "strategy", "expected_val", "expected_score", "normalized"]]


def _best(scores: pd.Series) -> str:
    """The name of the highest, or the tied highest joined with " = "."""
    scores = scores.dropna()
    if scores.empty:
        return ""
    top = scores[np.isclose(scores, scores.max(), rtol=0, atol=1e-12)]
    return " = ".join(sorted(top.index))


def best_by_budget(curves: pd.DataFrame, budgets=BUDGETS, reference: str = REFERENCE,
                   margin: float | Mapping[str, float] = MARGIN) -> pd.DataFrame:
    """With 1, 3, 5 tuning runs, which strategy is best: rows the workloads and, last, all
    workloads together (the highest mean normalized score of :func:`budget_scores` over the
    workloads that ran the reference), columns the budgets ``n``, cells the strategy (ties
    joined with " = "). Descriptive: expected validation scores, no intervals."""
    scores = budget_scores(curves, budgets, reference, margin)
    table = {}
    for n, rows in scores.groupby("n", sort=True):
        column = {w: _best(r.set_index("strategy")["expected_score"])
                  for w, r in rows.groupby("workload", sort=True)}
        column[ALL_WORKLOADS] = _best(rows.groupby("strategy")["normalized"].mean())
        table[int(n)] = column
    return pd.DataFrame(table).rename_axis(index="workload", columns="n")
