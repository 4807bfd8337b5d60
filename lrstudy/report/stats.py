"""Statistics across seeds: means with t-intervals (from scipy.stats); the paired comparisons
are in :mod:`lrstudy.report.verdict`.

Non-finite values (a diverged seed's missing test accuracy) are left out of every number.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05


def _finite(values) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def _t_quantile(confidence: float, dof):
    """The two-sided t critical value: ``t.ppf((1 + confidence) / 2, dof)``."""
    return stats.t.ppf((1 + confidence) / 2, dof)


def mean_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float, int]:
    """Mean, half-width of the t confidence interval, and count of the finite ``values``.

    ``half = t.ppf((1 + confidence) / 2, n - 1) * s / sqrt(n)`` with ``s`` the sample
    standard deviation (ddof=1), i.e. ``scipy.stats.sem``. Fewer than 2 values: the
    half-width is NaN.
    """
    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, n
    return mean, float(_t_quantile(confidence, n - 1) * stats.sem(x)), n


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """``(mean - half, mean + half)`` of :func:`mean_ci`: seaborn's ``errorbar`` callable."""
    mean, half, _ = mean_ci(values, confidence)
    return mean - half, mean + half


def aggregate(frame: pd.DataFrame, by, value: str = "value",
              confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per group of ``by``: ``mean``, ``ci`` (t half-width as in :func:`mean_ci`), ``n``,
    ``lo = mean - ci`` and ``hi = mean + ci`` of the finite values of ``value``.

    Vectorized: the same numbers as :func:`mean_ci` per group, for thousands of groups at once.
    """
    by = [by] if isinstance(by, str) else list(by)
    finite = frame[np.isfinite(frame[value].to_numpy(dtype=float))]
    grouped = finite.groupby(by, sort=True)[value]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    n = out["n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = _t_quantile(confidence, np.where(n >= 2, n - 1, np.nan))
        out["ci"] = np.where(n >= 2, t * out["std"].to_numpy(dtype=float) / np.sqrt(n), np.nan)
    out["lo"] = out["mean"] - out["ci"]
    out["hi"] = out["mean"] + out["ci"]
    return out.drop(columns="std")
