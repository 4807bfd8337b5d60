"""The plain answer that opens the report (:func:`lrstudy.report.verdict.recommendation`): which
strategy to use, read from the verdict's best group and calls; and the verdict split into its
opening sentence and the rest, which the report and the MLflow UI show apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from report_store import store  # noqa: F401 (fixture)

from lrstudy import report

pytestmark = pytest.mark.xdist_group("report")
SEEDS = 8
NOISE = np.random.default_rng(0).normal(0, 0.002, SEEDS)  # shared by every strategy: paired


def trials(means: dict[str, float], noise: dict[str, float] | None = None,
           epochs: int = 2) -> pd.DataFrame:
    """``SEEDS`` seeds per strategy at ``means`` (+ a seed effect every strategy shares, and
    for the names in ``noise`` a spread of their own of that size); ``a`` is the reference."""
    rows = []
    for i, (name, mean) in enumerate(means.items()):
        own = np.random.default_rng(i + 1).normal(0, (noise or {}).get(name, 0.0), SEEDS)
        rows += [{"scenario": name, "seed": s, "diverged": False, "baseline": "a",
                  "test_accuracy": mean + NOISE[s] + own[s], "model": "m", "dataset": "d",
                  "train_size": 100, "batch_size": 10, "epochs": epochs} for s in range(SEEDS)]
    return pd.DataFrame(rows)


def test_a_clear_winner_is_named_with_its_difference():
    found = report.verdicts(trials({"a": 0.88, "b": 0.89, "c": 0.87}), "a")
    line = report.recommendation(found)
    assert line.startswith("**Use b**: +1.00 points [")
    assert line.endswith("against the reference a, and ahead of every other strategy.")


def test_strategies_the_seeds_cannot_tell_apart_are_named_together():
    found = report.verdicts(trials({"a": 0.88, "b": 0.89, "c": 0.889}, {"c": 0.008}), "a")
    assert report.recommendation(found) == (
        "**Use any of b and c**: the seeds cannot tell them apart; b beats the reference a.")


def test_the_reference_is_kept_when_nothing_matches_it():
    found = report.verdicts(trials({"a": 0.89, "b": 0.87}), "a")
    assert report.recommendation(found) == (
        "**Keep a** (the reference): no other strategy matches it.")


def test_a_strategy_shown_worse_is_never_recommended(store):
    """The synthetic store's best group, read on the one seed every strategy has, holds all
    four; the two shown worse than the reference on their own pairs are left out."""
    found = report.verdicts(store["trials"])
    assert set(found[0]["table"].loc[found[0]["table"]["best_group"], "scenario"]) == {
        "warmup-linear", "fixed-baseline", "fixed-large", "fixed-too-large"}
    assert report.recommendation(found) == (
        "**Use any of warmup-linear and fixed-baseline (the reference)**: the seeds cannot "
        "tell them apart.")


def test_each_budget_gets_its_own_line_and_the_verdict_splits_after_its_opening():
    both = pd.concat([trials({"a": 0.88, "b": 0.89}), trials({"a": 0.89, "b": 0.87}, epochs=4)])
    found = report.verdicts(both, "a")
    lines = report.recommendation(found).split("\n\n")
    assert len(lines) == 2
    assert lines[0].startswith("m on d (100 train), batch 10, 2 epochs: **Use b**")
    assert lines[1].startswith("m on d (100 train), batch 10, 4 epochs: **Keep a**")
    for v in found:
        assert v["text"] == f"{v['headline']} {v['details']}"
        assert v["headline"].startswith("Best: ") and v["headline"].endswith("95%).")
    assert report.verdict_headline(found).count("**m on d") == 2
