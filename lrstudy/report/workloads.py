"""A study across workloads: the strategy and the workload of a trial, and each workload's
per-seed test scores.

A study that runs the fair protocol on several workloads (a model on its data, one budget
each) names each scenario ``"<strategy>@<workload>"`` (``warmup-cosine@cnn``; the reference
``fixed-baseline@cnn``). The statistics across workloads (:mod:`~lrstudy.report.profiles`,
:mod:`~lrstudy.report.aggregate_score`, :mod:`~lrstudy.report.pairwise`,
:mod:`~lrstudy.report.tuning_budget`, :mod:`~lrstudy.report.calibration`) take a trials frame
(:func:`lrstudy.report.frames.load_trials`) with the columns :func:`with_workloads` adds.
Strategies are compared within a workload only, as the verdict compares them within a budget;
what crosses workloads is a summary of the per-workload numbers.

Scores follow the verdict's rules (:func:`lrstudy.report.verdict.seed_scores`): each
workload's primary test metric, oriented so that higher is better (a regression's RMSE enters
as ``-rmse``), a diverged seed scored at chance accuracy or at the worst RMSE of its workload.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from lrstudy import tasks
from lrstudy.report.frames import phases, task_of
from lrstudy.report.verdict import MARGIN, budgets, seed_scores
from lrstudy.spec.study import budget_label

SEPARATOR = "@"
REFERENCE = "fixed-baseline"  # the suite's reference strategy, as the default study's


def split_scenario(name: str) -> tuple[str, str]:
    """``(strategy, workload)`` of a scenario name, split at its first ``@``; a name without
    ``@`` is a strategy of the one unnamed workload ``""``.

    >>> split_scenario("warmup-cosine@cnn")
    ('warmup-cosine', 'cnn')
    >>> split_scenario("fixed-baseline")
    ('fixed-baseline', '')
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Argument `name` must be a non-empty scenario name. Received: "
                         f"name={name!r}")
    strategy, _, workload = name.partition(SEPARATOR)
    if not strategy:
        raise ValueError(f"Argument `name` must name a strategy before {SEPARATOR!r}. "
                         f"Received: name={name!r}")
    return strategy, workload


def with_workloads(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` with the columns ``strategy`` and ``workload`` of each trial's scenario
    (:func:`split_scenario`); a frame that has both already is returned as it is."""
    if {"strategy", "workload"} <= set(trials.columns):
        return trials
    parts = [split_scenario(str(name)) for name in trials["scenario"]]
    return trials.assign(strategy=[p[0] for p in parts], workload=[p[1] for p in parts])


def by_workload(trials: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The trials split by workload, in the workloads' alphabetical order."""
    trials = with_workloads(trials)
    return [(str(w), group) for w, group in trials.groupby("workload", sort=True)]


def comparable(trials: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The trials split into groups that may be put side by side: by workload, then within a
    workload by budget (:func:`lrstudy.report.verdict.budgets`), so that every group has one
    task and one metric (a suite mixes classifications and a regression). Each group is
    labelled by its workload, by its budget too where one workload (or a study without
    workloads) has several, and ``""`` when there is only one group; in the workloads'
    alphabetical order, the largest budget first within one."""
    groups = [(workload, budget, rows) for workload, group in by_workload(trials)
              for budget, rows in budgets(group.drop(columns=["strategy", "workload"]))]
    several = {w for w, _, _ in groups if sum(g[0] == w for g in groups) > 1}
    if len(groups) == 1:
        return [("", groups[0][2])]
    return [(", ".join(filter(None, [w, budget_label(b) if w in several or not w else ""])),
             rows) for w, b, rows in groups]


def workload_tasks(trials: pd.DataFrame) -> dict[str, tasks.Task]:
    """Each workload's task (:func:`lrstudy.report.frames.task_of`): which metric it is
    scored on and in which direction."""
    return {w: task_of(group) for w, group in by_workload(trials)}


def final_scores(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per workload, its ranked finals (:func:`lrstudy.report.frames.phases`; the strategies
    fed by the range test are judged against their twins, not ranked) as seeds x strategies
    of oriented test scores (:func:`lrstudy.report.verdict.seed_scores`: higher is better, a
    diverged seed at chance or at the worst RMSE of the workload; NaN where a strategy lacks
    a seed). Workloads without ranked finals are left out."""
    out = {}
    for workload, group in by_workload(trials):
        ranked = with_workloads(phases(group)["ranked"])
        if ranked.empty:
            continue
        names = dict(zip(ranked["scenario"], ranked["strategy"]))
        scores = seed_scores(ranked).rename(columns=names)
        scores.columns.name = "strategy"
        out[workload] = scores
    return out


def margin_of(margin: float | Mapping[str, float], workload: str) -> float:
    """The practical-equivalence margin of ``workload``, in its oriented metric's units: one
    ``margin`` for every workload (the verdict's 0.003 by default: 0.3 accuracy points), or a
    mapping from workload to margin (a regression's RMSE has units of its own); a workload
    the mapping does not name gets the verdict's default."""
    if isinstance(margin, Mapping):
        return float(margin.get(workload, MARGIN))
    return float(margin)
