"""The leaderboard: the benchmark table cut to what a reader decides on (each strategy's
difference to the reference with its simultaneous interval, the call read from it, the tuned
LR and the training time), each strategy linked to its runs in the MLflow UI; as a frame
(:func:`leaderboard_table`) and as a Markdown table (:func:`leaderboard_markdown`), which the
report shows first and the MLflow UI shows in the experiment's description.
"""

from __future__ import annotations

import pandas as pd

from lrstudy.report.tables import format_table
from lrstudy.report.links import Links, trials_filter

def _scenario_runs(trials: pd.DataFrame) -> pd.Series:
    """Per strategy, the scenario run holding its verdict: the parent of its first seed's
    trial (the first round of its finals; later rounds add runs, this one stays)."""
    if "parent_run_id" not in trials:
        return pd.Series(dtype=object)
    first = trials.dropna(subset=["parent_run_id"]).sort_values(["scenario", "seed"])
    return first.groupby("scenario")["parent_run_id"].first()


def leaderboard_table(table: pd.DataFrame, trials: pd.DataFrame,
                links: Links | None = None) -> pd.DataFrame:
    """One row per ranked strategy, as :func:`~lrstudy.report.tables.benchmark_table` ranks
    them (``table``, from the ``trials`` it was computed on): ``rank``, ``budget`` (when
    there are several), ``strategy``, ``seeds``, the test score (``test accuracy`` or
    ``test RMSE``, or ``test accuracy / RMSE`` where a suite mixes tasks, each row in its
    own; mean ± 95% t half-width), ``vs reference`` (the difference with its
    simultaneous 95% interval: points, or the RMSE's change), ``call``, ``tuned LR`` (the peak
    LR its finals ran at; the LR of an untuned study) and ``train time s`` (mean per seed);
    with ``links``, ``run_url`` (the strategy's scenario run) and ``trials_url`` (its trials,
    best score first)."""
    shown = format_table(table).reset_index()
    test = next(c for c in shown if c.startswith("test ") and c != "test loss")
    vs = next(c for c in shown if c.startswith("vs reference"))
    board = pd.DataFrame({"rank": shown["rank"]})
    if "budget" in shown:
        board["budget"] = shown["budget"]
    board = board.assign(strategy=shown["scenario"], seeds=table["seeds"].to_numpy(),
                         **{test: shown[test], "vs reference": shown[vs],
                            "call": shown["call"], "tuned LR": shown["peak LR"],
                            "train time s": shown["train time s"]})
    if links is None:
        return board
    runs = _scenario_runs(trials)
    phases = (trials.groupby("scenario")["phase"].first() if "phase" in trials
              else pd.Series(dtype=object))
    # each strategy's trials best first, on its own task's metric (a suite mixes them)
    regression = (table["task"] == "regression").to_numpy() if "task" in table else \
        [test == "test RMSE"] * len(board)
    board["run_url"] = [links.run(runs[s]) if s in runs else "" for s in board["strategy"]]
    board["trials_url"] = [
        links.runs(trials_filter(s, phases.get(s, "") or ""),
                   "metrics.`test_rmse`" if lower else "metrics.`test_accuracy`", bool(lower))
        for s, lower in zip(board["strategy"], regression)]
    return board


def _link(text, url: str) -> str:
    return f"[{text}]({url})" if url else str(text)


def leaderboard_markdown(board: pd.DataFrame, link_names: bool = True) -> str:
    """:func:`leaderboard_table` as a Markdown table: a strategy's name opens its scenario run,
    its number of seeds the list of its trials. With ``link_names=False`` (the table inside
    the MLflow UI, whose runs list already links each run by its name) names stay text and
    the two links take a column of their own, ``runs``: ``run`` and ``<n> seeds``."""
    columns = [c for c in board if not c.endswith("_url")]
    if not link_names:
        columns = [c for c in columns if c != "seeds"]
        columns.insert(columns.index("strategy") + 1, "runs")
    rows = ["| " + " | ".join(columns) + " |",
            "| " + " | ".join("---" if c in ("strategy", "call", "budget", "runs") else "---:"
                              for c in columns) + " |"]
    for _, row in board.iterrows():
        cells = {c: str(row[c]) for c in columns if c in row}
        run, trials = row.get("run_url", ""), row.get("trials_url", "")
        if link_names:
            cells["strategy"] = _link(row["strategy"], run)
            cells["seeds"] = _link(row["seeds"], trials)
        else:
            cells["runs"] = " · ".join(filter(None, [_link("run", run) if run else "",
                                                     _link(f"{row['seeds']} seeds", trials)]))
        rows.append("| " + " | ".join(cells[c].replace("|", "\\|") for c in columns) + " |")
    return "\n".join(rows)
