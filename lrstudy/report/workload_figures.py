"""The figures across workloads, one per statistic of the modules across workloads. Each
``plot_*`` returns one :class:`matplotlib.figure.Figure` not registered with pyplot, as in
:mod:`lrstudy.report.figures`, whose layout helpers they share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lrstudy.report.figures import _empty, _grid, _palette
from lrstudy.report.pairwise import net_matrix


def _legend_right(ax, handles=None, title=None) -> None:
    ax.legend(handles=handles, fontsize="small", title=title, loc="center left",
              bbox_to_anchor=(1.02, 0.5))


def _plain_log_x(ax) -> None:
    """A log x axis (call it once the data are drawn) whose ticks read as plain numbers (1.1,
    2, 0.3), not powers of ten: the ratios shown span a decade or two at most; within one
    decade the ticks are evenly spaced values, as on a linear axis."""
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=6) if high < 10 * low else
                               ticker.LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:.3g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def plot_performance_profiles(profile: pd.DataFrame) -> Figure:
    """Performance profiles (:func:`lrstudy.report.profiles.performance_profile`): per
    strategy, the share of workloads on which its mean test error is within a factor tau of
    the best, as a step line over tau (log x). Higher and further left is better; the value
    at tau = 1 is the share of workloads it is best on."""
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    if profile.empty:
        _empty(ax, "no finals across workloads")
        return fig
    colors = _palette(sorted(profile["strategy"].unique()))
    for strategy, rows in profile.groupby("strategy", sort=True):
        ax.step(rows["tau"], rows["share"], where="post", color=colors[strategy],
                label=strategy)
    _plain_log_x(ax)
    ax.set_ylim(-0.03, 1.03)
    ax.set(xlabel="tau: test error (RMSE) within a factor tau of the workload's best",
           ylabel="share of workloads", title="Performance profiles (Dolan & Moré 2002)")
    _legend_right(ax)
    return fig


def plot_iqm(table: pd.DataFrame) -> Figure:
    """Each strategy's interquartile mean of normalized final scores
    (:func:`lrstudy.report.aggregate_score.iqm_table`) with its stratified bootstrap 95%
    interval, best on top; 0 is the reference, 1 each workload's best strategy."""
    fig = Figure(figsize=(7.5, 1.4 + 0.32 * max(1, len(table))))
    ax = fig.add_subplot()
    if table.empty:
        _empty(ax, "no strategy ran on every workload with the reference")
        return fig
    y = np.arange(len(table))
    ax.hlines(y, table["low"], table["high"], color="tab:blue", lw=2)
    ax.plot(table["iqm"], y, "o", color="tab:blue")
    for x, style in ((0.0, "-"), (1.0, ":")):
        ax.axvline(x, color="black", lw=0.8, linestyle=style)
    ax.set_yticks(y, table["strategy"].tolist())
    ax.set_ylim(len(table) - 0.5, -0.5)
    seeds, workloads = int(table["seeds"].min()), int(table["workloads"].max())
    ax.set(xlabel="IQM of normalized test score (0: the reference, 1: each workload's best; "
                  "stratified bootstrap 95% CI)",
           title=f"Aggregate over {workloads} workloads, {seeds} seeds each")
    return fig


def plot_win_tie_loss(counts: pd.DataFrame) -> Figure:
    """Win / tie / loss across workloads (:func:`lrstudy.report.pairwise.win_tie_loss`):
    row strategy against column strategy, the colour its wins minus losses, each cell
    annotated ``W/T/L`` (and ``?U`` for undecided workloads); rows and columns in order of
    total net wins."""
    net = net_matrix(counts)
    size = max(4.0, 0.6 * len(net) + 2.5)
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.add_subplot()
    if net.empty:
        _empty(ax, "no pair of strategies shares a workload")
        return fig
    cells = counts.set_index(["strategy", "other"])
    labels = np.full(net.shape, "", dtype=object)
    for i, a in enumerate(net.index):
        for j, b in enumerate(net.columns):
            if (a, b) in cells.index:
                c = cells.loc[(a, b)]
                labels[i, j] = f"{c['win']}/{c['tie']}/{c['loss']}" + (
                    f"\n?{c['undecided']}" if c["undecided"] else "")
    limit = max(1.0, float(np.nanmax(np.abs(net.to_numpy(float)))))
    sns.heatmap(net, annot=labels, fmt="", cmap="RdBu", vmin=-limit, vmax=limit, center=0,
                cbar_kws={"label": "wins - losses (workloads)"}, linewidths=0.5,
                annot_kws={"fontsize": 7}, ax=ax)
    ax.set(xlabel="against (cells: wins/ties/losses over workloads, ?n undecided)",
           ylabel="strategy",
           title="Win/tie/loss across workloads (paired, simultaneous 95%, margin)")
    return fig


def plot_tuning_budget(curves: pd.DataFrame) -> Figure:
    """One panel per workload: each strategy's expected best validation score over ``n``
    random tuning runs (:func:`lrstudy.report.tuning_budget.tuning_curves`), and its
    catalogue LR's score as a hollow marker at ``n = 1`` (the one-shot point). Validation
    scores only: the test set scores the finals alone."""
    workloads = sorted(curves["workload"].unique()) if not curves.empty else []
    fig, axes = _grid(max(1, len(workloads)), 3, 4.2, 3.2)
    if not workloads:
        _empty(axes[0], "no tuning trials")
        return fig
    colors = _palette(sorted(curves["strategy"].unique()))
    for ax, workload in zip(axes, workloads):
        rows = curves[curves["workload"] == workload]
        for strategy, line in rows.groupby("strategy", sort=True):
            ax.plot(line["n"], line["expected_val"], color=colors[strategy], marker=".",
                    ms=4, lw=1.2)
            one_shot = line["catalogue_val"].iloc[0]
            if np.isfinite(one_shot):
                ax.plot([0.8], [one_shot], marker="o", mfc="none", color=colors[strategy],
                        ms=7)
        metric = rows["metric"].iloc[0]
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set(title=workload or "(one workload)", xlabel="tuning runs n",
               ylabel=f"expected best {metric}")
    handles = [Line2D([], [], color=c, label=s) for s, c in colors.items()]
    handles.append(Line2D([], [], color="grey", marker="o", mfc="none", lw=0,
                          label="catalogue LR (one shot)"))
    _legend_right(axes[-1], handles)
    fig.suptitle("Expected best validation score with n tuning runs (Dodge et al. 2019)",
                 y=1.02)
    return fig


def plot_calibration(table: pd.DataFrame) -> Figure:
    """The LR range test across workloads (:func:`lrstudy.report.calibration.calibration_table`):
    per range-test-fed strategy (rows, its rule named), left the ratio of its suggested LR
    to the tuned one (log x; bars: the spread over the range-test seeds), right its regret
    against its tuned twin with the simultaneous interval (one panel per unit: accuracy
    points, or RMSE); colour the workload."""
    units = sorted(table["unit"].unique()) if not table.empty else []
    lines = len(table[["strategy", "rule"]].drop_duplicates()) if not table.empty else 1
    fig = Figure(figsize=(5.5 * (1 + max(1, len(units))), 2.0 + 0.5 * lines))
    axes = fig.subplots(1, 1 + max(1, len(units)), squeeze=False)[0]
    if table.empty:
        _empty(axes[0], "no strategy fed by the LR range test")
        for ax in axes[1:]:
            fig.delaxes(ax)
        return fig
    rows = table[["strategy", "rule"]].drop_duplicates().sort_values(["rule", "strategy"])
    position = {tuple(r): i for i, r in enumerate(rows.itertuples(index=False))}
    workloads = sorted(table["workload"].unique())
    colors = _palette(workloads)
    offset = {w: 0.6 * (k / max(1, len(workloads) - 1) - 0.5) if len(workloads) > 1 else 0.0
              for k, w in enumerate(workloads)}
    y = [position[(r.strategy, r.rule)] + offset[r.workload]
         for r in table.itertuples(index=False)]
    table = table.assign(y=y)
    ratio = axes[0]
    ratio.axvline(1.0, color="black", lw=0.8)
    for r in table.itertuples(index=False):
        color = colors[r.workload]
        if np.isfinite(r.ratio_low) and np.isfinite(r.ratio_high):
            ratio.hlines(r.y, r.ratio_low, r.ratio_high, color=color, lw=2, alpha=0.6)
        ratio.plot([r.ratio], [r.y], "o", color=color)
    _plain_log_x(ratio)
    ratio.set(xlabel="suggested / tuned LR (bars: range-test seeds)", title="Where it lands")
    for ax, unit in zip(axes[1:], units):
        ax.axvline(0.0, color="black", lw=0.8)
        for r in table[table["unit"] == unit].itertuples(index=False):
            color = colors[r.workload]
            if np.isfinite(r.regret_low) and np.isfinite(r.regret_high):
                ax.hlines(r.y, r.regret_low, r.regret_high, color=color, lw=2)
            ax.plot([r.regret], [r.y], "D", color=color)
        ax.set(xlabel=f"regret vs tuned twin, {unit}\n(simultaneous 95% CI)",
               title="What taking it costs")
    labels = [f"{s} ({rule})" for s, rule in position]
    for ax in axes:
        ax.set_yticks(range(len(labels)), labels if ax is axes[0] else [""] * len(labels))
        ax.set_ylim(len(labels) - 0.5, -0.5)
    _legend_right(axes[-1], [Line2D([], [], color=colors[w], marker="o", lw=2, label=w)
                             for w in workloads], title="workload")
    fig.tight_layout()
    return fig
