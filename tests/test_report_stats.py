"""Statistics across seeds (:mod:`lrstudy.report.stats`) against closed forms and scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lrstudy import report

T975_2 = stats.t.ppf(0.975, 2)


def test_mean_ci_closed_form():
    mean, half, n = report.mean_ci([0.80, 0.82, 0.84])
    assert n == 3
    assert mean == pytest.approx(0.82)
    assert half == pytest.approx(T975_2 * 0.02 / math.sqrt(3))
    assert report.t_interval([0.80, 0.82, 0.84]) == pytest.approx((0.82 - half, 0.82 + half))


def test_mean_ci_ignores_nan_and_needs_two_values():
    mean, half, n = report.mean_ci([0.5, float("nan")])
    assert (mean, n) == (0.5, 1) and math.isnan(half)
    mean, half, n = report.mean_ci([])
    assert n == 0 and math.isnan(mean) and math.isnan(half)


def test_aggregate_matches_mean_ci():
    frame = pd.DataFrame({"g": ["a", "a", "a", "b", "b"], "value": [0.80, 0.82, 0.84, 1.0, np.nan]})
    out = report.aggregate(frame, "g")
    a, b = out.iloc[0], out.iloc[1]
    assert (a["g"], a["n"], b["n"]) == ("a", 3, 1)
    assert a["mean"] == pytest.approx(0.82) and a["ci"] == pytest.approx(report.mean_ci(
        [0.80, 0.82, 0.84])[1])
    assert a["lo"] == pytest.approx(0.82 - a["ci"]) and math.isnan(b["ci"])
