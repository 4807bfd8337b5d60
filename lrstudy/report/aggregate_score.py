"""One score across workloads: the interquartile mean of normalized final scores, with
stratified bootstrap intervals (Agarwal et al. 2021, "Deep reinforcement learning at the edge
of the statistical precipice", NeurIPS; the ``rliable`` package).

**Normalization.** Accuracy on one workload and RMSE on another share no scale, and a workload
where strategies lie far apart would outweigh one where they lie close. As rliable normalizes
Atari scores (0 at a random policy, 1 at a human), each workload's final seeds are put on
one scale: 0 at the reference strategy's mean (tuned constant-LR Adam: what one uses without
this study) and 1 at the workload's best strategy's mean,
``z = (score - mean_ref) / max(mean_best - mean_ref, margin)`` on oriented scores (higher is
better; a regression's RMSE as ``-rmse``; a diverged seed as the verdict counts it). A
strategy's aggregate then reads as the share of the best strategy's gain over the reference
that it realizes on a typical workload: 1 as good as the best, 0 no better than the
reference, below 0 worse than it. **When the best is the reference** (or beats it by less
than the study's margin of practical equivalence), the gap is zero or noise, and dividing by
it would blow noise up to whole units: the scale is floored at the margin, so the reference
and the best score 0 and 1 only when the gap exceeds the margin; where the reference is the
best, it scores 0 and every other strategy its shortfall in margins (negative).

**The aggregate** is rliable's interquartile mean (``metrics.aggregate_iqm``: the mean of the
middle 50% of all runs x workloads), robust to one workload or seed of outliers yet less noisy
than the median. **Its interval** is rliable's stratified bootstrap (``StratifiedBootstrap``,
percentile method): each resample redraws the seeds within each workload (the workloads are
the tasks, the strata), so the interval covers seed-to-seed variation on these workloads, not
the choice of workloads. rliable needs a rectangle, seeds x workloads, per strategy: where
the workloads have different numbers of final seeds, every workload contributes its first
``m`` seeds that every compared strategy has, ``m`` the smallest such count (the table says
``m``); normalization uses the same seeds, so the reference's mean is exactly 0.

Why the bootstrap is written out here: ``rliable.library`` does not import with the pandas
this project pins (arch 7.2's ``arch.univariate`` fails at import under pandas 3.1; arch 8
imports but no longer takes the ``random_state`` keyword rliable 1.2 passes).
:func:`stratified_bootstrap` draws the same resamples as rliable's ``StratifiedBootstrap``
(``np.random.choice(runs, (runs, tasks))`` per resample from a ``RandomState``; the tests
check it against rliable's own ``get_interval_estimates`` number for number) and takes
arch's percentile interval (``np.percentile``, linear), vectorized over resamples.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from rliable import metrics
from scipy import stats

from lrstudy.report.stats import CONFIDENCE
from lrstudy.report.verdict import MARGIN
from lrstudy.report.workloads import REFERENCE, final_scores, margin_of

RESAMPLES = 50_000  # rliable's default number of bootstrap replications
RNG_SEED = 0  # seeded: the same store gives the same report
CHUNK = 5_000  # resamples drawn at once (the stream is the same as one at a time)
IQM_COLUMNS = ["strategy", "iqm", "low", "high", "seeds", "workloads"]


def normalize(values, zero: float, one: float, floor: float):
    """``(values - zero) / max(one - zero, floor)``: 0 at ``zero``, 1 at ``one`` when ``one``
    exceeds ``zero`` by at least ``floor`` (module docstring)."""
    return (values - zero) / max(one - zero, floor)


def common_seeds(scores: dict[str, pd.DataFrame], strategies: list[str]) -> dict[str,
                                                                                   pd.DataFrame]:
    """Each workload's ``scores`` (seeds x strategies) cut to a rectangle: ``strategies``
    only, the seeds every one of them has, the first ``m`` of those (in seed order) with
    ``m`` the smallest count over the workloads."""
    complete = {w: table[strategies].dropna().sort_index() for w, table in scores.items()}
    m = min((len(table) for table in complete.values()), default=0)
    return {w: table.iloc[:m] for w, table in complete.items()}


def normalized_scores(trials: pd.DataFrame, reference: str = REFERENCE,
                      margin: float | Mapping[str, float] = MARGIN) -> pd.DataFrame:
    """Each final seed's normalized score: ``workload, strategy, seed, score`` (oriented),
    ``normalized`` (module docstring). Only workloads that ran ``reference`` (no zero point
    otherwise), only strategies that ran on every such workload, and per workload the common
    seeds of :func:`common_seeds`."""
    scores = {w: table for w, table in final_scores(trials).items() if reference in table}
    columns = ["workload", "strategy", "seed", "score", "normalized"]
    if not scores:
        return pd.DataFrame(columns=columns)
    strategies = sorted(set.intersection(*(set(t.columns) for t in scores.values())))
    rows = []
    for workload, table in common_seeds(scores, strategies).items():
        means = table.mean()
        z = normalize(table, means[reference], means.max(), margin_of(margin, workload))
        long = table.stack().rename("score").reset_index()
        long["normalized"] = z.stack().to_numpy()
        rows.append(long.assign(workload=workload))
    return pd.concat(rows, ignore_index=True)[columns]


def score_matrices(normalized: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per strategy, its normalized scores as rliable takes them: an array of seeds x
    workloads (the rows in seed order within each workload, the workloads alphabetical)."""
    out = {}
    for strategy, rows in normalized.groupby("strategy", sort=True):
        wide = rows.pivot(index="seed", columns="workload", values="normalized")
        ranked = {w: col.dropna().to_numpy(float) for w, col in wide.items()}
        out[strategy] = np.column_stack([ranked[w] for w in sorted(ranked)])
    return out


def stratified_bootstrap(scores: np.ndarray, reps: int = RESAMPLES,
                         confidence: float = CONFIDENCE, seed: int = RNG_SEED
                         ) -> tuple[float, float]:
    """The percentile interval of the IQM of ``scores`` (runs x tasks) over ``reps``
    stratified bootstrap resamples: runs redrawn with replacement within each task, the
    draws rliable's ``StratifiedBootstrap`` makes after ``np.random.seed(seed)``."""
    scores = np.asarray(scores, float)
    runs, tasks = scores.shape
    rng = np.random.RandomState(seed)
    columns = np.arange(tasks)
    values = []
    for start in range(0, reps, CHUNK):
        size = min(CHUNK, reps - start)
        rows = rng.choice(runs, (size, runs, tasks), replace=True)
        resampled = scores[rows, columns].reshape(size, -1)
        values.append(stats.trim_mean(resampled, 0.25, axis=1))
    alpha = (1.0 - confidence) / 2
    low, high = np.percentile(np.concatenate(values), [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def iqm_table(trials: pd.DataFrame, reference: str = REFERENCE,
              margin: float | Mapping[str, float] = MARGIN, reps: int = RESAMPLES,
              confidence: float = CONFIDENCE, seed: int = RNG_SEED) -> pd.DataFrame:
    """Per strategy, best first: ``iqm`` (rliable's ``aggregate_iqm`` of its normalized
    scores, :func:`normalized_scores`), ``low, high`` (its stratified bootstrap interval,
    :func:`stratified_bootstrap`), ``seeds`` (per workload) and ``workloads``. Every strategy's
    interval starts from the same ``seed``."""
    rows = []
    for strategy, matrix in score_matrices(normalized_scores(trials, reference, margin)).items():
        low, high = (stratified_bootstrap(matrix, reps, confidence, seed)
                     if matrix.size else (np.nan, np.nan))
        rows.append({"strategy": strategy, "iqm": float(metrics.aggregate_iqm(matrix)),
                     "low": low, "high": high, "seeds": matrix.shape[0],
                     "workloads": matrix.shape[1]})
    table = pd.DataFrame(rows, columns=IQM_COLUMNS)
    return table.sort_values(["iqm", "strategy"], ascending=[False, True], ignore_index=True)
