"""Links into the MLflow UI that open a study's runs the way lrstudy means them to be read.

Where the installed MLflow's UI (3.17) keeps the state of an experiment's runs list (read from
its JavaScript bundle, ``mlflow/server/js/build``):

- The list is ``#/experiments/<id>/runs``. Its search facets are query parameters of that URL:
  ``searchFilter`` (a ``search_runs`` filter), ``orderByKey`` (a column key:
  ``metrics.`name```, ``params.`name```, ``tags.`name```, ``attributes.start_time``),
  ``orderByAsc`` (``true``/``false``), ``startTime``, ``lifecycleFilter``,
  ``modelVersionFilter``, ``datasetsFilter``. Runs without the ordering metric come last. A
  link to ``#/experiments/<id>?...`` loses them: the UI redirects to the list keeping only
  ``workflowType``.
- The table's look (``selectedColumns``, ``columnOrder``, widths, grouping) is not in the URL.
  It lives in the browser's local storage, per experiment, or in a *saved view*: an
  experiment tag ``mlflow.sharedViewState.<view id>`` holding ``{"name", "createdAt",
  "updatedAt", "state"}``, ``state`` the JSON of the facets and the table's look. The URL
  parameter ``viewStateShareKey=<view id>`` opens it, and the list's view menu offers it by
  name; the UI reads it only when the URL carries no facet of its own.

A leaderboard (the scenario runs ranked, their difference to the reference shown) therefore
is a saved view, written on the study's experiment by :func:`save_leaderboard` and opened by
:func:`leaderboard_url`. Its columns are the aggregates :mod:`lrstudy.report.publish` writes
on the scenario runs.
"""

from __future__ import annotations

import json
import time

from lrstudy import tasks
from lrstudy.tracking.schema import Metric, Tag

#: Without it the UI opens an experiment on its GenAI page, whatever the experiment's
#: ``mlflow.experimentKind`` tag says.
TRAINING_VIEW = "workflowType=machine_learning"
SAVED_VIEW_TAG = "mlflow.sharedViewState."  # + a view id: the experiment tag of a saved view
LEADERBOARD = "lrstudy-leaderboard"  # the leaderboard's view id
LEADERBOARD_NAME = "Leaderboard"  # its name in the UI's view menu
#: The difference to the reference and its interval, on each compared strategy's scenario run.
DIFF_METRICS = (Metric.DIFF_VS_REFERENCE, Metric.DIFF_CI_LOW, Metric.DIFF_CI_HIGH)
N_SEEDS = "n_seeds"  # the final seeds a scenario run's aggregates are over
SCENARIO_RUNS = f"tags.`{Tag.KIND}` = 'scenario'"
TASK_PARAM = "task"  # logged on a trial only when it is not a classification


def study_url(base: str, exp_id: str) -> str:
    """The study's experiment, on its training runs (``base``: ``http://host:port``)."""
    return f"{base}/#/experiments/{exp_id}?{TRAINING_VIEW}"


def leaderboard_url(base: str, exp_id: str) -> str:
    """The study's leaderboard, once :func:`save_leaderboard` wrote it."""
    return f"{base}/#/experiments/{exp_id}/runs?viewStateShareKey={LEADERBOARD}&{TRAINING_VIEW}"


def ranking_metric(task: tasks.Task) -> str:
    """What the leaderboard ranks by: the mean of the task's test metric over the final
    seeds (``test_accuracy_mean``, ``test_rmse_mean``), the reference's run included."""
    return f"{task.test_metric}_mean"


def leaderboard_state(task: tasks.Task = tasks.CLASSIFICATION) -> dict:
    """The leaderboard's facets and columns: the scenario runs, best first, showing the
    ranking metric, the difference to the reference with its interval, the seeds and the
    call."""
    metrics = (ranking_metric(task), *DIFF_METRICS, N_SEEDS)
    columns = [f"metrics.`{m}`" for m in metrics] + [f"tags.`{Tag.CALL}`"]
    return {"searchFilter": SCENARIO_RUNS, "orderByKey": columns[0],
            "orderByAsc": not task.higher_is_better,
            "selectedColumns": columns, "columnOrder": columns}


def study_task(mlflow_client, exp_id: str) -> tasks.Task:
    """The task of a study's trials, as they record it."""
    found = mlflow_client.search_runs([exp_id], f"params.{TASK_PARAM} = 'regression'",
                                      max_results=1)
    return tasks.REGRESSION if found else tasks.CLASSIFICATION


def save_leaderboard(mlflow_client, exp_id: str) -> bool:
    """Write the leaderboard view on experiment ``exp_id`` when it holds scenario runs, or bring
    it up to date (an unchanged view is left as it is). Returns whether there is one."""
    if not mlflow_client.search_runs([exp_id], SCENARIO_RUNS, max_results=1):
        return False
    state = leaderboard_state(study_task(mlflow_client, exp_id))
    key = SAVED_VIEW_TAG + LEADERBOARD
    now = int(time.time() * 1000)
    created = now
    old = mlflow_client.get_experiment(exp_id).tags.get(key)
    if old is not None:
        try:
            envelope = json.loads(old)
            if json.loads(envelope["state"]) == state:
                return True
            created = int(envelope["createdAt"])
        except (ValueError, TypeError, KeyError):  # not ours, or damaged: written anew
            pass
    mlflow_client.set_experiment_tag(exp_id, key, json.dumps(
        {"name": LEADERBOARD_NAME, "createdAt": created, "updatedAt": now,
         "state": json.dumps(state)}))
    return True
