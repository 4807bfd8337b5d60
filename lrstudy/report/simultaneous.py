"""Simultaneous intervals of the paired differences to the reference, and the calls they make.

With ``k`` strategies compared with one reference, each difference gets a Bonferroni
t-interval at level ``1 - alpha / k`` (Bonferroni; Dunn 1961, "Multiple comparisons among
means", JASA 56:52): ``mean(d) +- t * sd(d) / sqrt(n)`` over the ``n`` seeds both have, with
``t = t.ppf(1 - alpha / (2k), n - 1)`` in the fixed design, or in a group-sequential one the
repeated-confidence-interval critical value of :func:`lrstudy.report.sequential.critical_t`
at the same per-comparison level. All ``k`` intervals cover their true differences together
with probability at least ``1 - alpha`` (Bonferroni's inequality), whatever the correlation
between them.

Why Bonferroni and not max-t (Dunnett-type) intervals: the max-t critical value of paired
differences with a variance each needs their correlation matrix, which ten comparisons
estimated from ten seeds leave singular; Bonferroni needs none, and with ``k = 10`` its
critical value is within a few percent of max-t's.

**The call** reads the interval alone, with the practical-equivalence margin ``m``
(Benavoli et al. 2017, JMLR 18:77, region of practical equivalence): *equivalent* when it lies
inside ``(-m, +m)``, even if it also clears zero (a difference too small to matter); else
*better* or *worse* when it clears zero; else *undecided*. Because every call is read from
the same simultaneous intervals, the chance that any call is wrong is at most ``alpha``.
The adjusted p-value of the fixed design is the same procedure's: ``min(1, k p)``, below
``alpha`` exactly when the interval clears zero.
"""

from __future__ import annotations

import math

import numpy as np

import lrstudy.report.sequential as sequential

CALLS = ("better", "equivalent", "worse", "undecided")


def per_comparison_alpha(alpha: float, k: int) -> float:
    """Bonferroni's share of ``alpha`` for each of ``k`` comparisons."""
    return alpha / max(1, int(k))


def interval(differences, alpha: float, k: int,
             design: sequential.Design = sequential.Design()) -> dict:
    """The simultaneous interval of the mean of the paired ``differences`` (one of ``k``
    comparisons): ``n, diff, sd, se, critical, low, high``. Fewer than 2 differences: no
    interval (NaN bounds); differences that do not vary: a zero-width interval at their value.
    """
    d = np.asarray(differences, float)
    d = d[np.isfinite(d)]
    n = int(d.size)
    out = {"n": n, "diff": float(d.mean()) if n else math.nan, "sd": math.nan,
           "se": math.nan, "critical": math.nan, "low": math.nan, "high": math.nan}
    if n < 2:
        return out
    sd = float(np.std(d, ddof=1))
    critical = sequential.critical_t(design, n, per_comparison_alpha(alpha, k), sides=2)
    se = sd / math.sqrt(n)
    half = critical * se if sd > 0 else 0.0
    out.update(sd=sd, se=se, critical=critical, low=out["diff"] - half,
               high=out["diff"] + half)
    return out


def adjusted_p(differences, k: int) -> float:
    """The fixed design's Bonferroni-adjusted two-sided p-value ``min(1, k p)`` of the paired
    t-test (``scipy.stats.ttest_1samp`` of the differences against 0). NaN below 2
    differences; 1 or 0 for differences that do not vary (0 or not)."""
    from scipy import stats

    d = np.asarray(differences, float)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return math.nan
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 0.0
    return float(min(1.0, k * stats.ttest_1samp(d, 0.0).pvalue))


def call(low: float, high: float, margin: float) -> str:
    """better, worse, equivalent or undecided, from the interval alone (module docstring)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undecided"
    if -margin < low and high < margin:
        return "equivalent"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "undecided"


def calls(low, high, margin: float) -> np.ndarray:
    """:func:`call` over arrays of bounds (vectorized, for simulations)."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    out = np.full(np.broadcast(low, high).shape, "undecided", dtype=object)
    out[low > 0] = "better"
    out[high < 0] = "worse"
    out[(-margin < low) & (high < margin)] = "equivalent"
    return out
