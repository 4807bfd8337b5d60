"""Tidy frames from the tracking store: one row per run, metric series in long format.

* :func:`load_trials` gives one row per FINISHED trial run; FAILED, KILLED and RUNNING runs
  never reach the summary. Diverged trials stay in the frame (``diverged`` is True) so that
  they can be counted; every aggregate of :mod:`lrstudy.report.tables` leaves them out.
* :func:`load_histories` gives metric series in long format (``run_id, key, step, value,
  timestamp``).

Each loader takes ``method``: ``"sql"`` reads MLflow's tables in a few bulk queries
(:mod:`lrstudy.tracking.sqlstore`), ``"client"`` goes through ``MlflowClient`` (any store, including
``mlflow server``), ``"auto"`` picks ``"sql"`` for a SQL store URI. Both give the same frames.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from lrstudy import tasks
from lrstudy.spec.study import Study
from lrstudy.tracking import sqlstore
from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Metric, Tag
from lrstudy.tracking.store import TAG

EPOCH_KEYS = (
    "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_time_s",
    "effective_lr_p10", "effective_lr_p50", "effective_lr_p90",
)
STEP_KEYS = (Metric.STEP_LEARNING_RATE, Metric.STEP_LOSS)
#: A regression's per-epoch metrics (task = "regression"), series like EPOCH_KEYS.
REGRESSION_EPOCH_KEYS = ("mae", "rmse", "val_mae", "val_rmse")
FINAL_KEYS = ("test_loss", "test_accuracy", "train_time_s", "epochs_to_target", "time_to_target_s",
              "test_mae", "test_rmse")  # the last two: task = "regression"
FINDER_KEYS = ("finder_lr", "finder_loss", "finder_loss_smoothed")
SUGGESTION_KEYS = (
    "suggestion_steepest", "suggestion_valley", "suggestion_minimum", "suggestion_slide",
)
NUMERIC_PARAMS = ("learning_rate", "peak_lr", "train_size", "epochs", "batch_size",
                  "start_lr", "end_lr", "num_it")
SWEEP_STUDY = "lr-sweep"
#: What a budget is: trials that differ in any of these are never compared.
BUDGET_COLUMNS = ("model", "dataset", "train_size", "batch_size", "epochs", "split")
HISTORY_COLUMNS = ["run_id", "key", "step", "value", "timestamp"]


class NoTrialsError(ValueError):
    """The study has no FINISHED trial in the tracking store (or no experiment at all)."""


def no_trials(study: str, uri: str) -> NoTrialsError:
    return NoTrialsError(f"study {study!r} has no finished trials in tracking store {uri}")


# ---- store access ------------------------------------------------------------------------------

def _resolve_method(method: str, uri: str) -> str:
    if method not in ("auto", "sql", "client"):
        raise ValueError(
            f"Argument `method` must be one of 'auto', 'sql', 'client'. Received: method={method!r}"
        )
    if method == "auto":
        return "sql" if sqlstore.is_sql(uri) else "client"
    return method


def missing_sqlite(uri: str) -> bool:
    """A sqlite store whose file does not exist: nothing to read, and nothing to create."""
    path = tracking.sqlite_path(uri)
    return path is not None and not path.exists()


def experiment(study: str, mlflow_client):
    """The active experiment named ``study``, or None."""
    exp = mlflow_client.get_experiment_by_name(study)
    if exp is None or exp.lifecycle_stage == "deleted":
        return None
    return exp


def experiment_id(study: str, tracking_uri: str | None = None) -> str | None:
    """The id of the study's active experiment, or None (no such study, or no store)."""
    uri = tracking.tracking_uri(tracking_uri)
    if missing_sqlite(uri):
        return None
    exp = experiment(study, tracking.client(uri))
    return None if exp is None else exp.experiment_id


def finished_filter(kind: str) -> str:
    """The ``search_runs`` filter of the FINISHED runs of ``kind``."""
    return f"tags.`{TAG}kind` = '{kind}' and attributes.status = 'FINISHED'"


def _runs_client(exp_id: str, kind: str, mlflow_client) -> list[tuple]:
    return [(run.info.run_id, run.data.tags, run.data.params, run.data.metrics)
            for run in tracking.search(mlflow_client, [exp_id], finished_filter(kind))]


def _experiment_id_sql(study: str, uri: str) -> str | None:
    """The active experiment named ``study``, read from the ``experiments`` table. Where
    several experiments share the name (MLflow workspaces), MLflow's own lookup decides."""
    rows = sqlstore.experiments(uri, study)
    if len(rows) > 1:
        exp = experiment(study, tracking.client(uri))
        return None if exp is None else exp.experiment_id
    if not rows or rows[0][1] != "active":
        return None
    return rows[0][0]


def _runs(study: str, kind: str, uri: str, method: str) -> list[tuple]:
    """``(run_id, tags, params, metrics)`` of the FINISHED runs of ``kind`` in ``study``."""
    if missing_sqlite(uri):
        return []
    if _resolve_method(method, uri) == "sql":
        exp_id = _experiment_id_sql(study, uri)
        return [] if exp_id is None else sqlstore.finished_runs(uri, exp_id, kind)
    mlflow_client = tracking.client(uri)
    exp = experiment(study, mlflow_client)
    return [] if exp is None else _runs_client(exp.experiment_id, kind, mlflow_client)


def _histories_sql(run_ids: list[str], keys: list[str], uri: str) -> pd.DataFrame:
    rows = sqlstore.histories(uri, run_ids, keys)
    frame = pd.DataFrame(rows, columns=[*HISTORY_COLUMNS, "is_nan"])
    frame["value"] = frame["value"].astype(float).where(~frame["is_nan"].astype(bool), np.nan)
    return frame.drop(columns="is_nan")


def _histories_client(run_ids: list[str], keys: list[str], uri: str,
                      workers: int = 8) -> pd.DataFrame:
    mlflow_client = tracking.client(uri)
    pairs = [(run_id, key) for run_id in run_ids for key in keys]

    def fetch(pair):
        run_id, key = pair
        return [(run_id, m.key, m.step, m.value, m.timestamp)
                for m in mlflow_client.get_metric_history(run_id, key)]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = [row for chunk in pool.map(fetch, pairs) for row in chunk]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


# ---- frames ------------------------------------------------------------------------------------

def _metric_column(key: str) -> str:
    """Series metrics keep their last value as ``final_<key>``; final metrics keep their name."""
    series = key in EPOCH_KEYS or key in STEP_KEYS or key in REGRESSION_EPOCH_KEYS
    return f"final_{key}" if series else key


def _run_row(run_id: str, tags: dict, params: dict, metrics: dict) -> dict:
    row = {
        "run_id": run_id,
        "study": tags.get(Tag.STUDY),
        "scenario": tags.get(Tag.SCENARIO),
        "family": tags.get(Tag.FAMILY),
        "baseline": tags.get(Tag.BASELINE),
        "seed": tags.get(Tag.SEED, params.get("seed")),
        "diverged": tags.get(Tag.DIVERGED, "false").lower() == "true",
        "diverged_reason": tags.get(Tag.DIVERGED_REASON, ""),
        "phase": tags.get(Tag.PHASE, ""),
        "finder_key": tags.get(Tag.FINDER_KEY),
        "run_key": tags.get(Tag.RUN_KEY),
        "parent_run_id": tags.get(Tag.PARENT_RUN),  # its scenario run
        "dataset_substituted": tags.get(Tag.DATASET_SUBSTITUTED, ""),
    }
    row.update({name: value for name, value in params.items() if name != "seed"})
    row.update({_metric_column(key): value for key, value in metrics.items()})
    return row


def _runs_frame(runs, metric_columns) -> pd.DataFrame:
    frame = pd.DataFrame([_run_row(*run) for run in runs])
    for column in metric_columns:
        if column not in frame:
            frame[column] = np.nan
    for column in NUMERIC_PARAMS:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    if "seed" in frame:
        frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce").astype("Int64")
    return frame


def best_val_loss(histories: pd.DataFrame) -> pd.DataFrame:
    """Per run, the lowest ``val_loss`` and the 1-based epoch (``step + 1``) it was reached at.

    Ties go to the earliest epoch. Columns: ``run_id, best_val_loss, best_val_loss_epoch``.
    """
    h = histories[histories["key"] == "val_loss"].dropna(subset=["value"])
    if h.empty:
        return pd.DataFrame(columns=["run_id", "best_val_loss", "best_val_loss_epoch"])
    h = h.sort_values(["run_id", "value", "step"], kind="stable")
    best = h.groupby("run_id", sort=False).head(1)
    return pd.DataFrame({
        "run_id": best["run_id"].to_numpy(),
        "best_val_loss": best["value"].to_numpy(dtype=float),
        "best_val_loss_epoch": best["step"].to_numpy(dtype=int) + 1,
    })


def load_trials(study: str, tracking_uri: str | None = None,
                method: str = "auto") -> pd.DataFrame:
    """One row per FINISHED trial of ``study``.

    Columns: ``run_id, study, scenario, family, baseline, seed, diverged, diverged_reason,
    phase, run_key, parent_run_id`` (its scenario run), the params
    (``optimizer``, ``learning_rate`` as float, ``schedule``, ``schedule.<arg>``, ``model``,
    ``dataset``, ``train_size``, ``epochs``, ``batch_size`` ...), the final metrics
    (``test_loss``, ``test_accuracy``, ``train_time_s``, ``epochs_to_target``,
    ``time_to_target_s``; NaN when absent), the last value of each series metric as
    ``final_<key>`` (``final_val_accuracy``, ``final_val_loss`` ...), and ``best_val_loss``,
    ``best_val_loss_epoch`` (1-based) from the ``val_loss`` history.

    ``method`` is that of :func:`load_histories` (``"sql"`` reads MLflow's tables in a few
    queries; ``"client"`` uses ``MlflowClient.search_runs``). Raises :class:`NoTrialsError`
    naming the study and the store when there is no finished trial.
    """
    uri = tracking.tracking_uri(tracking_uri)
    runs = _runs(study, "trial", uri, method)
    if not runs:
        raise no_trials(study, uri)
    columns = list(FINAL_KEYS) + [f"final_{k}" for k in ("val_accuracy", "val_loss",
                                                          "val_rmse")]
    trials = _runs_frame(runs, columns)
    best = best_val_loss(load_histories(trials["run_id"], ["val_loss"], uri, method))
    trials = trials.merge(best, on="run_id", how="left")
    return trials.sort_values(["family", "scenario", "seed"], kind="stable", ignore_index=True)


def task_of(trials: pd.DataFrame) -> tasks.Task:
    """The task of the trials (their ``task`` param; classification when absent), which
    says the metric the summary ranks on and its direction."""
    if "task" in trials and (trials["task"] == "regression").any():
        return tasks.REGRESSION
    return tasks.CLASSIFICATION


def phases(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The trials by role: ``ranked`` (the finals of a competition, or every trial of a study
    without one), ``finder`` (the finals of strategies fed by the LR range test whose tuned
    twin ran too: judged against that twin, :func:`lrstudy.report.tuning.finder_regret`, not
    ranked), ``demo`` and ``tune``. Only ranked and finder trials are scored on the test set."""
    phase = trials["phase"] if "phase" in trials else pd.Series("", index=trials.index)
    finals = phase.isin(["final", ""])
    twin = (trials["finder.twin"].fillna("").astype(str) if "finder.twin" in trials
            else pd.Series("", index=trials.index))
    fed = finals & twin.isin(set(trials.loc[finals, "scenario"])) & (twin != "")
    return {"ranked": trials[finals & ~fed].reset_index(drop=True),
            "finder": trials[fed].reset_index(drop=True),
            "demo": trials[phase == "demo"].reset_index(drop=True),
            "tune": trials[phase == "tune"].reset_index(drop=True)}


def load_histories(run_ids, keys, tracking_uri: str | None = None,
                   method: str = "auto") -> pd.DataFrame:
    """Metric series of ``run_ids`` in long format: ``run_id, key, step, value, timestamp``.

    Rows are sorted by ``run_id, key, step, timestamp, value``. ``method``: ``"sql"`` reads
    MLflow's ``metrics`` table directly (read-only; one query per 500 runs), ``"client"``
    calls ``MlflowClient.get_metric_history`` once per run and key on a thread pool (works
    against any store, including ``mlflow server``), ``"auto"`` picks ``"sql"`` for a SQL
    store URI (``sqlite``, ``postgresql``, ``mysql``, ``mssql``) and ``"client"`` otherwise.
    """
    if isinstance(keys, str):
        keys = [keys]
    keys = list(dict.fromkeys(keys))
    run_ids = list(dict.fromkeys(pd.Series(list(run_ids), dtype=object).dropna().tolist()))
    uri = tracking.tracking_uri(tracking_uri)
    method = _resolve_method(method, uri)
    if not run_ids or not keys:
        frame = pd.DataFrame(columns=HISTORY_COLUMNS)
    elif method == "sql":
        frame = _histories_sql(run_ids, keys, uri)
    else:
        frame = _histories_client(run_ids, keys, uri)
    frame = frame.astype({"run_id": object, "key": object, "step": "int64",
                          "value": "float64", "timestamp": "int64"})
    return frame.sort_values(["run_id", "key", "step", "timestamp", "value"], ignore_index=True)


def load_range_tests(study: str, tracking_uri: str | None = None,
                     method: str = "auto") -> pd.DataFrame:
    """One row per FINISHED LR range test run of ``study`` (possibly none).

    Columns: ``run_id, scenario, family``, the params (``model``, ``optimizer``, ``dataset``,
    ``start_lr``, ``end_lr``, ``num_it``, ``rule``) and the metrics ``suggestion_*`` and
    ``suggested_lr`` (NaN when a rule gave no suggestion).
    """
    uri = tracking.tracking_uri(tracking_uri)
    runs = _runs(study, "lr_range_test", uri, method)
    columns = ["run_id", "study", "scenario", "family", *SUGGESTION_KEYS, "suggested_lr"]
    if not runs:
        return pd.DataFrame(columns=columns)
    frame = _runs_frame(runs, list(SUGGESTION_KEYS) + ["suggested_lr"])
    return frame.sort_values(["scenario", "run_id"], ignore_index=True)


def sensitivity_trials(trials: pd.DataFrame, tracking_uri: str | None = None) -> pd.DataFrame:
    """The trials behind the LR-sensitivity figure.

    The ``lr-sweep`` study's trials when that study has finished trials in the store, else the
    fixed-LR scenarios of ``trials`` (family ``fixed``, constant schedule). The ``study``
    column tells which.
    """
    try:
        return load_trials(SWEEP_STUDY, tracking_uri)
    except NoTrialsError:
        pass
    fixed = trials[trials["family"] == "fixed"]
    if "schedule" in fixed:
        fixed = fixed[fixed["schedule"].isna() | (fixed["schedule"] == "constant")]
    return fixed.reset_index(drop=True)


def one_seed_per_scenario(trials: pd.DataFrame) -> list[str]:
    """One run id per scenario: the lowest seed that did not diverge, else the lowest seed.

    Per-step series are large; the notebook fetches them for these runs only.
    """
    order = trials.sort_values(["scenario", "diverged", "seed"], kind="stable")
    return order.groupby("scenario", sort=True)["run_id"].first().tolist()


def budget(trials: pd.DataFrame) -> pd.DataFrame:
    """The training budgets of the study: one row per (model, dataset, train_size,
    batch_size, epochs), with how many scenarios and trials used it."""
    columns = [c for c in BUDGET_COLUMNS if c in trials]
    if not columns:
        return pd.DataFrame({"scenarios": [trials["scenario"].nunique()], "trials": [len(trials)]})
    grouped = trials.groupby(columns, dropna=False)
    return pd.DataFrame({
        "scenarios": grouped["scenario"].nunique(), "trials": grouped.size(),
    }).reset_index()




def study_settings(study: str, tracking_uri: str | None = None, reference: str | None = None,
                   margin: float | None = None) -> tuple[str | None, float]:
    """The verdict's reference and equivalence margin: the given ones, else those the study
    file stated (the experiment tags ``lrstudy.reference`` and ``lrstudy.margin`` that
    ``lrstudy run`` sets), else no reference and the default margin (``Study.margin``)."""
    tags = {}
    uri = tracking.tracking_uri(tracking_uri)
    if (not reference or margin is None) and not missing_sqlite(uri):
        exp = experiment(study, tracking.client(uri))
        tags = exp.tags if exp is not None else {}
    reference = reference or tags.get(Tag.REFERENCE) or None
    if margin is None:
        try:
            margin = float(tags.get(Tag.MARGIN, Study.margin))
        except ValueError:
            margin = Study.margin
    return reference, float(margin)


def study_differs(study: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """What each competing strategy changes besides its LR policy, as the study file's
    ``[competition.differs]`` says (the experiment tag ``lrstudy.differs`` that ``lrstudy run``
    sets): one row per strategy named there."""
    uri = tracking.tracking_uri(tracking_uri)
    exp = None if missing_sqlite(uri) else experiment(study, tracking.client(uri))
    table = json.loads((exp.tags if exp is not None else {}).get(Tag.DIFFERS) or "{}")
    return pd.DataFrame(sorted(table.items()), columns=["strategy", "also changes"])


def store_uri(tracking_uri: str | None = None) -> str:
    """The store a report reads, as a reader may see it: its URI without any user name or
    password.

    >>> store_uri("postgresql+psycopg2://me:secret@db:5432/mlflow")
    'postgresql+psycopg2://db:5432/mlflow'
    """
    from urllib.parse import urlsplit, urlunsplit

    uri = tracking.tracking_uri(tracking_uri)
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
