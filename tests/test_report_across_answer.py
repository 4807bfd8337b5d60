"""The answer across workloads (lrstudy.report.across) on planted frames: every
statistic computed once, and the words that open the report and the MLflow descriptions
name what the tables say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from across_trials import REGRESSION, finals, paired_scores

from lrstudy import report
from lrstudy.report import across as answer

REF = "fixed-baseline"


def planted() -> pd.DataFrame:
    """Three workloads, one a regression: ``good`` clearly better than the reference on each,
    ``bad`` clearly worse, ``same`` the reference's equal."""
    rng = np.random.default_rng(8)
    scores = {w: paired_scores(rng, {REF: 0.88, "good": 0.91, "bad": 0.84, "same": 0.88}, 8,
                               noise_sd=0.002) for w in ("w1", "w2")}
    scores["w3"] = paired_scores(rng, {REF: 3.0, "good": 2.7, "bad": 3.4, "same": 3.0}, 8,
                                 0.02, 0.02)
    return finals(scores, {"w3": REGRESSION})


@pytest.fixture(scope="module")
def across():
    return report.across_workloads(planted(), margin={"w1": 0.003, "w2": 0.003, "w3": 0.03})


def test_every_statistic_once_from_the_same_trials(across):
    trials = planted()
    margin = {"w1": 0.003, "w2": 0.003, "w3": 0.03}
    assert across.workloads == ("w1", "w2", "w3") and across.reference == REF
    pd.testing.assert_frame_equal(across.aggregate, report.iqm_table(trials, REF, margin))
    pd.testing.assert_frame_equal(across.ratios, report.performance_ratios(trials))
    pd.testing.assert_frame_equal(across.counts, report.win_tie_loss(
        report.pairwise_calls(trials, margin)))
    assert across.curves.empty and across.calibration.empty  # finals only
    assert set(across.tables()) == {"aggregate_score", "normalized_scores",
                                    "performance_ratios", "performance_profile",
                                    "pairwise_calls", "win_tie_loss", "tuning_curves",
                                    "best_by_budget", "calibration"}
    # no tuning, no range test: their figures are left out
    assert set(across.figures()) == {"aggregate_score", "performance_profiles", "win_tie_loss"}


def test_the_headline_names_what_the_tables_say(across):
    text = report.across_headline(across)
    top = across.aggregate.iloc[0]
    assert top.strategy == "good" and top.low > 0
    assert text.startswith("**Across 3 workloads: good** has the highest aggregate score, "
                           f"{top.iqm:.2f} [{top.low:.2f}, {top.high:.2f}]")
    assert "0 at the reference fixed-baseline's mean" in text
    assert "Ahead of the reference across workloads (interval above 0): good." in text
    assert "Behind it (interval below 0): bad." in text
    assert "Best on the most workloads: good (3 of 3; performance profile at tau = 1)." in text
    # good beats each of the 3 others on each of the 3 workloads
    assert "Most net pairwise wins: good (+9: 9 wins, 0 losses, 0 ties" in text
    assert "\n" not in text  # one line: what the MLflow UI shows folded


def test_one_workload_has_no_answer_across_and_a_missing_reference_says_so():
    trials = planted()
    assert report.across_workloads(trials[trials["scenario"].str.endswith("@w1")]) is None
    without = report.across_workloads(trials[~trials["scenario"].str.startswith(REF)])
    text = report.across_headline(without)
    assert text.startswith("**Across 3 workloads**: no strategy ran on every workload with "
                           "the reference fixed-baseline, so there is no aggregate score.")
    assert "Best on the most workloads: good (3 of 3" in text


def test_the_reference_may_be_named_on_a_workload():
    across = answer.across_workloads(planted(), reference=f"{REF}@w1")
    assert across.reference == REF and across.aggregate.iloc[0].strategy == "good"


def test_with_nothing_to_tell_apart_the_answer_says_so():
    """Identical strategies on every workload: the reference is (one of) the highest, and no
    strategy has more pairwise wins than losses."""
    rng = np.random.default_rng(2)
    scores = {w: paired_scores(rng, {REF: 0.88, "twin": 0.88}, 6, noise_sd=0.004)
              for w in ("w1", "w2")}
    across = report.across_workloads(finals(scores))
    text = report.across_headline(across)
    assert "No strategy is ahead of the reference across workloads" in text
    assert "Behind it" not in text
    if across.aggregate.iloc[0].strategy == REF:
        assert text.startswith("**Across 2 workloads: fixed-baseline (the reference)**")
    assert "No strategy has more pairwise wins than losses over the workloads (0 of 2 pairs " \
           "called a win or a loss" in text
