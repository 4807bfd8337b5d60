"""The summary's figures. Each ``plot_*`` returns one :class:`matplotlib.figure.Figure` drawn
with seaborn; figures are not registered with pyplot, so a notebook shows each one once.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lrstudy.report.frames import BUDGET_COLUMNS, SUGGESTION_KEYS, task_of
from lrstudy.report.stats import aggregate
from lrstudy.report.tables import task_rows
from lrstudy.report.verdict import chance
from lrstudy.report.workloads import comparable
from lrstudy.spec.study import FAMILIES, budget_label
from lrstudy.tracking.schema import Metric


def _families(trials: pd.DataFrame) -> list[str]:
    """The families (or panels, see :func:`_by_budget`) present, in the catalogue's order."""
    present = set(trials["family"].dropna())
    rank = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(present, key=lambda f: (rank.get(f.split(" @ ")[0], len(rank)), f))


def _by_budget(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` with ``family`` made a panel name: the family, and where one family ran at
    several budgets (``seeds-original``) the budget too, so that no panel puts curves of
    different budgets side by side."""
    columns = [c for c in BUDGET_COLUMNS if c in trials]
    if not columns or trials.empty:
        return trials
    labels = trials[columns].apply(lambda row: budget_label(row.to_dict()), axis=1)
    several = labels.groupby(trials["family"]).transform("nunique") > 1
    return trials.assign(family=trials["family"].where(~several,
                                                       trials["family"] + " @ " + labels))


def _palette(names) -> dict:
    names = list(names)
    colors = sns.color_palette("deep" if len(names) <= 10 else "husl", n_colors=max(1, len(names)))
    return dict(zip(names, colors))


def _diverged_label(scenario: str, diverged: int, seeds: int) -> str:
    return scenario if not diverged else f"{scenario} ({diverged}/{seeds} diverged)"


def _scenario_counts(trials: pd.DataFrame) -> pd.DataFrame:
    return trials.groupby("scenario").agg(seeds=("run_id", "size"), diverged=("diverged", "sum"))


def _grid(n: int, ncols: int, width: float, height: float):
    """A figure of ``n`` axes in rows of ``ncols``; space for titles, labels and legends."""
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(width * ncols, height * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False,
                        gridspec_kw={"hspace": 0.5, "wspace": 0.3}).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_family_curves(trials: pd.DataFrame, histories: pd.DataFrame, keys=None) -> Figure:
    """Per family (rows; one per budget where a family ran at several) and metric (columns):
    each scenario's curve over the 1-based epoch. ``keys``: the metrics, by default the
    validation loss and each row's own task's validation metric (``val_accuracy``, or a
    regression's ``val_rmse``: a suite mixes them).

    Solid line: the mean across non-diverged seeds, with the 95% t-interval as a band
    (:func:`aggregate`). Dotted lines with crosses: diverged trials, one line each, up to their
    last finite value.
    """
    trials = _by_budget(trials)
    families = _families(trials)
    row_keys = {family: list(keys) if keys is not None else
                ["val_loss", task_of(trials[trials["family"] == family]).val_metric]
                for family in families}
    shown = {key for found in row_keys.values() for key in found}
    info = trials[["run_id", "scenario", "family", "diverged"]]
    data = histories[histories["key"].isin(shown)].merge(info, on="run_id")
    data = data.assign(epoch=data["step"] + 1)
    bands = aggregate(data[~data["diverged"]], ["family", "key", "scenario", "epoch"])
    counts = _scenario_counts(trials)
    columns = max([len(found) for found in row_keys.values()], default=1)
    fig = Figure(figsize=(5.5 * columns, 3.3 * len(families)))
    axes = fig.subplots(max(1, len(families)), columns, squeeze=False,
                        gridspec_kw={"hspace": 0.5, "wspace": 0.25})
    for row, family in enumerate(families):
        scenarios = sorted(trials.loc[trials["family"] == family, "scenario"].unique())
        palette = _palette(scenarios)
        for col, key in enumerate(row_keys[family]):
            ax = axes[row, col]
            band = bands[(bands["family"] == family) & (bands["key"] == key)]
            bad = data[(data["family"] == family) & (data["key"] == key) & data["diverged"]]
            if not band.empty:
                sns.lineplot(data=band, x="epoch", y="mean", hue="scenario", palette=palette,
                             estimator=None, legend=False, ax=ax)
                for scenario, part in band.groupby("scenario"):
                    ax.fill_between(part["epoch"], part["lo"], part["hi"],
                                    color=palette[scenario], alpha=0.2, linewidth=0)
            if not bad.empty:
                sns.lineplot(data=bad, x="epoch", y="value", hue="scenario", units="run_id",
                             estimator=None, palette=palette, legend=False, ax=ax,
                             linestyle=":", linewidth=1, marker="x")
            if band.empty and bad.empty:
                _empty(ax, f"no {key} logged")
            ax.set(title=f"{family}: {key}", xlabel="epoch", ylabel=key)
        handles = [Line2D([], [], color=palette[s],
                          linestyle=":" if counts.loc[s, "diverged"] == counts.loc[s, "seeds"]
                          else "-",
                          label=_diverged_label(s, counts.loc[s, "diverged"],
                                                counts.loc[s, "seeds"]))
                   for s in scenarios]
        axes[row, -1].legend(handles=handles, fontsize="small", loc="center left",
                             bbox_to_anchor=(1.02, 0.5))
    return fig


def _thin(frame: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """Every k-th point of each run (and its last), at most about ``max_points`` per run."""
    size = frame.groupby("run_id")["step"].transform("size")
    position = frame.groupby("run_id").cumcount()
    stride = np.ceil(size / max_points).clip(lower=1)
    return frame[(position % stride == 0) | (position == size - 1)]


def plot_lr_curves(trials: pd.DataFrame, step_histories: pd.DataFrame,
                   key: str = Metric.STEP_LEARNING_RATE, max_points: int = 2000) -> Figure:
    """The learning rate per optimizer step of each scenario (one seed each), log y, one
    panel per family (and budget). Long series are thinned to about ``max_points`` points
    per run."""
    trials = _by_budget(trials)
    info = trials[["run_id", "scenario", "family"]]
    data = step_histories[step_histories["key"] == key].merge(info, on="run_id")
    data = _thin(data.sort_values(["run_id", "step"]), max_points)
    families = _families(trials)
    fig, axes = _grid(len(families), 1, 8.0, 3.0)
    for ax, family in zip(axes, families):
        sub = data[data["family"] == family]
        if sub.empty:
            _empty(ax, f"no {key} logged")
        else:
            palette = _palette(sorted(sub["scenario"].unique()))
            sns.lineplot(data=sub, x="step", y="value", hue="scenario", estimator=None,
                         units="run_id", palette=palette, legend=False, ax=ax)
            ax.set_yscale("log")
            ax.legend(handles=[Line2D([], [], color=c, label=s) for s, c in palette.items()],
                      fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
        ax.set(title=family, xlabel="optimizer step", ylabel="learning rate")
    return fig


#: How each phase's line looks in the sensitivity figure (the phase tag; "" a study without
#: phases): a tuning grid is a curve, the finals and the tutorials' constants are points.
PHASE_MARKERS = {"": ("o", "-"), "tune": ("o", "-"), "final": ("D", "-"), "demo": ("s", ":")}
PHASE_LABELS = {"": "", "tune": "tuning", "final": "finals", "demo": "demonstration"}


def sensitivity_lines(trials: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """The lines of one panel of :func:`plot_lr_sensitivity` (the trials of one workload and
    budget, :func:`sensitivity_panels`): per optimizer and phase (``""`` without phases), the
    mean validation score at the last epoch (the task's: accuracy, or RMSE) over the seeds
    that did not diverge at each learning rate, with its 95% t-interval (``learning_rate,
    mean, lo, hi, n``). A line never joins trials of two phases: a demonstration at a
    tutorial's constant, a tuning grid and the finals at the chosen LR measure different
    things."""
    value = f"final_{task_of(trials).val_metric}"
    if value not in trials or "learning_rate" not in trials:
        return []
    ok = trials[~trials["diverged"].astype(bool) & trials["learning_rate"].notna()]
    ok = ok.assign(optimizer=ok["optimizer"].fillna("") if "optimizer" in ok else "",
                   phase=ok["phase"].fillna("") if "phase" in ok else "")
    return [(key, aggregate(rows, "learning_rate", value))
            for key, rows in ok.groupby(["optimizer", "phase"], sort=True)]


def sensitivity_panels(trials: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The panels of :func:`plot_lr_sensitivity`: the trials with a learning rate split by
    workload and budget (:func:`lrstudy.report.workloads.comparable`), each scored on its own
    task's metric: an LR's score on one model and data says nothing of another's, and an
    accuracy and an RMSE share no axis."""
    data = trials[trials["learning_rate"].notna()] if "learning_rate" in trials else trials[:0]
    if data.empty:
        return []
    return comparable(data)


def plot_lr_sensitivity(trials: pd.DataFrame) -> Figure:
    """Validation score at the last epoch (accuracy, or RMSE) against the initial learning
    rate (log x), one panel per workload and budget (:func:`sensitivity_panels`): one line
    per optimizer (colour) and phase (marker; :func:`sensitivity_lines`) with its 95%
    t-interval as a band; red crosses along the bottom: diverged trials."""
    panels = sensitivity_panels(trials)
    if not panels:
        fig = Figure(figsize=(7.5, 4.5))
        _empty(fig.add_subplot(), "no fixed-LR trials")
        return fig
    if len(panels) == 1:
        fig = Figure(figsize=(7.5, 4.5))
        axes = [fig.add_subplot()]
    else:
        fig, axes = _grid(len(panels), 2, 6.5, 3.8)
        fig.subplots_adjust(wspace=0.75)  # room for each panel's legend, right of it
    lines = [sensitivity_lines(data) for _, data in panels]
    colors = _palette(sorted({optimizer for found in lines for (optimizer, _), _ in found}))
    studies = ", ".join(sorted(set(trials["study"].dropna()))) if "study" in trials else ""
    for ax, (label, data), found in zip(axes, panels, lines):
        _sensitivity_panel(ax, data, found, colors)
        title = f"LR sensitivity ({studies})" if len(panels) == 1 else label
        ax.set(title=title, xlabel="initial learning rate",
               ylabel=f"{task_of(data).val_metric} at the last epoch")
    return fig


def _sensitivity_panel(ax, data: pd.DataFrame, lines, colors: dict) -> None:
    """One panel of :func:`plot_lr_sensitivity`: ``lines`` of ``data``, its diverged trials
    as crosses."""
    bad = data[data["diverged"].astype(bool)]
    for (optimizer, phase), line in lines:
        marker, style = PHASE_MARKERS.get(phase, ("o", "-"))
        label = " ".join(filter(None, [optimizer, PHASE_LABELS.get(phase, phase)]))
        ax.plot(line["learning_rate"], line["mean"], marker=marker, linestyle=style,
                color=colors[optimizer], label=label)
        ax.fill_between(line["learning_rate"], line["lo"], line["hi"],
                        color=colors[optimizer], alpha=0.15, linewidth=0)
    if not bad.empty:
        ax.scatter(bad["learning_rate"], np.full(len(bad), 0.03), marker="x", color="red",
                   transform=ax.get_xaxis_transform(), label=f"diverged ({len(bad)})")
    if lines or not bad.empty:
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.set_xscale("log")
    low, high = data["learning_rate"].min(), data["learning_rate"].max()
    ax.set_xlim(low / 1.5, high * 1.5)  # the crosses are not in data coordinates


def plot_tuning(grid: pd.DataFrame) -> Figure:
    """Each tuned strategy's mean validation score over its tuning seeds against its peak LR
    (log x), bars one standard deviation of the seeds, the chosen point circled (its choice's
    bootstrap stability in the title, "capped" for an edge winner), diverged points
    as red crosses along the bottom: the tuning, on validation data only."""
    names = sorted(grid["scenario"].unique()) if not grid.empty else []
    fig, axes = _grid(max(1, len(names)), 4, 3.4, 2.6)
    if not names:
        _empty(axes[0], "no tuning trials")
        return fig
    for ax, name in zip(axes, names):
        rows = grid[grid["scenario"] == name].sort_values("peak_lr")
        ok = rows[rows["val_score"].notna()]
        ax.errorbar(ok["peak_lr"], ok["val_score"], yerr=ok["val_sd"].fillna(0.0),
                    marker="o", capsize=2)
        won = rows[rows["chosen"]]
        ax.scatter(won["peak_lr"], won["val_score"], s=140, facecolors="none",
                   edgecolors="black", zorder=3)
        bad = rows[rows["val_score"].isna()]
        ax.scatter(bad["peak_lr"], np.full(len(bad), 0.03), marker="x", color="red",
                   transform=ax.get_xaxis_transform())
        ax.set_xscale("log")
        stability = rows["stability"].iloc[0]
        title = name if stability != stability else f"{name} (kept {stability:.0%})"
        if won["at_grid_edge"].any():
            title += ", capped"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("peak LR", fontsize=8)
        ax.set_ylabel("val score", fontsize=8)
    return fig


def loss_limits(smoothed, margin: float = 0.1) -> tuple[float, float]:
    """The loss axis of a range test, clipped to where it informs (as fastai's plot does):
    from the smoothed loss's minimum to its highest value before that minimum (where the
    sweep started), widened by ``margin`` of that span. The blow-up after the minimum, where
    the per-batch loss reaches hundreds, leaves the top of the axis instead of flattening
    the region a rule picks from."""
    values = np.asarray(smoothed, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lowest = int(np.argmin(values))
    bottom, top = float(values[lowest]), float(values[:lowest + 1].max())
    span = max(top - bottom, 0.05 * abs(top), 1e-3)
    return bottom - margin * span, top + margin * span


def plot_range_tests(range_tests: pd.DataFrame, histories: pd.DataFrame) -> Figure:
    """Each LR range test: loss (faint) and smoothed loss against the LR (log x), with a
    dashed vertical line per suggestion rule and a solid black one at ``suggested_lr``; the
    loss axis clipped to the informative region (:func:`loss_limits`)."""
    n = len(range_tests)
    fig, axes = _grid(max(n, 1), 3, 5.0, 3.6)
    if n == 0:
        _empty(axes[0], "no LR range test in this study")
        return fig
    colors = dict(zip(SUGGESTION_KEYS, sns.color_palette("colorblind", len(SUGGESTION_KEYS))))
    for ax, test in zip(axes, range_tests.itertuples(index=False)):
        test = test._asdict()
        h = histories[histories["run_id"] == test["run_id"]]
        wide = h.pivot_table(index="step", columns="key", values="value").sort_index()
        if "finder_lr" not in wide:
            _empty(ax, "no finder_lr logged")
            continue
        for key, alpha, label in (("finder_loss", 0.35, "loss"),
                                  ("finder_loss_smoothed", 1.0, "smoothed loss")):
            if key in wide:
                sns.lineplot(x=wide["finder_lr"], y=wide[key], estimator=None, sort=False,
                             alpha=alpha, label=label, ax=ax)
        for key in SUGGESTION_KEYS:
            value = test.get(key, np.nan)
            if pd.notna(value):
                ax.axvline(value, linestyle="--", color=colors[key],
                           label=f"{key.removeprefix('suggestion_')}: {value:.2g}")
        if pd.notna(test.get("suggested_lr", np.nan)):
            ax.axvline(test["suggested_lr"], color="black", linewidth=1.5,
                       label=f"suggested: {test['suggested_lr']:.2g}")
        ax.set_xscale("log")
        if "finder_loss_smoothed" in wide:
            ax.set_ylim(*loss_limits(wide["finder_loss_smoothed"]))
        name = " / ".join(str(test[k]) for k in ("model", "optimizer") if pd.notna(test.get(k)))
        ax.set(title=f"{test['scenario']} {name}".strip(), xlabel="learning rate", ylabel="loss")
        ax.legend(fontsize="x-small", loc="upper left")
    return fig


def plot_test_accuracy(trials: pd.DataFrame, table: pd.DataFrame) -> Figure:
    """Mean test accuracy per scenario (rows in rank order, as :func:`benchmark_table` ranks:
    a diverged seed at chance) with its 95% t-interval, coloured by family; each seed a dot,
    a diverged one a red cross at chance; diverged counts in the labels. For a regression
    (a table of ``test_rmse_*``), the test RMSE, a diverged seed at the worst RMSE. Where a
    suite mixes tasks, one panel per task, each on its own metric's axis."""
    parts = task_rows(table)
    sizes = [len(rows) for _, rows in parts]
    fig = Figure(figsize=(8.0, 1.5 * len(parts) + 0.3 * sum(sizes)))
    axes = fig.subplots(len(parts), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [max(1, n) for n in sizes],
                                     "hspace": 0.4})[:, 0]
    for ax, (task, rows) in zip(axes, parts):
        _test_scores(ax, trials, rows.reset_index(drop=True), not task.higher_is_better)
    return fig


def _test_scores(ax, trials: pd.DataFrame, table: pd.DataFrame, regression: bool) -> None:
    """One panel of :func:`plot_test_accuracy`: the rows of ``table`` of one task."""
    m = "test_rmse" if regression else "test_accuracy"
    order = table["scenario"].tolist()
    families = _families(table)
    colors = _palette(families)
    y = np.arange(len(order))
    for i, row in enumerate(table.itertuples(index=False)):
        color = colors.get(row.family, "grey")
        low, high = getattr(row, f"{m}_low"), getattr(row, f"{m}_high")
        if np.isfinite(low) and np.isfinite(high):
            ax.plot([low, high], [i, i], color=color, lw=2)
        ax.plot([getattr(row, f"{m}_mean")], [i], "o", color=color, ms=7)
    seeds = trials[trials["scenario"].isin(order)].copy()
    values = seeds[m].astype(float)
    seeds["score"] = values.where(~seeds["diverged"], values.where(np.isfinite(values)).max()
                                  if regression else chance(seeds))
    position = {name: i for i, name in enumerate(order)}
    for diverged, marker, color in ((False, ".", "black"), (True, "x", "red")):
        some = seeds[seeds["diverged"] == diverged]
        y_seed = some["scenario"].map(position).astype(float) + 0.2
        ax.scatter(some["score"], y_seed, marker=marker,
                   color=color, s=14, alpha=0.6, zorder=3)
    ax.legend(handles=[Line2D([], [], color=colors[f], marker="o", lw=2, label=f)
                       for f in families] +
              [Line2D([], [], color="red", marker="x", lw=0,
                      label="diverged (worst)" if regression else "diverged (chance)")],
              loc="upper left", bbox_to_anchor=(1.02, 1), title="family")
    labels = [_diverged_label(s, d, n)
              for s, d, n in zip(table["scenario"], table["diverged"], table["seeds"])]
    ax.set_yticks(y, labels)
    ax.set_ylim(len(order) - 0.5, -0.5)
    shown = "test RMSE, lower is better" if regression else "test accuracy"
    ax.set(xlabel=f"{shown} (mean, 95% t-interval; dots: seeds)", ylabel="")
    budgets = table["budget"].tolist() if "budget" in table else []
    if len(set(budgets)) > 1:  # ranked within each budget, never across: say where they part
        for i, label in enumerate(budgets):
            if i == 0 or label != budgets[i - 1]:
                if i:
                    ax.axhline(i - 0.5, color="grey", lw=0.8)
                ax.annotate(label, (0.01, i - 0.45), xycoords=("axes fraction", "data"),
                            fontsize="x-small", color="grey", va="top")


def _regression(table: pd.DataFrame) -> bool:
    """Whether a :func:`~lrstudy.report.tables.benchmark_table` (or one budget's rows of it)
    is a regression's (RMSE)."""
    if "task" in table and len(table):
        return bool((table["task"] == "regression").all())
    return "test_accuracy_mean" not in table and "test_rmse_mean" in table


CALL_COLORS = {"better": "tab:green", "equivalent": "tab:blue", "worse": "tab:red",
               "undecided": "tab:grey"}


def plot_forest(table: pd.DataFrame, margin: float) -> Figure:
    """Forest plot: each strategy's paired difference in test accuracy to its budget's
    reference (points) with the simultaneous 95% interval the call reads
    (:mod:`lrstudy.report.simultaneous`), coloured by that call: green better (clear of zero
    upwards), red worse, blue equivalent (inside the margin), grey undecided (neither); the
    shaded band is the practical-equivalence margin. One panel per budget."""
    compared = table[table["call"].isin(list(CALL_COLORS))]
    groups = list(compared.groupby("budget", sort=False)) or [("", compared)]
    rows = max(len(g) for _, g in groups) if len(compared) else 1
    fig = Figure(figsize=(8.0, 1.4 + 0.32 * rows * len(groups)))
    units = set()
    for k, (budget, group) in enumerate(groups):
        # accuracy points; a regression's oriented difference -(x - y) back to an RMSE
        # change (each budget in its own: a suite mixes them)
        scale, unit = (-1, "RMSE") if _regression(group if len(group) else table) \
            else (100, "points")
        units.add(unit)
        ax = fig.add_subplot(len(groups), 1, k + 1)
        ax.axvspan(-abs(scale) * margin, abs(scale) * margin, color="tab:blue", alpha=0.12, lw=0)
        ax.axvline(0, color="black", lw=0.8)
        for i, row in enumerate(group.itertuples(index=False)):
            color = CALL_COLORS[row.call]
            if np.isfinite(row.diff_low) and np.isfinite(row.diff_high):
                ax.plot([scale * row.diff_low, scale * row.diff_high], [i, i], color=color, lw=2)
            ax.plot([scale * row.diff], [i], "D", color=color, ms=6)
        ax.set_yticks(range(len(group)), group["scenario"].tolist())
        ax.set_ylim(len(group) - 0.5, -0.5)
        reference = group["reference"].iloc[0] if len(group) else ""
        title = f"against {reference}" + (f", {budget}" if budget else "")
        ax.set(xlabel=f"difference in test {'RMSE' if scale < 0 else 'accuracy'}, {unit} "
                      "(paired, simultaneous 95% CI)", ylabel="",
               title=title)
    fig.legend(handles=[Line2D([], [], color=c, marker="D", lw=2, label=n)
                        for n, c in CALL_COLORS.items()] +
               [Line2D([], [], color="tab:blue", alpha=0.3, lw=8,
                       label=" or ".join(f"within ±{100 * margin:.1f} points" if u == "points"
                                         else f"within ±{margin:.3g} RMSE"
                                         for u in sorted(units)))],
               loc="upper left", bbox_to_anchor=(1.0, 0.95))
    fig.tight_layout()
    return fig
