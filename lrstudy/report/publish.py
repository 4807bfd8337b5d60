"""The verdict in MLflow: written back to the scenario runs, so that the UI answers too; and the
study's design (fixed, or group-sequential with its looks) read from and recorded on the
experiment's tags.

On each scenario run of a ranked strategy (``lrstudy.kind = scenario``; in a competition those
of its finals):

* metrics ``test_accuracy_mean``, ``test_accuracy_ci_low``, ``test_accuracy_ci_high`` (a
  regression: ``test_rmse_*``, the RMSE itself), ``n_seeds``, ``n_diverged``, ``p_best``;
* against the reference, the very interval the verdict, the table and the forest plot show
  (:mod:`lrstudy.report.simultaneous`): ``diff_vs_reference``, ``diff_ci_low``,
  ``diff_ci_high``, in accuracy points (x100) for a classification, in the metric's own unit
  (the RMSE's change, lower is better) for a regression;
* tags ``lrstudy.call`` (``better``, ``worse``, ``equivalent``, ``undecided``, or
  ``reference`` on the reference's run), ``lrstudy.best_group`` (``true`` / ``false``) and
  ``lrstudy.reference`` (``true`` on the reference's run);
* its description (``mlflow.note.content``): the call and the difference in one sentence;
* the params a reader of the MLflow UI compares strategies by, those it does not have yet
  (params are written once): ``optimizer``, ``schedule``, the tuned ``peak_lr`` and the
  tuning's ``tune.seeds`` (from its finals), or ``learning_rate`` in a study without tuning.

In a study with workloads (scenarios ``S@W``) each workload is one budget, so each scenario
run gets the above against its own workload's reference (``fixed-baseline@W``), in its
workload's metric; and from the statistics across workloads
(:mod:`lrstudy.report.across`, :func:`write_across`) ``performance_ratio``,
``normalized_score``, ``pairwise_wins``, ``pairwise_ties`` and ``pairwise_losses`` on its
workload.

The verdict with the leaderboard, as Markdown (:func:`verdict_markdown`), becomes the
experiment's description (:func:`describe_experiment`) and the summary run's; in a study with
workloads the answer across them comes first (:func:`across_markdown`), and the summary run
holds its tables and figures (:func:`log_across`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrstudy import tasks
from lrstudy.report.leaderboard import leaderboard_markdown
from lrstudy.report.sequential import Design, design_from_tags
from lrstudy.report.verdict import shown_scores, verdict_details, verdict_headline
from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Metric as M
from lrstudy.tracking.schema import Param, Tag
from lrstudy.tracking.store import TAG

SCENARIO_METRICS = {"test_accuracy_mean": "mean", "test_accuracy_ci_low": "ci_low",
                    "test_accuracy_ci_high": "ci_high", "n_seeds": "n_seeds",
                    "n_diverged": "n_diverged", "p_best": "p_best"}
#: What a scenario run shows of its strategy's trials (the finals' values), in this order of
#: preference for the LR: the tuned peak LR, else the LR of a study without tuning.
SCENARIO_PARAMS = (Param.OPTIMIZER, Param.SCHEDULE, Param.PEAK_LR, Param.TUNE_SEEDS)
#: Where the summary run keeps the answer across workloads (:func:`log_across`).
ACROSS_FOLDER = "across_workloads"


def shown_difference(row: pd.Series, task: tasks.Task) -> dict:
    """The difference to the reference and its interval as shown: accuracy points
    (``100 x``), or for a lower-is-better metric its own change (``x - y``, the oriented
    interval turned round)."""
    diff, low, high = (float(row[c]) for c in ("diff", "diff_low", "diff_high"))
    if task.higher_is_better:
        return {M.DIFF_VS_REFERENCE: 100 * diff, M.DIFF_CI_LOW: 100 * low,
                M.DIFF_CI_HIGH: 100 * high}
    return {M.DIFF_VS_REFERENCE: -diff, M.DIFF_CI_LOW: -high, M.DIFF_CI_HIGH: -low}


def _param_text(value) -> str:
    """A param as MLflow keeps it: a float in its shortest exact form (as the trials log it)."""
    return repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)


def scenario_params(trials: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Per strategy of ``trials`` (its finals), the params its scenario run shows
    (:data:`SCENARIO_PARAMS`; ``learning_rate`` where no ``peak_lr`` was tuned)."""
    out = {}
    for name, rows in trials.groupby("scenario"):
        first = rows.iloc[0]
        found = {key: first[key] for key in SCENARIO_PARAMS
                 if key in rows and pd.notna(first[key]) and str(first[key]) != ""}
        if Param.PEAK_LR not in found and pd.notna(first.get(Param.LEARNING_RATE, np.nan)):
            found[Param.LEARNING_RATE] = first[Param.LEARNING_RATE]
        out[name] = {key: _param_text(value) for key, value in found.items()}
    return out


def scenario_note(row: pd.Series, reference: str, task: tasks.Task) -> str:
    """A compared strategy's verdict in one sentence (its scenario run's description)."""
    if row["call"] == "reference":
        return "The reference: every other strategy of its budget is compared with it."
    shown = shown_difference(row, task)
    unit, fmt = ("points", "{:+.2f}") if task.higher_is_better else (
        f"{task.primary.upper()} change", "{:+.4g}")
    diff, low, high = (shown[k] for k in (M.DIFF_VS_REFERENCE, M.DIFF_CI_LOW, M.DIFF_CI_HIGH))
    if not np.isfinite(diff):
        return f"**{row['call']}** against the reference {reference}: no paired seeds."
    interval = f" [{fmt.format(low)}, {fmt.format(high)}]" if np.isfinite(low) else ""
    return (f"**{row['call']}** against the reference {reference}: {fmt.format(diff)} {unit}"
            f"{interval} (simultaneous 95% interval, {int(row['n_pairs'])} paired seeds).")


def write_back(mlflow_client, exp_id: str, trials: pd.DataFrame, found: list[dict]) -> int:
    """Put each strategy's aggregates, its call, its description and its params on its
    scenario runs (module docstring). Returns the number of scenario runs written."""
    from mlflow.entities import Metric, RunTag
    from mlflow.entities import Param as Logged

    diverged = trials.groupby("scenario")["diverged"].sum().astype(int)
    params = scenario_params(trials)
    rows = {}
    for v in found:
        task = v.get("task", tasks.CLASSIFICATION)
        for _, row in v["table"].iterrows():
            rows[row.scenario] = (shown_scores(row, task), row.scenario == v["reference"], task,
                                  v["reference"])
    runs = tracking.search(mlflow_client, [exp_id], f"tags.`{TAG}kind` = 'scenario'")
    written = 0
    now = int(pd.Timestamp.now().timestamp() * 1000)
    for run in runs:
        tags = run.data.tags
        name = tags.get(Tag.SCENARIO)
        if name not in rows or tags.get(Tag.PHASE, "") not in ("", "final"):
            continue
        row, is_reference, task, reference = rows[name]
        values = {**{key: row[column] for key, column in SCENARIO_METRICS.items()
                     if column in row}, "n_diverged": int(diverged.get(name, 0))}
        if "rmse_mean" in row:  # a regression: test_rmse_mean, _ci_low, _ci_high
            values = {k.replace("test_accuracy_", "test_rmse_"): v for k, v in values.items()}
            for key, column in (("test_rmse_mean", "rmse_mean"), ("test_rmse_ci_low", "rmse_low"),
                                ("test_rmse_ci_high", "rmse_high")):
                values[key] = row[column]
        if not is_reference and row.get("call", ""):
            values.update(shown_difference(row, task))
        metrics = [Metric(key, float(value), now, 0) for key, value in values.items()
                   if value is not None and np.isfinite(float(value))]
        run_tags = [RunTag(Tag.REFERENCE, "true" if is_reference else "false"),
                    RunTag(Tag.BEST_GROUP, "true" if bool(row.get("best_group")) else "false")]
        if row.get("call", ""):
            run_tags += [RunTag(Tag.CALL, str(row["call"])),
                         RunTag(Tag.NOTE, scenario_note(row, reference, task))]
        new = [Logged(key, value) for key, value in params.get(name, {}).items()
               if key not in run.data.params]  # a param is written once
        mlflow_client.log_batch(run.info.run_id, metrics=metrics, params=new, tags=run_tags)
        written += 1
    return written


def verdict_markdown(found: list[dict], board: pd.DataFrame) -> str:
    """The verdict as the MLflow UI shows it (the experiment's and the summary run's
    description, folded to its first line until opened): the verdict's opening sentence on
    the best strategies, the leaderboard as a Markdown table whose links stay inside the UI
    (:func:`lrstudy.report.leaderboard.leaderboard_table` with relative links, in a column of
    their own: the runs list below links each run by its name already), then the rest of the
    verdict."""
    parts = [verdict_headline(found), leaderboard_markdown(board, link_names=False),
             verdict_details(found)]
    return "\n\n".join(filter(None, parts)) + "\n"


def across_markdown(headline: str, markdown: str) -> str:
    """The description of a study with workloads: the answer across them
    (:func:`lrstudy.report.across.across_headline`) first, as the line the MLflow UI
    shows folded, then each workload's verdict with the leaderboard (:func:`verdict_markdown`)."""
    return f"{headline}\n\n{markdown}"


def write_across(mlflow_client, exp_id: str, across) -> int:
    """Put on each ranked strategy's scenario run of each workload its share of the answer
    across workloads (``across``: :func:`lrstudy.report.across.across_workloads`):
    ``performance_ratio``, ``normalized_score`` (its mean over the seeds the aggregate used),
    ``pairwise_wins``, ``pairwise_ties``, ``pairwise_losses`` on that workload. Returns the
    number of scenario runs written."""
    from mlflow.entities import Metric

    values: dict[str, dict[str, float]] = {}
    for row in across.ratios.itertuples(index=False):
        if np.isfinite(row.ratio):
            values.setdefault(f"{row.strategy}@{row.workload}", {})[
                M.PERFORMANCE_RATIO] = float(row.ratio)
    normalized = across.normalized.groupby(["workload", "strategy"])["normalized"].mean()
    for (workload, strategy), value in normalized.items():
        values.setdefault(f"{strategy}@{workload}", {})[M.NORMALIZED_SCORE] = float(value)
    if not across.calls.empty:
        outcomes = across.calls.groupby(["workload", "strategy"])["outcome"].value_counts()
        for (workload, strategy), rows in outcomes.groupby(level=[0, 1]):
            counts = rows.droplevel([0, 1])
            values.setdefault(f"{strategy}@{workload}", {}).update({
                M.PAIRWISE_WINS: float(counts.get("win", 0)),
                M.PAIRWISE_TIES: float(counts.get("tie", 0)),
                M.PAIRWISE_LOSSES: float(counts.get("loss", 0))})
    now = int(pd.Timestamp.now().timestamp() * 1000)
    written = 0
    for run in tracking.search(mlflow_client, [exp_id], f"tags.`{TAG}kind` = 'scenario'"):
        name = run.data.tags.get(Tag.SCENARIO)
        if name not in values or run.data.tags.get(Tag.PHASE, "") not in ("", "final"):
            continue
        mlflow_client.log_batch(run.info.run_id, metrics=[
            Metric(key, value, now, 0) for key, value in values[name].items()])
        written += 1
    return written


def log_across(mlflow_client, run_id: str, across, headline: str,
               folder: str = ACROSS_FOLDER) -> list[str]:
    """Log the answer across workloads on the summary run ``run_id``, under ``folder``: each
    table of ``across`` as CSV (``<name>.csv``; the aggregate score also as MLflow's table,
    ``aggregate_score.json``), each figure as PNG (``<name>.png``) and ``answer.json`` (the
    ``headline``, the workloads, the reference, the aggregate score's rows). Returns the
    artifact paths logged."""
    import json

    logged = []
    for name, table in across.tables().items():
        path = f"{folder}/{name}.csv"
        mlflow_client.log_text(run_id, table.to_csv(index=False), path)
        logged.append(path)
    mlflow_client.log_table(run_id, data=across.aggregate,
                            artifact_file=f"{folder}/aggregate_score.json")
    logged.append(f"{folder}/aggregate_score.json")
    for name, figure in across.figures().items():
        path = f"{folder}/{name}.png"
        mlflow_client.log_figure(run_id, figure, path)
        logged.append(path)
    answer = {"headline": headline, "workloads": list(across.workloads),
              "reference": across.reference,
              "aggregate_score": json.loads(across.aggregate.to_json(orient="records"))}
    mlflow_client.log_dict(run_id, answer, f"{folder}/answer.json")
    logged.append(f"{folder}/answer.json")
    return logged


def within(text: str, limit: int, where: str) -> str:
    """``text`` as a description MLflow takes (a tag's value has at most ``limit``
    characters): whole when it fits, else its lines up to the limit and a last line saying
    that the rest is in ``where``."""
    if len(text) <= limit:
        return text
    tail = f"\n\n... (cut at MLflow's limit of {limit:,} characters: the whole text is {where})"
    cut = text[:limit - len(tail)]
    return cut[:cut.rfind("\n") if "\n" in cut else len(cut)].rstrip() + tail


def describe_experiment(mlflow_client, exp_id: str, markdown: str) -> None:
    """Make ``markdown`` the experiment's description (what the UI shows above its runs),
    within MLflow's limit on an experiment tag (a suite's leaderboards exceed it): the
    whole text is the summary run's ``verdict.md``."""
    from mlflow.utils.validation import MAX_EXPERIMENT_TAG_VAL_LENGTH

    mlflow_client.set_experiment_tag(exp_id, Tag.NOTE, within(
        markdown, MAX_EXPERIMENT_TAG_VAL_LENGTH, "the summary run's verdict.md"))


def study_design(study: str, tracking_uri: str | None = None) -> Design:
    """The design ``lrstudy run`` recorded on the study's experiment (``lrstudy.design``,
    ``lrstudy.max_seeds``, ``lrstudy.seed_step``, ``lrstudy.looks``); the fixed design when
    it recorded none (a plain run) or the store has no such study."""
    from lrstudy.report.frames import experiment, missing_sqlite

    uri = tracking.tracking_uri(tracking_uri)
    if missing_sqlite(uri):
        return Design()
    exp = experiment(study, tracking.client(uri))
    return design_from_tags(exp.tags if exp is not None else {}, TAG)
