"""The benchmark table: one row per scenario, aggregated across seeds, budget by budget, with
the paired comparison against the reference (:mod:`lrstudy.report.verdict`), and its readable
form; the tuning table and the range tests' calibration.

Diverged trials are counted per scenario; the test accuracy (what ranks) scores them at
chance, every other mean leaves them out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrstudy import tasks
from lrstudy.report.sequential import Design
from lrstudy.report.stats import aggregate
from lrstudy.report.verdict import MARGIN, verdicts
from lrstudy.report.workloads import SEPARATOR, split_scenario

_TABLE_METRICS = {
    "val_accuracy": "final_val_accuracy",
    "val_loss": "final_val_loss",
    "test_accuracy": "test_accuracy",
    "test_loss": "test_loss",
}
_REGRESSION_METRICS = {"val_rmse": "final_val_rmse", "val_loss": "final_val_loss",
                       "test_rmse": "test_rmse", "test_loss": "test_loss"}


def _per_scenario(trials: pd.DataFrame) -> pd.DataFrame:
    """Descriptive columns and counts per scenario (index: scenario)."""
    grouped = trials.groupby("scenario", sort=True)
    table = pd.DataFrame(index=grouped.size().index)
    for column in ("family", "optimizer", "schedule", "learning_rate", "peak_lr", "baseline"):
        table[column] = grouped[column].first() if column in trials else np.nan
    table["seeds"] = grouped.size()
    table["diverged"] = grouped["diverged"].sum().astype(int)
    return table


def _seed_statistics(table: pd.DataFrame, ok: pd.DataFrame,
                     task: tasks.Task = tasks.CLASSIFICATION) -> pd.DataFrame:
    """Means (and t half-widths) over the non-diverged trials ``ok``, aligned on ``table``."""
    metrics = _TABLE_METRICS if task.higher_is_better else _REGRESSION_METRICS
    for name, column in metrics.items():
        agg = aggregate(ok, "scenario", column).set_index("scenario")
        table[f"{name}_mean"] = agg["mean"]
        table[f"{name}_ci"] = agg["ci"]
    by_scenario = ok.groupby("scenario")
    for column in ("best_val_loss", "best_val_loss_epoch"):
        table[f"{column}_mean"] = by_scenario[column].mean()
    reached = ok[ok["epochs_to_target"].notna()].groupby("scenario")
    table["reached_target"] = reached.size().reindex(table.index, fill_value=0).astype(int)
    table["epochs_to_target_mean"] = reached["epochs_to_target"].mean()
    table["time_to_target_s_mean"] = reached["time_to_target_s"].mean()
    table["train_time_s_mean"] = by_scenario["train_time_s"].mean()
    return table


def _verdict_columns(table: pd.DataFrame, found: list[dict]) -> pd.DataFrame:
    """The paired comparison of :mod:`lrstudy.report.verdict` (``found``: its
    :func:`~lrstudy.report.verdict.verdicts`), budget by budget: the test accuracy with
    diverged seeds at chance, its rank within the budget, its membership of the best group, and
    against the budget's reference the difference, its simultaneous interval, the call it
    makes, P(improvement) and the seeds that would decide."""
    parts = []
    for v in found:
        compared = v["table"].copy()
        compared["budget"] = v["budget"]
        compared["reference"] = v["reference"] or ""
        compared["rank"] = np.arange(1, len(compared) + 1)
        parts.append(compared)
    compared = pd.concat(parts, ignore_index=True).rename(columns={"n_seeds": "scored_seeds"})
    m = _task(found).test_metric
    if _task(found).higher_is_better:
        mean, low, high = compared["mean"], compared["ci_low"], compared["ci_high"]
    else:  # the scores are -rmse: the RMSE itself, its interval the other way round
        mean, low, high = -compared["mean"], -compared["ci_high"], -compared["ci_low"]
    compared = compared.drop(columns=["mean", "ci_low", "ci_high"]).assign(
        **{f"{m}_mean": mean, f"{m}_low": low, f"{m}_high": high, f"{m}_ci": high - mean})
    table = table.drop(columns=[f"{m}_mean", f"{m}_ci"])
    return table.merge(compared, on="scenario", how="left")


def benchmark_table(trials: pd.DataFrame, reference: str | None = None,
                    margin: float = MARGIN, found: list[dict] | None = None,
                    design: Design = Design()) -> pd.DataFrame:
    """One row per scenario, budget by budget, best mean test accuracy first.

    * ``seeds`` and ``diverged`` (how many of them diverged);
    * ``test_accuracy_mean``, ``test_accuracy_ci`` (half-width), ``test_accuracy_low`` and
      ``_high``: over all its seeds, **a diverged seed at chance accuracy** (the rule of
      :mod:`lrstudy.report.verdict`), with the 95% t-interval
      ``t.ppf(0.975, n - 1) * s / sqrt(n)`` (NaN with fewer than 2 seeds);
    * over the seeds that did not diverge: ``<m>_mean`` and ``<m>_ci`` for ``val_accuracy``,
      ``val_loss`` (last epoch) and ``test_loss``; ``best_val_loss_mean``,
      ``best_val_loss_epoch_mean`` (1-based); ``reached_target`` (seeds that reached the
      target validation accuracy) and over those ``epochs_to_target_mean``,
      ``time_to_target_s_mean``; ``train_time_s_mean``;
    * ``budget`` (its label), ``rank`` within the budget (1 = best test accuracy),
      ``family_rank`` within the family, ``p_best``, ``best_group``;
    * against the budget's ``reference`` (``reference`` when it is in the budget, else the
      budget's most common family baseline): ``n_pairs``, ``diff``, ``diff_low``,
      ``diff_high`` (the simultaneous interval the call reads), ``critical``, ``p_adjusted``,
      ``call``, ``p_improvement``, ``poi_low``, ``poi_high``, ``sd_diff``,
      ``sd_diff_upper``, ``seeds_needed_effect`` and ``seeds_needed``, as
      :func:`lrstudy.report.verdict.compare` defines them.

    ``found`` (the :func:`~lrstudy.report.verdict.verdicts` of the same trials, reference,
    margin and ``design``) saves computing the comparisons a second time.
    """
    if found is None:
        found = verdicts(trials, reference, margin, design)
    by_task: dict[str, list[dict]] = {}
    for v in found:
        by_task.setdefault(v.get("task", tasks.CLASSIFICATION).name, []).append(v)
    if len(by_task) > 1:  # workloads of different tasks: each part in its own metric
        parts = []
        for part in by_task.values():
            names = set().union(*(set(v["table"]["scenario"]) for v in part))
            parts.append(benchmark_table(trials[trials["scenario"].isin(names)], reference,
                                         margin, part, design))
        return (pd.concat(parts, ignore_index=True)
                .sort_values(["budget", "rank"], ignore_index=True))
    ok = trials[~trials["diverged"]]
    task = _task(found)
    table = _seed_statistics(_per_scenario(trials), ok, task)
    table = table.rename_axis("scenario").reset_index()
    table = _verdict_columns(table, found)
    table["family_rank"] = (table.groupby(["budget", "family"])[f"{task.test_metric}_mean"]
                            .rank(ascending=not task.higher_is_better, method="min")
                            .astype("Int64"))
    table["task"] = task.name
    return table.sort_values(["budget", "rank"], ignore_index=True)


def _task(found: list[dict]) -> tasks.Task:
    """The task of the verdicts of one task (:func:`benchmark_table` splits the others)."""
    return found[0].get("task", tasks.CLASSIFICATION) if found else tasks.CLASSIFICATION


def task_rows(table: pd.DataFrame) -> list[tuple[tasks.Task, pd.DataFrame]]:
    """A :func:`benchmark_table` (or part of one) by task, each part with only its own
    metric's columns (``test_accuracy_*``, or ``test_rmse_*``): one part for a study of one
    task; a suite's classifications and regression apart."""
    if "task" not in table:
        regression = "test_accuracy_mean" not in table and "test_rmse_mean" in table
        return [(tasks.REGRESSION if regression else tasks.CLASSIFICATION, table)]
    out = []
    for name, rows in table.groupby("task", sort=False):
        other = "rmse" if name == tasks.CLASSIFICATION.name else "accuracy"
        out.append((tasks.get(name), rows.drop(columns=[
            c for c in rows if c.startswith((f"test_{other}_", f"val_{other}_"))])))
    return out


def _pm(mean: float, half: float, digits: int = 4) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.{digits}f}" + ("" if pd.isna(half) else f" ± {half:.{digits}f}")


def _num(value, fmt: str = "{:.3g}") -> str:
    return "-" if pd.isna(value) else fmt.format(value)


def _seeds(n) -> str:
    """A count of seeds: ``-`` unknown, ``>10000`` when no feasible count decides."""
    if pd.isna(n):
        return "-"
    return ">10000" if np.isinf(n) else f"{n:.0f}"


def _points(diff, low, high, task: tasks.Task = tasks.CLASSIFICATION) -> str:
    """A difference of accuracies in points, with its interval: ``+0.42 [+0.10, +0.74]``;
    of a lower-is-better metric (the oriented ``diff`` is ``-(x - y)``), in its own units."""
    if pd.isna(diff):
        return "-"
    if not task.higher_is_better:
        return f"{-diff:+.4g}" + ("" if pd.isna(low) else f" [{-high:+.4g}, {-low:+.4g}]")
    shown = f"{100 * diff:+.2f}"
    return shown + ("" if pd.isna(low) else f" [{100 * low:+.2f}, {100 * high:+.2f}]")


#: The columns of :func:`format_table` that name their metric, as one column where a suite
#: mixes tasks (each row in its own metric).
MIXED_NAMES = {"test accuracy": "test accuracy / RMSE", "test RMSE": "test accuracy / RMSE",
               "vs reference, points [simultaneous 95% CI]":
               "vs reference, points / RMSE [simultaneous 95% CI]",
               "vs reference, RMSE [simultaneous 95% CI]":
               "vs reference, points / RMSE [simultaneous 95% CI]",
               "val accuracy": "val accuracy / RMSE", "val RMSE": "val accuracy / RMSE"}


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`benchmark_table` for reading: one row per scenario, strings. Where the table
    mixes tasks (a suite's classifications and regression), each row is shown in its own
    metric (accuracy, or RMSE), under the columns of :data:`MIXED_NAMES`."""
    parts = task_rows(table)
    if len(parts) == 1:
        out = _format(parts[0][1], parts[0][0])
    else:
        out = pd.concat([_format(rows, task).set_axis(rows.index).rename(columns=MIXED_NAMES)
                         for task, rows in parts]).loc[table.index]
    if out["budget"].nunique() <= 1:
        out = out.drop(columns="budget")
    if table["p_adjusted"].isna().all():  # a group-sequential study: no such p-value
        out = out.drop(columns="adjusted p")
    return out.set_index("rank")


def _format(table: pd.DataFrame, task: tasks.Task) -> pd.DataFrame:
    """:func:`format_table` of the rows of one task."""
    reference = table["call"] == "reference"
    regression = not task.higher_is_better
    m, shown = task.primary, "accuracy" if not regression else "RMSE"
    out = pd.DataFrame({
        "budget": table["budget"],
        "rank": table["rank"],
        "scenario": table["scenario"],
        "family": table["family"],
        "optimizer": table["optimizer"],
        "schedule": table["schedule"],
        "peak LR": table["peak_lr"].fillna(table["learning_rate"]).map(_num),
        "diverged / seeds": [f"{d} / {s}" for d, s in zip(table["diverged"], table["seeds"])],
        f"test {shown}": [_pm(v, h) for v, h in zip(table[f"test_{m}_mean"],
                                                    table[f"test_{m}_ci"])],
        "best group": ["yes" if not pd.isna(b) and bool(b) else "" for b in table["best_group"]],
        "P(best)": table["p_best"].map(lambda v: _num(v, "{:.2f}")),
        f"vs reference, {'points' if not regression else 'RMSE'} [simultaneous 95% CI]": [
            "reference" if r else _points(d, lo, hi, task) for r, d, lo, hi in zip(
                reference, table["diff"], table["diff_low"], table["diff_high"])],
        "call": table["call"],
        "adjusted p": table["p_adjusted"].map(_num),
        "P(improvement) [95% Wilson]": [
            "-" if pd.isna(v) else f"{v:.2f}" + ("" if pd.isna(lo) else f" [{lo:.2f}, {hi:.2f}]")
            for v, lo, hi in zip(table["p_improvement"], table["poi_low"], table["poi_high"])],
        "seeds to decide (margin / effect)": [
            f"{_seeds(n)} / {_seeds(e)}" if c == "undecided" else "" for n, e, c in zip(
                table["seeds_needed"], table["seeds_needed_effect"], table["call"])],
        f"val {shown}": [_pm(v, h) for v, h in zip(table[f"val_{m}_mean"],
                                                   table[f"val_{m}_ci"])],
        "test loss": [_pm(m, h) for m, h in zip(table["test_loss_mean"], table["test_loss_ci"])],
        "epochs to target (reached)": [
            f"{_num(e, '{:.1f}')} ({r}/{s - d})" for e, r, s, d in zip(
                table["epochs_to_target_mean"], table["reached_target"],
                table["seeds"], table["diverged"])],
        "train time s": table["train_time_s_mean"].map(lambda v: _num(v, "{:.1f}")),
    })
    return out


#: :func:`format_table`'s columns in two parts, each narrow enough for a page (by the start
#: of their names, which say accuracy or RMSE): how each strategy compares, how it trained.
PARTS = {
    "comparison": ("budget", "scenario", "test accuracy", "test RMSE", "vs reference", "call",
                   "best group", "P(best)", "adjusted p", "P(improvement)", "seeds to decide"),
    "training": ("budget", "scenario", "family", "optimizer", "schedule", "peak LR",
                 "diverged / seeds", "val ", "test loss", "epochs to target", "train time s"),
}


def table_parts(shown: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """:func:`format_table` (``shown``) split into the column groups of :data:`PARTS`, each
    keeping the rank and the scenario, so that neither runs off a page."""
    return {part: shown[[c for start in starts for c in shown if c.startswith(start)]]
            for part, starts in PARTS.items()}


RULES = ("valley", "steepest", "minimum", "slide")


def finder_calibration(range_tests: pd.DataFrame) -> pd.DataFrame:
    """How each LR range test rule lands, per set-up (model, optimizer, momentum, data): its
    median suggestion over the range tests' seeds and their spread in decades. What taking a
    suggestion costs is :func:`lrstudy.report.tuning.finder_regret`. In a study with
    workloads (range tests of scenarios ``S@W``) each set-up's ``workload`` comes first: the
    same optimizer lands elsewhere on another model and data."""
    columns = ["optimizer", "rule", "seeds", "median_lr", "spread_decades"]
    named = "scenario" in range_tests and range_tests["scenario"].astype(str).str.contains(
        SEPARATOR, regex=False).any()
    columns = ["workload", *columns] if named else columns
    if range_tests.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (_, optimizer), tests in range_tests.groupby(["finder_key", "optimizer"], dropna=False):
        where = {"workload": split_scenario(str(tests["scenario"].iloc[0]))[1]} if named else {}
        for rule in RULES:
            values = tests[f"suggestion_{rule}"].dropna()
            values = values[values > 0]
            if values.empty:
                continue
            logs = np.log10(values.to_numpy(float))
            rows.append({**where, "optimizer": optimizer, "rule": rule, "seeds": len(values),
                         "median_lr": 10 ** float(np.median(logs)),
                         "spread_decades": float(logs.max() - logs.min())})
    return pd.DataFrame(rows, columns=columns)


def averaged_iterate(finals: pd.DataFrame) -> pd.DataFrame:
    """For the strategies scored at an averaged iterate (schedule-free: metrics at x, and
    ``test_accuracy_at_y`` at the sequence it trains on): the mean test accuracy at x and at y
    over their finals, side by side."""
    if "test_accuracy_at_y" not in finals:
        return pd.DataFrame(columns=["scenario", "seeds", "test_accuracy_at_x",
                                     "test_accuracy_at_y"])
    rows = finals[finals["test_accuracy_at_y"].notna()]
    return (rows.groupby("scenario", as_index=False)
            .agg(seeds=("test_accuracy", "size"), test_accuracy_at_x=("test_accuracy", "mean"),
                 test_accuracy_at_y=("test_accuracy_at_y", "mean")))
