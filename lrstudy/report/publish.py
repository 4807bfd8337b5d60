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
  ``lrstudy.reference`` (``true`` on the reference's run).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrstudy import tasks
from lrstudy.report.sequential import Design, design_from_tags
from lrstudy.report.verdict import shown_scores
from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Tag
from lrstudy.tracking.store import TAG

SCENARIO_METRICS = {"test_accuracy_mean": "mean", "test_accuracy_ci_low": "ci_low",
                    "test_accuracy_ci_high": "ci_high", "n_seeds": "n_seeds",
                    "n_diverged": "n_diverged", "p_best": "p_best"}
DIFF_METRICS = {"diff_vs_reference": "diff", "diff_ci_low": "diff_low",
                "diff_ci_high": "diff_high"}


def shown_difference(row: pd.Series, task: tasks.Task) -> dict:
    """The difference to the reference and its interval as shown: accuracy points
    (``100 x``), or for a lower-is-better metric its own change (``x - y``, the oriented
    interval turned round)."""
    diff, low, high = (float(row[c]) for c in ("diff", "diff_low", "diff_high"))
    if task.higher_is_better:
        return {"diff_vs_reference": 100 * diff, "diff_ci_low": 100 * low,
                "diff_ci_high": 100 * high}
    return {"diff_vs_reference": -diff, "diff_ci_low": -high, "diff_ci_high": -low}


def write_back(mlflow_client, exp_id: str, trials: pd.DataFrame, found: list[dict]) -> int:
    """Put each strategy's aggregates and its call on its scenario runs (module docstring).
    Returns the number of scenario runs written."""
    from mlflow.entities import Metric, RunTag

    diverged = trials.groupby("scenario")["diverged"].sum().astype(int)
    rows = {}
    for v in found:
        task = v.get("task", tasks.CLASSIFICATION)
        for _, row in v["table"].iterrows():
            rows[row.scenario] = (shown_scores(row, task), row.scenario == v["reference"], task)
    runs = tracking.search(mlflow_client, [exp_id], f"tags.`{TAG}kind` = 'scenario'")
    written = 0
    now = int(pd.Timestamp.now().timestamp() * 1000)
    for run in runs:
        tags = run.data.tags
        name = tags.get(Tag.SCENARIO)
        if name not in rows or tags.get(Tag.PHASE, "") not in ("", "final"):
            continue
        row, is_reference, task = rows[name]
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
            run_tags.append(RunTag(Tag.CALL, str(row["call"])))
        mlflow_client.log_batch(run.info.run_id, metrics=metrics, tags=run_tags)
        written += 1
    return written


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


def record_design(mlflow_client, exp_id: str, design: Design) -> None:
    """Record ``design`` on the experiment's tags (:meth:`Design.tags`)."""
    for key, value in design.tags().items():
        mlflow_client.set_experiment_tag(exp_id, TAG + key, value)
