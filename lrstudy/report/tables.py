"""The benchmark table: one row per scenario, aggregated across seeds, and its readable form.

Trials whose ``diverged`` is True are counted per scenario and left out of every mean.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrstudy.report.stats import ALPHA, aggregate, welch_p

_TABLE_METRICS = {
    "val_accuracy": "final_val_accuracy",
    "val_loss": "final_val_loss",
    "test_accuracy": "test_accuracy",
    "test_loss": "test_loss",
}


def _per_scenario(trials: pd.DataFrame) -> pd.DataFrame:
    """Descriptive columns and counts per scenario (index: scenario)."""
    grouped = trials.groupby("scenario", sort=True)
    table = pd.DataFrame(index=grouped.size().index)
    for column in ("family", "optimizer", "schedule", "learning_rate", "baseline"):
        table[column] = grouped[column].first() if column in trials else np.nan
    table["seeds"] = grouped.size()
    table["diverged"] = grouped["diverged"].sum().astype(int)
    return table


def _seed_statistics(table: pd.DataFrame, ok: pd.DataFrame) -> pd.DataFrame:
    """Means (and t half-widths) over the non-diverged trials ``ok``, aligned on ``table``."""
    for name, column in _TABLE_METRICS.items():
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


def _baseline_columns(table: pd.DataFrame, ok: pd.DataFrame) -> pd.DataFrame:
    """Difference in mean test accuracy to the family baseline and Welch's p-value."""
    accuracy = {name: group["test_accuracy"].to_numpy(float)
                for name, group in ok.groupby("scenario")}
    means = dict(zip(table["scenario"], table["test_accuracy_mean"]))
    diff, p = [], []
    for scenario, baseline in zip(table["scenario"], table["baseline"]):
        if pd.isna(baseline) or baseline == scenario or baseline not in means:
            diff.append(np.nan)
            p.append(np.nan)
            continue
        diff.append(means[scenario] - means[baseline])
        p.append(welch_p(accuracy.get(scenario, ()), accuracy.get(baseline, ())))
    table["vs_baseline_test_accuracy"] = diff
    table["vs_baseline_p"] = p
    table["differs_from_baseline"] = table["vs_baseline_p"] < ALPHA
    return table


def benchmark_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per scenario, best mean test accuracy first.

    Trials whose ``diverged`` is True are counted (``diverged`` out of ``seeds``) and left out
    of every other column. Over the remaining seeds:

    * ``<m>_mean`` and ``<m>_ci`` for ``m`` in ``val_accuracy``, ``val_loss`` (last epoch),
      ``test_accuracy``, ``test_loss``: the mean and the half-width of the 95% t-interval,
      ``t.ppf(0.975, n - 1) * s / sqrt(n)`` (NaN with fewer than 2 seeds);
    * ``best_val_loss_mean`` and ``best_val_loss_epoch_mean`` (1-based epoch), means over seeds;
    * ``reached_target`` (seeds that reached the target validation accuracy) and, over those,
      ``epochs_to_target_mean`` and ``time_to_target_s_mean``; ``train_time_s_mean``;
    * ``rank`` (1 = best ``test_accuracy_mean``, ties share the lowest rank) overall and
      ``family_rank`` within the family; NaN when no seed has a test accuracy;
    * against the family baseline (the scenario named by the ``lrstudy.baseline`` tag):
      ``vs_baseline_test_accuracy`` = mean - baseline mean, ``vs_baseline_p`` the two-sided
      p-value of Welch's t-test on the per-seed test accuracies
      (``scipy.stats.ttest_ind(equal_var=False)``), and ``differs_from_baseline`` =
      ``vs_baseline_p < 0.05``: the difference is beyond seed-to-seed noise. NaN/False for the
      baseline itself, for scenarios without a baseline and with fewer than 2 seeds a side.
    """
    ok = trials[~trials["diverged"]]
    table = _seed_statistics(_per_scenario(trials), ok)
    table = table.rename_axis("scenario").reset_index()
    table["rank"] = table["test_accuracy_mean"].rank(ascending=False, method="min").astype("Int64")
    table["family_rank"] = (table.groupby("family")["test_accuracy_mean"]
                            .rank(ascending=False, method="min").astype("Int64"))
    table = _baseline_columns(table, ok)
    return table.sort_values(["rank", "scenario"], na_position="last", ignore_index=True)


def _pm(mean: float, half: float, digits: int = 4) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.{digits}f}" + ("" if pd.isna(half) else f" ± {half:.{digits}f}")


def _num(value, fmt: str = "{:.3g}") -> str:
    return "-" if pd.isna(value) else fmt.format(value)


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`benchmark_table` for reading: ``mean ± half-width`` strings, one row per scenario."""
    out = pd.DataFrame({
        "rank": table["rank"],
        "scenario": table["scenario"],
        "family": table["family"],
        "family rank": table["family_rank"],
        "optimizer": table["optimizer"],
        "schedule": table["schedule"],
        "initial LR": table["learning_rate"].map(_num),
        "diverged / seeds": [f"{d} / {s}" for d, s in zip(table["diverged"], table["seeds"])],
        "test accuracy": [_pm(m, h) for m, h in zip(table["test_accuracy_mean"],
                                                     table["test_accuracy_ci"])],
        "test loss": [_pm(m, h) for m, h in zip(table["test_loss_mean"], table["test_loss_ci"])],
        "val accuracy": [_pm(m, h) for m, h in zip(table["val_accuracy_mean"],
                                                    table["val_accuracy_ci"])],
        "val loss": [_pm(m, h) for m, h in zip(table["val_loss_mean"], table["val_loss_ci"])],
        "best val loss (epoch)": [
            "-" if pd.isna(v) else f"{v:.4f} ({e:.1f})"
            for v, e in zip(table["best_val_loss_mean"], table["best_val_loss_epoch_mean"])],
        "epochs to target (reached)": [
            f"{_num(e, '{:.1f}')} ({r}/{s - d})" for e, r, s, d in zip(
                table["epochs_to_target_mean"], table["reached_target"],
                table["seeds"], table["diverged"])],
        "time to target s": table["time_to_target_s_mean"].map(lambda v: _num(v, "{:.1f}")),
        "train time s": table["train_time_s_mean"].map(lambda v: _num(v, "{:.1f}")),
        "vs baseline": table["vs_baseline_test_accuracy"].map(lambda v: _num(v, "{:+.4f}")),
        "Welch p": table["vs_baseline_p"].map(_num),
        "beyond seed noise": table["differs_from_baseline"].map({True: "yes", False: ""}),
    })
    return out.set_index("rank")
