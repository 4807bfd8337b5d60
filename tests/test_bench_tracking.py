"""``bench/bench.py`` (b)'s noise control: whether a run resolves the tracking overhead,
judged from its own A/A control, and the line it prints either way."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import bench  # noqa: E402

QUIET_AA = [0.99, 1.01, 1.0, 0.995, 1.005, 1.0]  # an A/A control: true ratio 1
OURS = [1.02, 1.03, 1.025, 1.02, 1.03, 1.025]


def test_a_tight_aa_control_resolves_the_overhead_and_reads_the_goal():
    out = bench.tracking_resolution(QUIET_AA, OURS, flush_share=0.001)
    assert out["resolvable"] and out["noise"] < bench.TRACKING_MARGIN
    low, high = out["aa_ci95"]
    assert low < 1 < high and out["noise"] == pytest.approx(max(high - 1, 1 - low))
    assert out["overhead_ours_ci95"][0] > 1.02 and out["overhead_ours_ci95"][1] < 1.04
    assert out["goal_met"] is True


def test_one_noisy_repeat_of_the_aa_control_makes_the_run_unresolved():
    """The issue's case: one repeat of the A/A control read 1.53."""
    out = bench.tracking_resolution(QUIET_AA[:-1] + [1.53], OURS, flush_share=0.0)
    assert not out["resolvable"] and out["noise"] > bench.TRACKING_MARGIN
    assert out["goal_met"] is None


def test_a_biased_aa_control_is_no_resolution_however_tight():
    """An order effect: the A/A control reads 1.07 every time; its noise is its distance
    from 1, not its spread."""
    out = bench.tracking_resolution([1.07, 1.071, 1.069, 1.07], OURS[:4], flush_share=0.0)
    assert not out["resolvable"] and out["noise"] > 0.06


def test_one_repeat_gives_no_interval():
    out = bench.tracking_resolution([1.0], [1.02], flush_share=0.0)
    assert (out["resolvable"], out["noise"], out["aa_ci95"]) == (False, None, None)


def _results(aa, ours):
    return {"overhead_ours": 1.031, "headline_estimator": "ratio_of_medians",
            "overhead_ours_ratio_of_medians": 1.031, "overhead_ours_paired_median": 1.029,
            "overhead_mlflow_callback_every_step": 2.5, "repeats": len(aa),
            **bench.tracking_resolution(aa, ours, flush_share=0.0)}


def test_the_line_gives_the_figure_only_when_resolved():
    resolved = bench.SUMMARY_LINES["b_tracking"](_results(QUIET_AA, OURS))
    assert "1.031" in resolved and "too noisy" not in resolved
    noisy = bench.SUMMARY_LINES["b_tracking"](_results(QUIET_AA[:-1] + [1.53], OURS))
    assert "too noisy to resolve (b)" in noisy and "1.031" not in noisy
