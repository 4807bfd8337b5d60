"""Performance profiles across workloads (Dolan & Moré 2002, "Benchmarking optimization
software with performance profiles", Mathematical Programming 91:201; as AlgoPerf uses them,
Dahl et al. 2023, "Benchmarking neural network training algorithms").

Per workload ``w``, each strategy ``s`` has a cost ``c(s, w)``: its mean test error over its
final seeds, ``1 - accuracy`` for a classification and the RMSE for a regression, a diverged
seed counted as the verdict counts it (chance accuracy, or the worst RMSE of the workload:
:func:`lrstudy.report.verdict.seed_scores`). Its performance ratio is its cost over the
workload's best, ``r(s, w) = c(s, w) / min_s' c(s', w)``; the profile of ``s`` is, for each
``tau >= 1``, the share of workloads with ``r(s, w) <= tau``. At ``tau = 1`` it is the share of
workloads a strategy is best on (ties count for each tied strategy); a strategy that did not
run on a workload has ``r = inf`` there (Dolan & Moré's failure), so its profile never
reaches 1. Ratios of errors, not of accuracies: a strategy at 2% error is twice as far from
perfect as one at 1%, where their accuracies differ by 1%.

The profile is descriptive: means, no intervals. How sure each workload's ordering is, is in
:mod:`lrstudy.report.pairwise`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrstudy.report.workloads import final_scores, workload_tasks

RATIO_COLUMNS = ["workload", "strategy", "cost", "best_cost", "ratio"]


def performance_ratios(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per workload and strategy (every strategy that ran on any workload):
    ``cost`` (mean test error, or RMSE; NaN where it did not run), ``best_cost`` (the
    workload's lowest), ``ratio`` (cost over best; ``inf`` where it did not run; where the
    best cost is 0, 1 for a zero cost and ``inf`` for any other)."""
    scores = final_scores(trials)
    found = workload_tasks(trials)
    strategies = sorted({s for table in scores.values() for s in table.columns})
    rows = []
    for workload, table in scores.items():
        mean = table.mean().reindex(strategies)  # each strategy over its own seeds
        cost = 1.0 - mean if found[workload].higher_is_better else -mean
        best = float(cost.min())
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (cost / best) if best > 0 else np.where(cost == 0, 1.0, np.inf)
        ratio = pd.Series(ratio, index=strategies).where(cost.notna(), np.inf)
        rows += [{"workload": workload, "strategy": s, "cost": float(cost[s]),
                  "best_cost": best, "ratio": float(ratio[s])} for s in strategies]
    return pd.DataFrame(rows, columns=RATIO_COLUMNS)


def default_taus(ratios: pd.DataFrame) -> np.ndarray:
    """The ``tau`` where some profile steps (1 and every finite ratio), and one beyond the
    largest, so that a step plot shows each step and where the curves end."""
    finite = ratios["ratio"].to_numpy(float)
    finite = finite[np.isfinite(finite)]
    top = float(finite.max()) if finite.size else 1.0
    return np.unique(np.concatenate([[1.0], finite, [top * 1.05 if top > 1 else 1.05]]))


def performance_profile(ratios: pd.DataFrame, taus=None) -> pd.DataFrame:
    """Each strategy's profile: ``strategy, tau, share`` with ``share`` the fraction of the
    workloads in ``ratios`` (:func:`performance_ratios`) on which its ratio is at most
    ``tau``. ``taus``: the values of ``tau`` (default :func:`default_taus`, where the
    profiles step; each must be >= 1)."""
    taus = default_taus(ratios) if taus is None else np.asarray(taus, float)
    if taus.size and taus.min() < 1:
        raise ValueError(f"Argument `taus` must be >= 1 (a ratio to the best). Received: "
                         f"taus={taus.tolist()!r}")
    workloads = ratios["workload"].nunique()
    rows = []
    for strategy, group in ratios.groupby("strategy", sort=True):
        r = group["ratio"].to_numpy(float)
        share = (r[None, :] <= taus[:, None]).sum(axis=1) / max(workloads, 1)
        rows.append(pd.DataFrame({"strategy": strategy, "tau": taus, "share": share}))
    if not rows:
        return pd.DataFrame(columns=["strategy", "tau", "share"])
    return pd.concat(rows, ignore_index=True)
