"""Win / tie / loss counts of strategy pairs across workloads.

On each workload, every pair of strategies (A, B) is compared as the verdict compares a
strategy with the reference (:mod:`lrstudy.report.simultaneous`): the mean of the per-seed
differences ``A - B`` of the oriented test score over the seeds both have (paired: seed ``i``
gave both the same initial weights and batch order), with a simultaneous interval at
family-wise 95% over all ``k = S (S - 1) / 2`` pairs of the workload's ``S`` strategies
(Bonferroni t-intervals, Dunn 1961), read with the workload's margin of practical equivalence
``m``: *tie* when the interval lies inside ``(-m, +m)`` (equivalent, even if it clears
zero), else *win* or *loss* when it clears zero, else *undecided*. A tie is a shown
equivalence, not a failure to separate: undecided counts apart.

The matrix counts, for each ordered pair, the workloads with each outcome; its cell (A, B)
mirrors (B, A). Within one workload, the chance of any false win or loss among all pairs is
at most 5%, so a cell's false wins over ``W`` workloads number at most ``0.05 W / k`` on
average (``tests/test_report_across_win_tie_loss.py`` simulates it). Demšar (2006, JMLR 7:1)
counts wins and losses across data sets the same way, with a sign test on the counts; here
each workload's call carries its own interval and margin instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd

import lrstudy.report.simultaneous as simultaneous
from lrstudy.report.sequential import Design
from lrstudy.report.stats import CONFIDENCE
from lrstudy.report.verdict import MARGIN
from lrstudy.report.workloads import final_scores, margin_of

OUTCOMES = ("win", "tie", "loss", "undecided")
#: A call of A against B (:func:`lrstudy.report.simultaneous.call`) as A's outcome.
OUTCOME_OF_CALL = {"better": "win", "equivalent": "tie", "worse": "loss",
                   "undecided": "undecided"}
MIRROR = {"win": "loss", "tie": "tie", "loss": "win", "undecided": "undecided"}
CALL_COLUMNS = ["workload", "strategy", "other", "n", "diff", "low", "high", "critical",
                "outcome"]


def workload_calls(scores: pd.DataFrame, margin: float, confidence: float = CONFIDENCE,
                   design: Design = Design()) -> pd.DataFrame:
    """Every ordered pair of one workload's strategies (columns of ``scores``, seeds as rows):
    ``strategy, other, n`` (paired seeds), ``diff`` (mean of ``strategy - other``), ``low,
    high`` (its simultaneous interval over the workload's pairs), ``critical`` (the t
    multiplier), ``outcome`` (module docstring). Each unordered pair is computed once and
    mirrored."""
    alpha = 1 - confidence
    pairs = list(itertools.combinations(sorted(scores.columns), 2))
    diffs = {}
    for a, b in pairs:
        both = scores[[a, b]].dropna()
        diffs[a, b] = (both[a] - both[b]).to_numpy(float)
    k = sum(d.size >= 2 for d in diffs.values())  # the comparisons with an interval
    rows = []
    for (a, b), d in diffs.items():
        found = simultaneous.interval(d, alpha, k, design)
        outcome = OUTCOME_OF_CALL[simultaneous.call(found["low"], found["high"], margin)]
        rows.append({"strategy": a, "other": b, "n": found["n"], "diff": found["diff"],
                     "low": found["low"], "high": found["high"],
                     "critical": found["critical"], "outcome": outcome})
        rows.append({"strategy": b, "other": a, "n": found["n"], "diff": -found["diff"],
                     "low": -found["high"], "high": -found["low"],
                     "critical": found["critical"], "outcome": MIRROR[outcome]})
    return pd.DataFrame(rows, columns=CALL_COLUMNS[1:])


def pairwise_calls(trials: pd.DataFrame, margin: float | Mapping[str, float] = MARGIN,
                   confidence: float = CONFIDENCE, design: Design = Design()) -> pd.DataFrame:
    """:func:`workload_calls` of every workload's ranked finals
    (:func:`lrstudy.report.workloads.final_scores`), with a ``workload`` column; ``margin``
    one for all workloads or one per workload (:func:`lrstudy.report.workloads.margin_of`)."""
    found = [workload_calls(scores, margin_of(margin, w), confidence, design).assign(workload=w)
             for w, scores in final_scores(trials).items()]
    if not found:
        return pd.DataFrame(columns=CALL_COLUMNS)
    return pd.concat(found, ignore_index=True)[CALL_COLUMNS]


def win_tie_loss(calls: pd.DataFrame) -> pd.DataFrame:
    """The counts of :func:`pairwise_calls`: one row per ordered pair ``strategy, other``
    with ``win, tie, loss, undecided`` (workloads with each outcome of ``strategy`` against
    ``other``), ``workloads`` (their sum: the workloads both ran on) and ``net``
    (``win - loss``)."""
    columns = ["strategy", "other", *OUTCOMES, "workloads", "net"]
    if calls.empty:
        return pd.DataFrame(columns=columns)
    counts = (calls.groupby(["strategy", "other"])["outcome"].value_counts()
              .unstack(fill_value=0).reindex(columns=list(OUTCOMES), fill_value=0)
              .reset_index())
    counts["workloads"] = counts[list(OUTCOMES)].sum(axis=1)
    counts["net"] = counts["win"] - counts["loss"]
    return counts[columns].astype({c: int for c in (*OUTCOMES, "workloads", "net")}
                                  ).reset_index(drop=True)


def net_matrix(counts: pd.DataFrame) -> pd.DataFrame:
    """Strategies x strategies of ``win - loss`` (:func:`win_tie_loss`), rows ordered by their
    total net wins (best first), columns in the same order; the diagonal NaN."""
    if counts.empty:
        return pd.DataFrame(dtype=float)
    wide = counts.pivot(index="strategy", columns="other", values="net")
    names = sorted(set(wide.index) | set(wide.columns))
    order = wide.reindex(index=names).sum(axis=1).sort_values(ascending=False, kind="stable")
    values = wide.reindex(index=order.index, columns=order.index).to_numpy(float, copy=True)
    np.fill_diagonal(values, np.nan)
    return pd.DataFrame(values, index=order.index, columns=order.index)
