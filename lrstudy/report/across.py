"""The answer across workloads, computed once: every statistic across workloads of a study
whose scenarios are ``<strategy>@<workload>`` (the aggregate score, the performance profiles,
the win / tie / loss counts, the tuning-budget curves, the range test's calibration), their
figures, and the answer in words that opens the report, the experiment's description and the
summary run's in MLflow (:func:`across_headline`).

The answer is read from those statistics and says which of them it reads:

* the strategy with the highest aggregate score (:mod:`lrstudy.report.aggregate_score`: the
  IQM of normalized final scores, 0 the reference, 1 each workload's best) with its stratified
  bootstrap 95% interval;
* the strategies whose interval lies above 0 (ahead of the reference across workloads) and
  below 0 (behind it);
* the strategy best on the most workloads (the performance profile at tau = 1,
  :mod:`lrstudy.report.profiles`);
* the strategy with the most net pairwise wins over the workloads
  (:mod:`lrstudy.report.pairwise`: wins minus losses, each called per workload with
  simultaneous intervals and the margin).

Nothing here is a new statistic: the words restate the tables, which carry the numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pandas as pd

from lrstudy.report.aggregate_score import iqm_table, normalized_scores
from lrstudy.report.calibration import calibration_table
from lrstudy.report.pairwise import pairwise_calls, win_tie_loss
from lrstudy.report.profiles import performance_profile, performance_ratios
from lrstudy.report.tuning_budget import best_by_budget, tuning_curves
from lrstudy.report.verdict import MARGIN
from lrstudy.report.workload_figures import (
    plot_calibration,
    plot_iqm,
    plot_performance_profiles,
    plot_tuning_budget,
    plot_win_tie_loss,
)
from lrstudy.report.workloads import REFERENCE, by_workload, final_scores, split_scenario


@dataclasses.dataclass(frozen=True)
class Across:
    """The statistics across the workloads of one study (:func:`across_workloads`)."""

    workloads: tuple[str, ...]
    reference: str
    aggregate: pd.DataFrame    # aggregate_score.iqm_table
    normalized: pd.DataFrame   # aggregate_score.normalized_scores (what the IQM is of)
    ratios: pd.DataFrame       # profiles.performance_ratios
    profile: pd.DataFrame      # profiles.performance_profile
    calls: pd.DataFrame        # pairwise.pairwise_calls
    counts: pd.DataFrame       # pairwise.win_tie_loss
    curves: pd.DataFrame       # tuning_budget.tuning_curves
    best_by_budget: pd.DataFrame  # tuning_budget.best_by_budget
    calibration: pd.DataFrame  # calibration.calibration_table

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables by the name of the file each is kept in (without its suffix)."""
        return {"aggregate_score": self.aggregate, "normalized_scores": self.normalized,
                "performance_ratios": self.ratios,
                "performance_profile": self.profile, "pairwise_calls": self.calls,
                "win_tie_loss": self.counts, "tuning_curves": self.curves,
                "best_by_budget": self.best_by_budget.reset_index(),
                "calibration": self.calibration}

    def figures(self) -> dict:
        """The figures by the name of the file each is kept in (without its suffix); the
        tuning budget and the calibration only where the study has tuning or range-test-fed
        strategies."""
        out = {"aggregate_score": plot_iqm(self.aggregate),
               "performance_profiles": plot_performance_profiles(self.profile),
               "win_tie_loss": plot_win_tie_loss(self.counts)}
        if not self.curves.empty:
            out["tuning_budget"] = plot_tuning_budget(self.curves)
        if not self.calibration.empty:
            out["calibration"] = plot_calibration(self.calibration)
        return out


def has_workloads(trials: pd.DataFrame) -> bool:
    """Whether ``trials`` span several workloads (scenarios named ``S@W``)."""
    return len(by_workload(trials)) > 1


def across_workloads(trials: pd.DataFrame, range_tests: pd.DataFrame | None = None,
                     reference: str | None = REFERENCE,
                     margin: float | Mapping[str, float] = MARGIN) -> Across | None:
    """Every statistic across the workloads of ``trials`` (a study's trials, all phases:
    the finals rank, the tuning gives the curves), with ``reference`` the reference strategy
    (its name without ``@workload``; default :data:`lrstudy.report.workloads.REFERENCE`) and
    ``margin`` the practical-equivalence margin (one, or one per workload); ``range_tests``
    (:func:`lrstudy.report.frames.load_range_tests`) give the calibration's spread. None when
    the trials have one workload only."""
    if not has_workloads(trials):
        return None
    reference = split_scenario(reference)[0] if reference else REFERENCE
    finals = final_scores(trials)
    ratios = performance_ratios(trials)
    calls = pairwise_calls(trials, margin)
    curves = tuning_curves(trials)
    best = (best_by_budget(curves, reference=reference, margin=margin) if not curves.empty
            else pd.DataFrame())
    return Across(workloads=tuple(finals), reference=reference,
                  aggregate=iqm_table(trials, reference, margin),
                  normalized=normalized_scores(trials, reference, margin), ratios=ratios,
                  profile=performance_profile(ratios), calls=calls,
                  counts=win_tie_loss(calls), curves=curves, best_by_budget=best,
                  calibration=calibration_table(trials, range_tests))


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _interval(row) -> str:
    if not (np.isfinite(row.low) and np.isfinite(row.high)):
        return f"{row.iqm:.2f}"
    return f"{row.iqm:.2f} [{row.low:.2f}, {row.high:.2f}]"


def best_on_most(across: Across) -> tuple[list[str], int]:
    """The strategies best on the most workloads (the performance profile at tau = 1; ties
    count for each tied strategy), and on how many."""
    at_one = performance_profile(across.ratios, taus=[1.0]) if not across.ratios.empty \
        else pd.DataFrame(columns=["strategy", "share"])
    if at_one.empty:
        return [], 0
    count = (at_one.set_index("strategy")["share"] * len(across.workloads)).round().astype(int)
    top = int(count.max())
    return sorted(count[count == top].index), top


def net_wins(across: Across) -> pd.DataFrame:
    """Per strategy, its wins, losses and ``net`` (wins minus losses) summed over the other
    strategies and the workloads (:func:`lrstudy.report.pairwise.win_tie_loss`), most net
    wins first."""
    if across.counts.empty:
        return pd.DataFrame(columns=["strategy", "win", "tie", "loss", "undecided", "net"])
    totals = across.counts.groupby("strategy")[["win", "tie", "loss", "undecided", "net"]].sum()
    return (totals.reset_index()
            .sort_values(["net", "strategy"], ascending=[False, True], ignore_index=True))


def across_headline(across: Across) -> str:
    """The answer across workloads in one paragraph of Markdown (module docstring): what
    opens the report and the descriptions in MLflow, whose first line the UI shows."""
    n = len(across.workloads)
    ref = across.reference
    table = across.aggregate
    if table.empty:
        words = [f"**Across {n} workloads**: no strategy ran on every workload with the "
                 f"reference {ref}, so there is no aggregate score."]
    else:
        top = table.iloc[0]
        seeds = int(table["seeds"].min())
        name = f"{top.strategy} (the reference)" if top.strategy == ref else top.strategy
        words = [f"**Across {n} workloads: {name}** has the highest aggregate score, "
                 f"{_interval(top)} (each final seed's test score normalized per workload, 0 "
                 f"at the reference {ref}'s mean, 1 at the workload's best strategy's; "
                 f"interquartile mean over {seeds} seeds x {int(top.workloads)} workloads, "
                 "stratified bootstrap 95% interval)."]
        others = table[table["strategy"] != ref]
        ahead = others.loc[others["low"] > 0, "strategy"].tolist()
        behind = others.loc[others["high"] < 0, "strategy"].tolist()
        words.append(f"Ahead of the reference across workloads (interval above 0): "
                     f"{_names(ahead)}." if ahead else
                     "No strategy is ahead of the reference across workloads (no interval "
                     "above 0).")
        if behind:
            words.append(f"Behind it (interval below 0): {_names(behind)}.")
    best, count = best_on_most(across)
    if best:
        words.append(f"Best on the most workloads: {_names(best)} ({count} of {n}; "
                     "performance profile at tau = 1).")
    wins = net_wins(across)
    if not wins.empty and wins["net"].iloc[0] <= 0:
        pairs = across.calls[across.calls["strategy"] < across.calls["other"]]
        decided = int(pairs["outcome"].isin(["win", "loss"]).sum())
        words.append(f"No strategy has more pairwise wins than losses over the workloads "
                     f"({decided} of {len(pairs)} pairs called a win or a loss, each per "
                     "workload with simultaneous 95% intervals and the margin).")
    elif not wins.empty:
        lead = wins.iloc[0]
        tied = wins.loc[wins["net"] == lead.net, "strategy"].tolist()
        counts = (f"{int(lead.net):+d}: {int(lead.win)} wins, {int(lead.loss)} losses, "
                  f"{int(lead.tie)} ties" if len(tied) == 1 else f"{int(lead.net):+d} each")
        words.append(f"Most net pairwise wins: {_names(tied)} ({counts} against the other "
                     "strategies over the workloads, each pair called per workload with "
                     "simultaneous 95% intervals and the margin).")
    return " ".join(words)
