"""The figures across workloads (lrstudy.report.workload_figures) draw from the tables of the
statistics across workloads, and say so when there is nothing to draw."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import test_report_across_calibration as calibration_case
import test_report_across_tuning_budget as tuning_case
from across_trials import REGRESSION, finals, paired_scores

from lrstudy import report
from lrstudy.report import workload_figures


def _drawn(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def suite():
    rng = np.random.default_rng(4)
    scores = {w: paired_scores(rng, {"fixed-baseline": 0.88, "a": 0.89, "b": 0.87}, 6)
              for w in ("w1", "w2", "w3")}
    scores["w4"] = paired_scores(rng, {"fixed-baseline": 3.0, "a": 2.9, "b": 3.1}, 6, 0.02,
                                 0.02)
    return finals(scores, {"w4": REGRESSION})


def test_every_figure_draws(suite):
    profile = report.performance_profile(report.performance_ratios(suite))
    counts = report.win_tie_loss(report.pairwise_calls(suite, {"w4": 0.03}))
    iqm = report.iqm_table(suite, reps=500)
    curves = report.tuning_curves(tuning_case.planted_trials())
    trials, range_tests = calibration_case.planted()
    calibration = report.calibration_table(trials, range_tests)
    figures = {
        "profiles": report.plot_performance_profiles(profile),
        "iqm": report.plot_iqm(iqm),
        "win_tie_loss": report.plot_win_tie_loss(counts),
        "tuning_budget": report.plot_tuning_budget(curves),
        "calibration": report.plot_calibration(calibration),
    }
    for name, fig in figures.items():
        assert len(_drawn(fig)) > 1000, name
    # the heatmap's cells carry the counts
    texts = {t.get_text() for t in figures["win_tie_loss"].axes[0].texts}
    row = counts.iloc[0]
    assert any(t.startswith(f"{row['win']}/{row['tie']}/{row['loss']}") for t in texts)
    # one tuning panel per workload, each with a one-shot marker per strategy
    panels = [ax for ax in figures["tuning_budget"].axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["w1", "w2"]


@pytest.mark.parametrize("plot", ["plot_performance_profiles", "plot_iqm", "plot_win_tie_loss",
                                  "plot_tuning_budget", "plot_calibration"])
def test_an_empty_table_says_there_is_nothing(plot):
    fig = getattr(workload_figures, plot)(pd.DataFrame(columns=["strategy", "unit", "workload"]))
    assert any(t.get_text().startswith("no ") for ax in fig.axes for t in ax.texts)
    assert len(_drawn(fig)) > 0
