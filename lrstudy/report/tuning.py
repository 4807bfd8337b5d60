"""The tuning's evidence, from the tuning and final trials of a competition (pure functions).

- :func:`tuning_table`: each tuned strategy's grid, point by point: the mean and spread of its
  validation score over the tuning seeds, the point its finals ran at, whether the grid grew
  beyond its initial edges and whether the winner still sits on an edge (capped);
- :func:`choice_stability`: how stable the choice is, the share of bootstrap resamples of the
  tuning seeds (Efron 1979; the same resampled seeds for every point, as they were paired)
  whose best mean is the point the tuning chose;
- :func:`finder_regret`: what taking the LR range test's suggestion costs, per rule: a
  range-test-fed strategy against its tuned twin (the same schedule, its LR tuned), seed by
  seed on the test set, with the ratio of the suggested peak LR to the tuned one;
- :func:`plateau_fired`: in how many finals a plateau rule lowered the LR at all.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from lrstudy import tasks
from lrstudy.report.frames import task_of
from lrstudy.report.stats import ALPHA
from lrstudy.report.workloads import comparable

RESAMPLES = 2000
RNG_SEED = 0  # seeded: the same store gives the same report
TUNING_COLUMNS = ["scenario", "peak_lr", "val_score", "val_sd", "seeds", "diverged_seeds",
                  "chosen", "at_grid_edge", "extended", "stability"]


def _oriented(tune: pd.DataFrame, task: tasks.Task) -> pd.DataFrame:
    """The tuning trials' validation scores, higher is better, ``-inf`` where diverged."""
    value = tune[f"final_{task.val_metric}"].astype(float)
    value = value if task.higher_is_better else -value
    value = value.where(~tune["diverged"].astype(bool) & np.isfinite(value), -np.inf)
    return tune.assign(score=value)


def _chosen(final: pd.DataFrame) -> pd.Series:
    if final.empty or "peak_lr" not in final:
        return pd.Series(dtype=float)
    return final.groupby("scenario")["peak_lr"].first()


def choice_stability(tune: pd.DataFrame, final: pd.DataFrame, resamples: int = RESAMPLES,
                     seed: int = RNG_SEED) -> pd.Series:
    """Per tuned strategy, the share of bootstrap resamples of its tuning seeds in which the
    chosen point keeps the best mean validation score (ties: the smaller LR, as the tuning
    breaks them). NaN with a single tuning seed (nothing to resample) or no finals yet."""
    if tune.empty:
        return pd.Series(dtype=float)
    scored = _oriented(tune, task_of(tune))
    chosen = _chosen(final)
    rng = np.random.default_rng(seed)
    out = {}
    for name, rows in scored.groupby("scenario"):
        matrix = rows.pivot_table(index="peak_lr", columns="seed", values="score",
                                  aggfunc="first").sort_index().dropna(axis=1)
        won = chosen.get(name, np.nan)
        if matrix.shape[1] < 2 or not np.isfinite(won):
            out[name] = np.nan
            continue
        picks = rng.integers(0, matrix.shape[1], size=(resamples, matrix.shape[1]))
        with np.errstate(invalid="ignore"):  # -inf means of diverged points
            means = matrix.to_numpy()[:, picks].mean(axis=2)  # [points, resamples]
        best = matrix.index.to_numpy()[np.argmax(means, axis=0)]
        out[name] = float(np.mean(np.isclose(best, won, rtol=1e-6)))
    return pd.Series(out, name="stability")


def tuning_table(tune: pd.DataFrame, final: pd.DataFrame) -> pd.DataFrame:
    """Each tuned strategy's grid: per peak LR its mean validation score over the tuning seeds
    (``val_score``: accuracy, or RMSE for a regression; NaN where a seed diverged) and their
    standard deviation, the number of seeds and of diverged ones; ``chosen`` marks the point
    its finals ran at, ``at_grid_edge`` a chosen point on an end of the grid tried (the grid
    grows past an edge winner up to its cap, so such a winner is capped), ``extended`` how many
    points were tried beyond the initial grid, ``stability`` (:func:`choice_stability`)."""
    if tune.empty:
        return pd.DataFrame(columns=TUNING_COLUMNS)
    if "task" in tune and tune["task"].fillna("classification").nunique() > 1:
        # workloads of different tasks: each scored on its own metric (a classification's
        # trials carry no task param)
        tune_task = tune["task"].fillna("classification")
        final_task = (final["task"].fillna("classification") if "task" in final
                      else pd.Series("classification", index=final.index))
        return pd.concat([tuning_table(group, final[final_task == name])
                          for name, group in tune.groupby(tune_task, sort=True)],
                         ignore_index=True)
    task = task_of(tune)
    scored = _oriented(tune, task)
    metric = f"final_{task.val_metric}"
    grid = (scored.groupby(["scenario", "peak_lr"], as_index=False)
            .agg(val_score=(metric, "mean"), val_sd=(metric, "std"), seeds=("score", "size"),
                 diverged_seeds=("score", lambda s: int(np.isneginf(s).sum()))))
    grid.loc[grid["diverged_seeds"] > 0, "val_score"] = np.nan
    chosen = _chosen(final)
    grid["chosen"] = [bool(np.isclose(lr, chosen.get(sc, np.nan), rtol=1e-6))
                      for sc, lr in zip(grid["scenario"], grid["peak_lr"])]
    ends = grid.groupby("scenario")["peak_lr"].agg(["min", "max", "size"])
    grid["at_grid_edge"] = [c and ends.loc[sc, "size"] > 1 and lr in (ends.loc[sc, "min"],
                                                                      ends.loc[sc, "max"])
                            for sc, lr, c in zip(grid["scenario"], grid["peak_lr"],
                                                 grid["chosen"])]
    extended = pd.Series(0, index=ends.index)
    if {"tune.extended_below", "tune.extended_above"} <= set(final):
        sums = (pd.to_numeric(final["tune.extended_below"], errors="coerce")
                + pd.to_numeric(final["tune.extended_above"], errors="coerce"))
        extended = sums.groupby(final["scenario"]).first().reindex(ends.index).fillna(0)
    grid["extended"] = grid["scenario"].map(extended).astype(int)
    grid["stability"] = grid["scenario"].map(choice_stability(tune, final))
    return grid[TUNING_COLUMNS]


REGRET_COLUMNS = ["scenario", "rule", "twin", "suggested_lr", "tuned_lr", "ratio", "seeds",
                  "regret", "regret_low", "regret_high", "unit"]


def finder_regret(finals: pd.DataFrame, confidence: float = 1 - ALPHA) -> pd.DataFrame:
    """Per range-test-fed strategy (finals with params ``finder.rule`` and ``finder.twin``):
    its rule, its twin, the suggested peak LR (median over its finals) and the twin's tuned
    one, their ratio, and the regret: the mean paired difference of the test score (points of
    accuracy, or the RMSE's difference, oriented so that negative is a loss: ``unit``)
    against the twin over the seeds both have, with Bonferroni t-intervals over the
    strategies compared (Dunn 1961), so that the intervals hold together.

    Workload by workload (and budget by budget:
    :func:`lrstudy.report.workloads.comparable`): a fed strategy and its twin share one, each
    is scored on its own task's metric (a suite mixes accuracies and RMSEs) and the
    intervals hold together within it, as a workload's verdict does."""
    if finals.empty or "finder.twin" not in finals:
        return pd.DataFrame(columns=REGRET_COLUMNS)
    groups = comparable(finals)
    if len(groups) > 1:
        found = [_regret(rows, confidence) for _, rows in groups]
        found = [table for table in found if not table.empty]
        if not found:
            return pd.DataFrame(columns=REGRET_COLUMNS)
        return pd.concat(found, ignore_index=True)
    return _regret(finals, confidence)


def _regret(finals: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """:func:`finder_regret` of the finals of one workload and budget (one task)."""
    columns = REGRET_COLUMNS
    fed = finals[finals["finder.twin"].fillna("").astype(str) != ""]
    task = task_of(finals)
    test = f"test_{task.primary}"
    scale = 100.0 if task.higher_is_better else -1.0
    pairs = []
    for name, rows in fed.groupby("scenario"):
        twin = rows["finder.twin"].iloc[0]
        other = finals[(finals["scenario"] == twin)]
        merged = rows.merge(other, on="seed", suffixes=("", "_twin"))
        pairs.append((name, rows, twin, other, merged))
    k = max(1, len(pairs))
    out = []
    for name, rows, twin, other, merged in pairs:
        diff = scale * (merged[test].astype(float) - merged[f"{test}_twin"].astype(float))
        diff = diff[np.isfinite(diff)].to_numpy()
        low = high = mean = np.nan
        if len(diff) >= 2:
            mean = float(diff.mean())
            half = stats.t.ppf(1 - (1 - confidence) / (2 * k), len(diff) - 1) * \
                float(diff.std(ddof=1)) / np.sqrt(len(diff))
            low, high = mean - half, mean + half
        elif len(diff) == 1:
            mean = float(diff[0])
        suggested = float(np.median(rows["peak_lr"].astype(float)))
        tuned = float(np.median(other["peak_lr"].astype(float))) if len(other) else np.nan
        out.append({"scenario": name, "rule": rows["finder.rule"].iloc[0], "twin": twin,
                    "suggested_lr": suggested, "tuned_lr": tuned,
                    "ratio": suggested / tuned if tuned > 0 else np.nan, "seeds": len(diff),
                    "regret": mean, "regret_low": low, "regret_high": high,
                    "unit": "accuracy points" if task.higher_is_better
                    else task.primary.upper()})
    return pd.DataFrame(out, columns=columns)


def plateau_fired(finals: pd.DataFrame) -> pd.DataFrame:
    """Per scenario of the plateau family: in how many of its finals the last epoch's LR sits
    below the peak, i.e. the rule fired."""
    has_rule = finals.get("family", pd.Series(index=finals.index, dtype=object)) == "plateau"
    rows = finals[has_rule & finals["final_learning_rate"].notna()] \
        if "final_learning_rate" in finals else finals.iloc[0:0]
    if rows.empty:
        return pd.DataFrame(columns=["scenario", "fired", "finals"])
    fired = rows["final_learning_rate"].astype(float) < rows["peak_lr"].astype(float) * (1 - 1e-3)
    table = fired.groupby(rows["scenario"]).agg(["sum", "size"]).reset_index()
    return table.set_axis(["scenario", "fired", "finals"], axis=1)
