"""Seeds needed: how many paired seeds would decide a comparison, at the level the call uses.

A two-sided paired t-test at the simultaneous procedure's per-comparison level ``alpha / k``
(:mod:`lrstudy.report.simultaneous`), power 0.8, solved for the number of seeds by
``statsmodels.stats.power.TTestPower`` (Cohen 1988, *Statistical Power Analysis*, ch. 2; the
noncentral t), for two effects:

* **the observed one**, ``|mean(d)|``: seeds to call this difference better or worse, if it is
  real;
* **the margin** ``m``: seeds to resolve a margin-sized difference (about what an interval
  needs to fit inside ``+-m`` when the true difference is near 0).

The spread is itself uncertain with few seeds: both counts use the upper one-sided 80%
chi-square confidence bound of the standard deviation of the differences,
``s * sqrt((n - 1) / chi2.ppf(0.2, n - 1))`` (the standard interval for a normal variance),
so they err on the side of more seeds (the planning convention of Browne 1995, "On the use of
a pilot sample for sample size determination", Statistics in Medicine 14:1933). In a
group-sequential design the last look needs a little more than the fixed design's count
(about 2% more for O'Brien-Fleming-type spending; Jennison & Turnbull 2000, table 2.3).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

POWER = 0.8
SD_CONFIDENCE = 0.8
MAX_SEEDS = 10_000  # beyond this the answer is "not with seeds"


def sd_upper(sd: float, n: int, confidence: float = SD_CONFIDENCE) -> float:
    """The upper one-sided ``confidence`` bound of a normal standard deviation estimated as
    ``sd`` from ``n`` values: ``sd * sqrt((n - 1) / chi2.ppf(1 - confidence, n - 1))``."""
    if n < 2 or not np.isfinite(sd):
        return math.nan
    return float(sd * math.sqrt((n - 1) / stats.chi2.ppf(1 - confidence, n - 1)))


def seeds_to_detect(effect: float, sd: float, alpha: float, power: float = POWER) -> float:
    """Seeds a two-sided paired t-test at ``alpha`` needs to detect ``effect`` with
    ``power`` when the differences have standard deviation ``sd`` (``TTestPower``), rounded
    up; 2 when ``sd`` is 0; inf when ``effect`` is 0 or the count passes :data:`MAX_SEEDS`."""
    from statsmodels.stats.power import TTestPower

    if not (np.isfinite(effect) and np.isfinite(sd)):
        return math.nan
    if sd == 0:
        return 2.0
    if effect == 0:
        return math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            n = float(np.squeeze(TTestPower().solve_power(
                effect_size=abs(effect) / sd, alpha=alpha, power=power,
                alternative="two-sided")))
        except Exception:  # no root below statsmodels' bound: very many seeds
            return math.inf
    if not np.isfinite(n) or n > MAX_SEEDS:
        return math.inf
    return float(max(2, math.ceil(n)))


def seeds_needed(differences, margin: float, alpha: float, power: float = POWER,
                 confidence: float = SD_CONFIDENCE) -> dict:
    """For paired ``differences``: ``sd`` and ``sd_upper`` (:func:`sd_upper`), and the seeds
    to detect the observed mean (``for_effect``) and the margin (``for_margin``) at
    ``alpha`` with ``power``, both from ``sd_upper``. NaN below 2 differences."""
    d = np.asarray(differences, float)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return {"sd": math.nan, "sd_upper": math.nan, "for_effect": math.nan,
                "for_margin": math.nan}
    sd = float(np.std(d, ddof=1))
    upper = sd_upper(sd, d.size, confidence)
    return {"sd": sd, "sd_upper": upper,
            "for_effect": seeds_to_detect(float(d.mean()), upper, alpha, power),
            "for_margin": seeds_to_detect(margin, upper, alpha, power)}
