"""The best group: the strategies the seeds cannot separate from the best.

Multiple comparisons with the best (MCB; Hsu 1984, "Constrained simultaneous confidence
intervals for multiple comparisons with the best", Annals of Statistics 12:1136; Hsu 1996,
*Multiple Comparisons: Theory and Methods*, ch. 4). Strategy ``i`` leaves the group when some
other strategy ``j`` beats it beyond doubt over the paired seeds:
``mean(x_j - x_i) > c * sd(x_j - x_i) / sqrt(n)``, with ``c`` the one-sided t critical value
at level ``alpha / (p - 1)`` for ``p`` strategies. The truly best strategy leaves only if one
of its ``p - 1`` one-sided comparisons errs, so by Bonferroni's inequality the group holds it
with probability at least ``1 - alpha``. Hsu's exact constant for equal variances is a
one-sided Dunnett quantile; paired differences each have their own variance, and the
Bonferroni bound on that quantile is valid for them (Hsu 1996, section 4.1.1 and the
unequal-variance remarks of ch. 4). In a group-sequential design ``c`` is the one-sided
boundary of :mod:`lrstudy.report.sequential` at the current look.

Ties: two strategies whose seeds never differ stay together; a strategy beaten on every seed
by the same amount (zero spread) is out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import lrstudy.report.sequential as sequential


def best_group(scores: pd.DataFrame, alpha: float,
               design: sequential.Design = sequential.Design()) -> pd.Series:
    """Membership of the best group per strategy (columns of ``scores``; seeds as rows,
    higher is better), over the seeds every strategy has. With fewer than 2 such seeds no
    strategy can be separated: all are in."""
    complete = scores.dropna()
    names = list(scores.columns)
    if len(names) < 2 or len(complete) < 2:
        return pd.Series(True, index=names)
    x = complete.to_numpy(float)
    n, p = x.shape
    c = sequential.critical_t(design, n, alpha / (p - 1), sides=1)
    return pd.Series(in_best_group(x[None], c)[0], index=names)


def in_best_group(x: np.ndarray, critical: float) -> np.ndarray:
    """Vectorized MCB: ``x`` is studies x seeds x strategies; returns studies x strategies,
    True where no other strategy beats it by more than ``critical`` standard errors."""
    d = x[:, :, None, :] - x[:, :, :, None]  # [.., i, j] = x_j - x_i per seed
    n = x.shape[1]
    mean = d.mean(axis=1)
    se = d.std(axis=1, ddof=1) / np.sqrt(n)
    beaten = mean > critical * se
    beaten &= ~np.eye(x.shape[2], dtype=bool)
    return ~beaten.any(axis=2)
