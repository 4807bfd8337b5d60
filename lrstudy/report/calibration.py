"""The LR range test calibrated across workloads: how far each rule's suggestion lands from
the tuned LR, and what taking it costs, workload by workload.

Smith's range test (2017, "Cyclical learning rates for training neural networks", WACV) and
its rules (valley, slide, minimum, steepest; fastai's ``lr_find``) suggest an LR from one short
sweep. A strategy fed by it runs its finals at its rule's median suggestion over the range
tests' seeds, beside its *tuned twin* (the same schedule with its LR tuned on the grid).
Per workload, :func:`lrstudy.report.tuning.finder_regret` gives each such strategy's regret
(its test score minus its twin's, paired by seed, with Bonferroni t-intervals over the
workload's range-test-fed strategies, so that a workload's intervals hold together) and the
ratio of its suggested LR to the tuned one. This module runs it on every workload and adds
the spread of that ratio over the range-test seeds: each seed's suggestion by the rule over
the tuned LR, from the range tests of the strategy's set-up (their tag ``finder_key`` is the
finals' param ``finder.key``; :func:`lrstudy.report.frames.load_range_tests`).

A ratio near 1 on every workload with a regret inside the margin says the rule can replace
tuning; a ratio that wanders by a decade between workloads says it cannot, whatever one
workload shows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrstudy.report.frames import phases
from lrstudy.report.stats import ALPHA
from lrstudy.report.tuning import finder_regret
from lrstudy.report.workloads import SEPARATOR, by_workload, split_scenario

COLUMNS = ["workload", "strategy", "scenario", "rule", "twin", "suggested_lr", "tuned_lr",
           "ratio", "ratio_low", "ratio_high", "range_tests", "seeds", "regret", "regret_low",
           "regret_high", "unit"]


def _twins_named(trials: pd.DataFrame, workload: str) -> pd.DataFrame:
    """``trials`` of one workload whose ``finder.twin`` names its twin by strategy alone
    (``fixed-baseline``) rewritten to the twin's scenario in the workload
    (``fixed-baseline@cnn``) where that scenario ran, so that :func:`frames.phases` and
    :func:`finder_regret` find it."""
    if "finder.twin" not in trials or not workload:
        return trials
    present = set(trials["scenario"])
    twin = trials["finder.twin"]

    def scenario_of(name):
        if isinstance(name, str) and name and SEPARATOR not in name:
            qualified = f"{name}{SEPARATOR}{workload}"
            return qualified if qualified in present else name
        return name

    return trials.assign(**{"finder.twin": twin.map(scenario_of)})


def _spread(finals: pd.DataFrame, range_tests: pd.DataFrame | None, scenario: str, rule: str,
            tuned: float) -> tuple[float, float, int]:
    """The lowest and highest ratio of one seed's suggestion by ``rule`` to the ``tuned``
    LR over the range tests of the set-up of ``scenario``, and how many there are."""
    column = f"suggestion_{rule}"
    if (range_tests is None or range_tests.empty or "finder.key" not in finals
            or "finder_key" not in range_tests or column not in range_tests
            or not tuned > 0):
        return np.nan, np.nan, 0
    keys = set(finals.loc[finals["scenario"] == scenario, "finder.key"].dropna())
    values = range_tests.loc[range_tests["finder_key"].isin(keys), column].astype(float)
    values = values[values > 0]
    if values.empty:
        return np.nan, np.nan, 0
    return float(values.min() / tuned), float(values.max() / tuned), int(values.size)


def calibration_table(trials: pd.DataFrame, range_tests: pd.DataFrame | None = None,
                      confidence: float = 1 - ALPHA) -> pd.DataFrame:
    """Per workload and range-test-fed strategy: :func:`finder_regret`'s ``scenario, rule,
    twin, suggested_lr, tuned_lr, ratio, seeds, regret, regret_low, regret_high`` (the
    regret in accuracy points, or the RMSE's change, negative a loss: ``unit``), with
    ``workload``, ``strategy`` and the ratio's spread over the range-test seeds,
    ``ratio_low, ratio_high, range_tests`` (from ``range_tests``; NaN and 0 without them)."""
    tables = []
    for workload, group in by_workload(trials):
        split = phases(_twins_named(group, workload))
        finals = pd.concat([split["ranked"], split["finder"]], ignore_index=True)
        table = finder_regret(finals, confidence)
        if table.empty:
            continue
        spread = [_spread(finals, range_tests, row.scenario, row.rule, row.tuned_lr)
                  for row in table.itertuples(index=False)]
        tables.append(table.assign(
            workload=workload, strategy=[split_scenario(s)[0] for s in table["scenario"]],
            ratio_low=[s[0] for s in spread], ratio_high=[s[1] for s in spread],
            range_tests=[s[2] for s in spread]))
    if not tables:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.concat(tables, ignore_index=True)[COLUMNS]
    return out.sort_values(["rule", "strategy", "workload"], ignore_index=True)
