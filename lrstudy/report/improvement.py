"""P(improvement) over paired seeds, with an interval that does not collapse at small n.

rliable's probability of improvement (Agarwal et al. 2021, "Deep reinforcement learning at the
edge of the statistical precipice", NeurIPS) is ``P(X > Y)`` for a run of each method. With
common random numbers, seed ``i`` of the strategy and seed ``i`` of the reference are a pair,
so the paired estimate is the share of seeds on which the strategy beats the reference
(a tie counts a half): the sign test's proportion.

Its interval is Wilson's score interval (Wilson 1927, JASA 22:209;
``statsmodels.stats.proportion.proportion_confint(method="wilson")``), which Brown, Cai &
DasGupta (2001, Statistical Science 16:101) recommend for small n: at 10 wins of 10 it is
[0.72, 1.00], where a percentile bootstrap over the seeds collapses to [1.00, 1.00]. It is a
descriptive 95% interval per comparison; the calls come from the simultaneous intervals of the
difference (:mod:`lrstudy.report.simultaneous`).
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95


def probability_of_improvement(x, y, confidence: float = CONFIDENCE) -> tuple[float, float,
                                                                              float]:
    """``(share, low, high)``: the share of paired seeds with ``x > y`` (ties a half) and its
    Wilson interval. Pairs with a missing side are left out; none left: NaN."""
    from statsmodels.stats.proportion import proportion_confint

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    d = x[ok] - y[ok]
    if d.size == 0:
        return math.nan, math.nan, math.nan
    wins = float((d > 0).sum() + 0.5 * (d == 0).sum())
    low, high = proportion_confint(wins, d.size, alpha=1 - confidence, method="wilson")
    return wins / d.size, float(low), float(high)
