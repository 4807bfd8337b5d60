"""The summary of a study: tidy frames from MLflow, the benchmark table, the figures, the report.

Everything here reads the tracking contract (../shared/design.md, "Tracking contract"):

* :func:`load_trials` gives one row per FINISHED trial run; FAILED, KILLED and RUNNING runs
  never reach the summary. Diverged trials stay in the frame (``diverged`` is True) so that
  they can be counted, and every aggregate below leaves them out of its means.
* :func:`load_histories` gives metric series in long format (``run_id, key, step, value,
  timestamp``), in one SQL query per chunk of runs for a SQL store, with a thread pool of
  ``MlflowClient.get_metric_history`` calls as the fallback for tracking servers.
* :func:`benchmark_table` aggregates the trials per scenario (mean and 95% t-interval across
  seeds, ranks, Welch's t-test against the family baseline).
* ``plot_*`` functions each return one :class:`matplotlib.figure.Figure` drawn with seaborn.
  Figures are not registered with pyplot, so a notebook shows each one exactly once.
* :func:`make_report` executes ``notebooks/summary.ipynb`` with papermill, exports HTML and
  logs both as artifacts of a ``lrstudy.kind = "summary"`` run.
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import stats

from lrstudy import tracking
from lrstudy.tracking import FAMILIES, TAG

__all__ = [
    "EPOCH_KEYS",
    "FINAL_KEYS",
    "FINDER_KEYS",
    "STEP_KEYS",
    "SUGGESTION_KEYS",
    "NoTrialsError",
    "aggregate",
    "bench_summary",
    "benchmark_table",
    "best_val_loss",
    "budget",
    "format_table",
    "load_histories",
    "load_range_tests",
    "load_trials",
    "make_report",
    "mean_ci",
    "one_seed_per_scenario",
    "plot_family_curves",
    "plot_lr_curves",
    "plot_lr_sensitivity",
    "plot_range_tests",
    "plot_test_accuracy",
    "sensitivity_trials",
    "t_interval",
    "welch_p",
]

EPOCH_KEYS = (
    "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_time_s",
    "effective_lr_p10", "effective_lr_p50", "effective_lr_p90",
)
STEP_KEYS = ("step_learning_rate", "step_loss")
FINAL_KEYS = ("test_loss", "test_accuracy", "train_time_s", "epochs_to_target", "time_to_target_s")
FINDER_KEYS = ("finder_lr", "finder_loss", "finder_loss_smoothed")
SUGGESTION_KEYS = (
    "suggestion_steepest", "suggestion_valley", "suggestion_minimum", "suggestion_slide",
)
NUMERIC_PARAMS = ("learning_rate", "train_size", "epochs", "batch_size",
                  "start_lr", "end_lr", "num_it")
SWEEP_STUDY = "lr-sweep"
CONFIDENCE = 0.95
ALPHA = 0.05
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "summary.ipynb"
_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_SQL_CHUNK = 500


class NoTrialsError(ValueError):
    """The study has no FINISHED trial in the tracking store (or no experiment at all)."""


# --------------------------------------------------------------------------- statistics


def mean_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float, int]:
    """Mean, half-width of the t confidence interval, and count of the finite ``values``.

    ``half = t.ppf((1 + confidence) / 2, n - 1) * s / sqrt(n)`` with ``s`` the sample
    standard deviation (ddof=1). Fewer than 2 values: the half-width is NaN.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, n
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, half, n


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """``(mean - half, mean + half)`` of :func:`mean_ci`: seaborn's ``errorbar`` callable."""
    mean, half, _ = mean_ci(values, confidence)
    return mean - half, mean + half


def welch_p(a, b) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) of ``a`` against ``b``.

    ``t = (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b)`` with Welch-Satterthwaite degrees of
    freedom (``scipy.stats.ttest_ind(a, b, equal_var=False)``). NaN when either side has fewer
    than 2 finite values or both have zero variance.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return math.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def aggregate(frame: pd.DataFrame, by, value: str = "value",
              confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per group of ``by``: ``mean``, ``ci`` (t half-width as in :func:`mean_ci`), ``n``,
    ``lo = mean - ci`` and ``hi = mean + ci`` of the finite values of ``value``.

    Vectorized: the same numbers as :func:`mean_ci` per group, for thousands of groups at once.
    """
    by = [by] if isinstance(by, str) else list(by)
    finite = frame[np.isfinite(frame[value].to_numpy(dtype=float))]
    grouped = finite.groupby(by, sort=True)[value]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    n = out["n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = stats.t.ppf((1 + confidence) / 2, np.where(n >= 2, n - 1, np.nan))
        out["ci"] = np.where(n >= 2, t * out["std"].to_numpy(dtype=float) / np.sqrt(n), np.nan)
    out["lo"] = out["mean"] - out["ci"]
    out["hi"] = out["mean"] + out["ci"]
    return out.drop(columns="std")


# --------------------------------------------------------------------------- store access


def _is_sql(uri: str) -> bool:
    return uri.split(":", 1)[0].split("+", 1)[0] in _SQL_SCHEMES


def _resolve_method(method: str, uri: str) -> str:
    if method not in ("auto", "sql", "client"):
        raise ValueError(
            f"Argument `method` must be one of 'auto', 'sql', 'client'. Received: method={method!r}"
        )
    if method == "auto":
        return "sql" if _is_sql(uri) else "client"
    return method


def _engine(uri: str):
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    if uri.startswith("sqlite:"):
        import sqlite3
        from urllib.parse import quote

        path = uri[len("sqlite:///"):]
        ro = f"file:{quote(path)}?mode=ro"
        return sqlalchemy.create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(ro, uri=True), poolclass=NullPool,
        )
    return sqlalchemy.create_engine(uri, poolclass=NullPool)


def _missing_sqlite(uri: str) -> bool:
    """A sqlite store whose file does not exist: nothing to read, and nothing to create."""
    return uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists()


def _experiment(study: str, mlflow_client):
    exp = mlflow_client.get_experiment_by_name(study)
    if exp is None or exp.lifecycle_stage == "deleted":
        return None
    return exp


def _runs_client(exp_id: str, kind: str, mlflow_client) -> list[tuple]:
    flt = f"tags.`{TAG}kind` = '{kind}' and attributes.status = 'FINISHED'"
    return [(run.info.run_id, run.data.tags, run.data.params, run.data.metrics)
            for run in tracking.search(mlflow_client, [exp_id], flt)]


def _runs_sql(exp_id: str, kind: str, uri: str) -> list[tuple]:
    """The same as :func:`_runs_client`, read from MLflow's tables (``runs``, ``tags``,
    ``params``, ``latest_metrics``: the values ``Run.data.metrics`` holds)."""
    import sqlalchemy as sa

    find = sa.text(
        "SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
        "WHERE r.experiment_id = :exp AND r.status = 'FINISHED' "
        "AND r.lifecycle_stage = 'active' AND t.key = :tag AND t.value = :kind"
    )
    tables = {name: sa.text(f"SELECT run_uuid, key, value{extra} FROM {name} "
                            "WHERE run_uuid IN :ids").bindparams(
                                sa.bindparam("ids", expanding=True))
              for name, extra in (("tags", ""), ("params", ""), ("latest_metrics", ", is_nan"))}
    engine = _engine(uri)
    try:
        with engine.connect() as conn:
            ids = [r[0] for r in conn.execute(find, {"exp": int(exp_id), "tag": TAG + "kind",
                                                     "kind": kind})]
            data = {run_id: ({}, {}, {}) for run_id in ids}
            for start in range(0, len(ids), _SQL_CHUNK):
                chunk = ids[start:start + _SQL_CHUNK]
                for slot, name in enumerate(tables):
                    for row in conn.execute(tables[name], {"ids": chunk}):
                        value = row[2]
                        if name == "latest_metrics":
                            value = math.nan if row[3] else float(value)
                        data[row[0]][slot][row[1]] = value
    finally:
        engine.dispose()
    return [(run_id, *parts) for run_id, parts in data.items()]


def _experiment_id_sql(study: str, uri: str) -> str | None:
    """The active experiment named ``study``, read from the ``experiments`` table.

    Without importing MLflow (a second or two per notebook). Where several experiments share
    the name (MLflow workspaces), MLflow's own lookup decides.
    """
    import sqlalchemy as sa

    engine = _engine(uri)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT experiment_id, lifecycle_stage FROM experiments "
                                        "WHERE name = :name"), {"name": study}).all()
    finally:
        engine.dispose()
    if len(rows) > 1:
        exp = _experiment(study, tracking.client(uri))
        return None if exp is None else exp.experiment_id
    if not rows or rows[0][1] != "active":
        return None
    return str(rows[0][0])


def _runs(study: str, kind: str, uri: str, method: str) -> list[tuple]:
    """``(run_id, tags, params, metrics)`` of the FINISHED runs of ``kind`` in ``study``."""
    if _missing_sqlite(uri):
        return []
    if _resolve_method(method, uri) == "sql":
        exp_id = _experiment_id_sql(study, uri)
        return [] if exp_id is None else _runs_sql(exp_id, kind, uri)
    mlflow_client = tracking.client(uri)
    exp = _experiment(study, mlflow_client)
    return [] if exp is None else _runs_client(exp.experiment_id, kind, mlflow_client)


def _histories_sql(run_ids: list[str], keys: list[str], uri: str) -> pd.DataFrame:
    import sqlalchemy as sa

    query = sa.text(
        "SELECT run_uuid, key, step, value, timestamp, is_nan FROM metrics "
        "WHERE run_uuid IN :run_ids AND key IN :keys"
    ).bindparams(sa.bindparam("run_ids", expanding=True), sa.bindparam("keys", expanding=True))
    rows = []
    engine = _engine(uri)
    try:
        with engine.connect() as conn:
            for start in range(0, len(run_ids), _SQL_CHUNK):
                chunk = run_ids[start:start + _SQL_CHUNK]
                rows.extend(conn.execute(query, {"run_ids": chunk, "keys": keys}).all())
    finally:
        engine.dispose()
    frame = pd.DataFrame(rows, columns=["run_id", "key", "step", "value", "timestamp", "is_nan"])
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
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value", "timestamp"])


# --------------------------------------------------------------------------- frames


def _metric_column(key: str) -> str:
    """Series metrics keep their last value as ``final_<key>``; final metrics keep their name."""
    return f"final_{key}" if key in EPOCH_KEYS or key in STEP_KEYS else key


def _run_row(run_id: str, tags: dict, params: dict, metrics: dict) -> dict:
    row = {
        "run_id": run_id,
        "study": tags.get(TAG + "study"),
        "scenario": tags.get(TAG + "scenario"),
        "family": tags.get(TAG + "family"),
        "baseline": tags.get(TAG + "baseline"),
        "seed": tags.get(TAG + "seed", params.get("seed")),
        "diverged": tags.get(TAG + "diverged", "false").lower() == "true",
        "run_key": tags.get(TAG + "run_key"),
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

    Columns: ``run_id, study, scenario, family, baseline, seed, diverged, run_key``, the params
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
        raise NoTrialsError(f"study {study!r} has no finished trials in tracking store {uri}")
    columns = list(FINAL_KEYS) + [f"final_{k}" for k in ("val_accuracy", "val_loss")]
    trials = _runs_frame(runs, columns)
    best = best_val_loss(load_histories(trials["run_id"], ["val_loss"], uri, method))
    trials = trials.merge(best, on="run_id", how="left")
    return trials.sort_values(["family", "scenario", "seed"], kind="stable", ignore_index=True)


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
        frame = pd.DataFrame(columns=["run_id", "key", "step", "value", "timestamp"])
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


# --------------------------------------------------------------------------- tables


def budget(trials: pd.DataFrame) -> pd.DataFrame:
    """The training budgets of the study: one row per (model, dataset, train_size,
    batch_size, epochs), with how many scenarios and trials used it."""
    columns = [c for c in ("model", "dataset", "train_size", "batch_size", "epochs")
               if c in trials]
    if not columns:
        return pd.DataFrame({"scenarios": [trials["scenario"].nunique()], "trials": [len(trials)]})
    grouped = trials.groupby(columns, dropna=False)
    return pd.DataFrame({
        "scenarios": grouped["scenario"].nunique(), "trials": grouped.size(),
    }).reset_index()


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


# --------------------------------------------------------------------------- figures


def _families(trials: pd.DataFrame) -> list[str]:
    present = set(trials["family"].dropna())
    known = [f for f in FAMILIES if f in present]
    return known + sorted(present - set(known))


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


def plot_family_curves(trials: pd.DataFrame, histories: pd.DataFrame,
                       keys=("val_loss", "val_accuracy")) -> Figure:
    """Per family (rows) and metric (columns): each scenario's curve over the 1-based epoch.

    Solid line: the mean across non-diverged seeds, with the 95% t-interval as a band
    (:func:`aggregate`). Dotted lines with crosses: diverged trials, one line each, up to their
    last finite value.
    """
    keys = list(keys)
    info = trials[["run_id", "scenario", "family", "diverged"]]
    data = histories[histories["key"].isin(keys)].merge(info, on="run_id")
    data = data.assign(epoch=data["step"] + 1)
    bands = aggregate(data[~data["diverged"]], ["family", "key", "scenario", "epoch"])
    counts = _scenario_counts(trials)
    families = _families(trials)
    fig = Figure(figsize=(5.5 * len(keys), 3.3 * len(families)))
    axes = fig.subplots(len(families), len(keys), squeeze=False,
                        gridspec_kw={"hspace": 0.5, "wspace": 0.25})
    for row, family in enumerate(families):
        scenarios = sorted(trials.loc[trials["family"] == family, "scenario"].unique())
        palette = _palette(scenarios)
        for col, key in enumerate(keys):
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
                   key: str = "step_learning_rate", max_points: int = 2000) -> Figure:
    """The learning rate per optimizer step of each scenario (one seed each), log y, one
    panel per family. Long series are thinned to about ``max_points`` points per run."""
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


def plot_lr_sensitivity(trials: pd.DataFrame) -> Figure:
    """Final test accuracy against the initial learning rate (log x), per optimizer.

    Line and band: mean and 95% t-interval across non-diverged seeds; dots: single seeds;
    red crosses along the bottom: diverged trials at their learning rate.
    """
    data = trials[trials["learning_rate"].notna()] if "learning_rate" in trials else trials[:0]
    ok = data[~data["diverged"] & data["test_accuracy"].notna()]
    bad = data[data["diverged"]]
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    if data.empty:
        _empty(ax, "no fixed-LR trials")
        return fig
    hue = "optimizer" if "optimizer" in data else None
    if not ok.empty:
        sns.lineplot(data=ok, x="learning_rate", y="test_accuracy", hue=hue,
                     errorbar=t_interval, marker="o", ax=ax)
        sns.scatterplot(data=ok, x="learning_rate", y="test_accuracy", hue=hue, alpha=0.4,
                        legend=False, ax=ax)
    if not bad.empty:
        ax.scatter(bad["learning_rate"], np.full(len(bad), 0.03), marker="x", color="red",
                   transform=ax.get_xaxis_transform(), label=f"diverged ({len(bad)})")
        ax.legend()
    ax.set_xscale("log")
    low, high = data["learning_rate"].min(), data["learning_rate"].max()
    ax.set_xlim(low / 1.5, high * 1.5)  # the crosses are not in data coordinates
    studies = ", ".join(sorted(set(data["study"].dropna()))) if "study" in data else ""
    ax.set(title=f"LR sensitivity ({studies})", xlabel="initial learning rate",
           ylabel="test accuracy")
    return fig


def plot_range_tests(range_tests: pd.DataFrame, histories: pd.DataFrame) -> Figure:
    """Each LR range test: loss (faint) and smoothed loss against the LR (log x), with a
    dashed vertical line per suggestion rule and a solid black one at ``suggested_lr``."""
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
        name = " / ".join(str(test[k]) for k in ("model", "optimizer") if pd.notna(test.get(k)))
        ax.set(title=f"{test['scenario']} {name}".strip(), xlabel="learning rate", ylabel="loss")
        ax.legend(fontsize="x-small", loc="upper left")
    return fig


def plot_test_accuracy(trials: pd.DataFrame, table: pd.DataFrame) -> Figure:
    """Mean test accuracy per scenario (rows in rank order) with its 95% t-interval across
    non-diverged seeds, coloured by family; diverged counts in the labels."""
    order = table["scenario"].tolist()
    ok = trials[~trials["diverged"] & trials["test_accuracy"].notna()]
    fig = Figure(figsize=(8.0, 1.5 + 0.3 * len(order)))
    ax = fig.add_subplot()
    if not ok.empty:
        families = _families(ok)
        sns.pointplot(data=ok, x="test_accuracy", y="scenario", order=order, hue="family",
                      hue_order=families, palette=_palette(families), errorbar=t_interval,
                      linestyle="none", orient="h", ax=ax)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), title="family")
    labels = [_diverged_label(s, d, n)
              for s, d, n in zip(table["scenario"], table["diverged"], table["seeds"])]
    ax.set_yticks(range(len(order)), labels)
    ax.set_ylim(len(order) - 0.5, -0.5)
    ax.set(xlabel="test accuracy (mean, 95% t-interval)", ylabel="")
    return fig


# --------------------------------------------------------------------------- report


def _require_trials(study: str, uri: str):
    """The client and experiment id of ``study``, which must have a finished trial."""
    if not _missing_sqlite(uri):
        mlflow_client = tracking.client(uri)
        exp = _experiment(study, mlflow_client)
        flt = f"tags.`{TAG}kind` = 'trial' and attributes.status = 'FINISHED'"
        if exp is not None and mlflow_client.search_runs([exp.experiment_id], flt, max_results=1):
            return mlflow_client, exp.experiment_id
    raise NoTrialsError(f"study {study!r} has no finished trials in tracking store {uri}")


def _execute(study: str, uri: str, output: Path) -> Path:
    from lrstudy import runner

    runner.execute_notebook(NOTEBOOK, output, {"study": study, "tracking_uri": uri},
                            NOTEBOOK.parent.parent)
    return output


def _export_html(notebook: Path, output: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    output.write_text(body, encoding="utf-8")
    return output


def _log_summary(study: str, exp_id: str, mlflow_client, paths) -> str:
    run = mlflow_client.create_run(
        exp_id, run_name=f"summary-{study}",
        tags={TAG + "kind": "summary", TAG + "study": study, **tracking.owner_tags()},
    )
    try:
        for path in paths:
            mlflow_client.log_artifact(run.info.run_id, str(path))
    except BaseException:
        mlflow_client.set_terminated(run.info.run_id, "FAILED")
        raise
    mlflow_client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def make_report(study: str, tracking_uri: str | None = None, out_dir=None) -> Path:
    """Execute the summary notebook for ``study``, export it to HTML, log both; return the HTML.

    Steps: check that the study has finished trials (else :class:`NoTrialsError` naming the
    study and the store), execute ``notebooks/summary.ipynb`` with papermill (parameters
    ``study``, ``tracking_uri``) into ``out_dir`` (default ``<project>/reports/<study>/``),
    export ``summary.html`` with embedded figures, and log both files as artifacts of a new
    run tagged ``lrstudy.kind = "summary"`` in the study's experiment.
    """
    uri = tracking.tracking_uri(tracking_uri)
    mlflow_client, exp_id = _require_trials(study, uri)
    out = Path(out_dir) if out_dir is not None else tracking.project_root() / "reports" / study
    out.mkdir(parents=True, exist_ok=True)
    executed = _execute(study, uri, out / "summary.ipynb")
    html = _export_html(executed, out / "summary.html")
    _log_summary(study, exp_id, mlflow_client, [executed, html])
    return html


# --------------------------------------------------------------------------- benchmark


def _log_run(mlflow_client, exp_id, tags, params, metrics, status="FINISHED") -> str:
    from mlflow.entities import Metric, Param

    run_id = mlflow_client.create_run(exp_id, tags=tags).info.run_id
    entities = [Metric(k, float(v), ts, int(s)) for k, v, ts, s in metrics]
    params = [Param(k, str(v)) for k, v in params.items()]
    for start in range(0, max(len(entities), 1), 1000):
        mlflow_client.log_batch(run_id, metrics=entities[start:start + 1000],
                                params=params if start == 0 else [])
    mlflow_client.set_terminated(run_id, status)
    return run_id


def _synthetic_trial(rng, epochs: int, steps_per_epoch: int, lr: float, quality: float):
    """Plausible per-epoch, per-step and final metrics of one trial (timestamps in ms)."""
    now = int(time.time() * 1000)
    e = np.arange(epochs)
    val_loss = 0.3 + (1.0 - quality) + 0.8 * np.exp(-e / 2) + rng.normal(0, 0.01, epochs)
    val_acc = np.clip(quality * (1 - 0.5 * np.exp(-e / 2)) + rng.normal(0, 0.005, epochs), 0, 1)
    series = {
        "loss": val_loss - 0.05, "accuracy": val_acc + 0.01, "val_loss": val_loss,
        "val_accuracy": val_acc, "learning_rate": np.full(epochs, lr),
        "epoch_time_s": rng.uniform(1.0, 1.2, epochs),
        "effective_lr_p10": np.full(epochs, lr / 10), "effective_lr_p50": np.full(epochs, lr),
        "effective_lr_p90": np.full(epochs, lr * 10),
    }
    metrics = [(k, v, now + int(s), int(s)) for k, vals in series.items()
               for s, v in enumerate(vals)]
    steps = np.arange(epochs * steps_per_epoch)
    metrics += [("step_learning_rate", lr * (1 + 0.5 * np.cos(s / 7)), now + int(s), int(s))
                for s in steps]
    metrics += [("step_loss", 2.0 * np.exp(-s / 50) + 0.3, now + int(s), int(s)) for s in steps]
    final = {"test_accuracy": val_acc[-1] - 0.005, "test_loss": val_loss[-1] + 0.01,
             "train_time_s": float(series["epoch_time_s"].sum())}
    reached = np.flatnonzero(val_acc >= 0.8)
    if reached.size:
        final["epochs_to_target"] = int(reached[0]) + 1
        final["time_to_target_s"] = float(series["epoch_time_s"][: reached[0] + 1].sum())
    metrics += [(k, v, now + epochs, 0) for k, v in final.items()]
    return metrics


def _fill_synthetic_study(uri: str, study: str, n_trials: int, epochs: int, seeds: int,
                          steps_per_epoch: int) -> None:
    mlflow_client = tracking.client(uri)
    exp_id = tracking.experiment_id(study, uri, mlflow_client)
    rng = np.random.default_rng(0)
    families = [f for f in FAMILIES if f != "finder"]
    n_scenarios = max(1, math.ceil(n_trials / seeds))
    for index in range(n_scenarios):
        family = families[index % len(families)]
        scenario = f"{family}-{index // len(families)}"
        baseline = f"{family}-0"
        lr = float(10 ** rng.uniform(-4, -1))
        quality = float(rng.uniform(0.7, 0.9))
        base = {TAG + "study": study, TAG + "scenario": scenario, TAG + "family": family}
        parent = mlflow_client.create_run(exp_id, tags={**base, TAG + "kind": "scenario"})
        for seed in range(min(seeds, n_trials - index * seeds)):
            diverged = index % 10 == 9 and seed == 0  # a few, as in a real study
            tags = {**base, TAG + "kind": "trial", TAG + "seed": str(seed),
                    TAG + "baseline": baseline, TAG + "diverged": str(diverged).lower(),
                    TAG + "run_key": f"{scenario}-{seed}", "mlflow.parentRunId": parent.info.run_id}
            params = {"optimizer": "adam", "learning_rate": lr, "schedule": "constant",
                      "model": "mlp128", "dataset": "fashion_mnist", "train_size": 48000,
                      "epochs": epochs, "batch_size": 128, "seed": seed}
            metrics = _synthetic_trial(rng, epochs, steps_per_epoch, lr, quality)
            if diverged:
                metrics = [m for m in metrics if not m[0].startswith("test_")]
            _log_run(mlflow_client, exp_id, tags, params, metrics)
        mlflow_client.set_terminated(parent.info.run_id, "FINISHED")
    for index in range(2):
        lrs = np.geomspace(1e-7, 1.0, 100)
        loss = 2.3 - 1.5 / (1 + np.exp(-(np.log10(lrs) + 3))) + np.exp(np.log10(lrs) + 1)
        smooth = pd.Series(loss).ewm(alpha=0.02).mean().to_numpy()
        now = int(time.time() * 1000)
        metrics = [(k, v, now + i, i) for i in range(lrs.size)
                   for k, v in (("finder_lr", lrs[i]), ("finder_loss", loss[i]),
                                ("finder_loss_smoothed", smooth[i]))]
        metrics += [("suggestion_steepest", 1e-3, now, 0), ("suggestion_valley", 3e-3, now, 0),
                    ("suggested_lr", 3e-3, now, 0)]
        tags = {TAG + "study": study, TAG + "scenario": f"finder-{index}", TAG + "family": "finder",
                TAG + "kind": "lr_range_test"}
        params = {"model": "mlp128", "optimizer": "adam", "dataset": "fashion_mnist",
                  "start_lr": 1e-7, "end_lr": 1.0, "num_it": 100, "rule": "valley"}
        _log_run(mlflow_client, exp_id, tags, params, metrics)


def _render(fig: Figure) -> int:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")  # as the notebook's inline backend
    return buffer.tell()


def bench_summary(n_trials: int = 500, epochs: int = 10, tmpdir=None, seeds: int = 5,
                  steps_per_epoch: int = 20) -> dict:
    """Time the summary over ``n_trials`` synthetic trials in a fresh sqlite store.

    The store is filled with ``log_batch`` (full per-epoch histories, per-step LR and loss,
    two LR range tests); then the notebook's calls are timed: ``load_trials``,
    ``load_histories`` (per-epoch for all trials, per-step for one seed per scenario),
    ``benchmark_table`` and the five figures, each rendered to PNG. Returns seconds per stage,
    ``summary_s`` (their sum, excluding the fill) and the sizes.
    """
    for name, value, low in (("n_trials", n_trials, 1), ("epochs", epochs, 1),
                             ("seeds", seeds, 1), ("steps_per_epoch", steps_per_epoch, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"Argument `{name}` must be an int >= {low}. Received: {name}={value!r}")
    if tmpdir is None:
        with tempfile.TemporaryDirectory(prefix="lrstudy-bench-") as tmp:
            return bench_summary(n_trials, epochs, tmp, seeds, steps_per_epoch)
    uri = tracking.tracking_uri(f"sqlite:///{Path(tmpdir).resolve() / 'bench.db'}")
    study = "bench"
    timings: dict = {"n_trials": n_trials, "epochs": epochs}
    t0 = time.perf_counter()
    _fill_synthetic_study(uri, study, n_trials, epochs, seeds, steps_per_epoch)
    timings["fill_s"] = time.perf_counter() - t0

    def timed(name, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        return result

    trials = timed("load_trials_s", load_trials, study, uri)
    epochs_h = timed("load_histories_s", load_histories, trials["run_id"], EPOCH_KEYS, uri)
    steps_h = timed("load_histories_s", load_histories, one_seed_per_scenario(trials),
                    STEP_KEYS, uri)
    tests = timed("load_trials_s", load_range_tests, study, uri)
    tests_h = timed("load_histories_s", load_histories, tests["run_id"], FINDER_KEYS, uri)
    sens = timed("load_trials_s", sensitivity_trials, trials, uri)
    table = timed("benchmark_table_s", benchmark_table, trials)
    figures = [
        timed("figures_s", plot_family_curves, trials, epochs_h),
        timed("figures_s", plot_lr_curves, trials, steps_h),
        timed("figures_s", plot_lr_sensitivity, sens),
        timed("figures_s", plot_range_tests, tests, tests_h),
        timed("figures_s", plot_test_accuracy, trials, table),
    ]
    for fig in figures:
        timed("figures_s", _render, fig)
    timings["rows_loaded"] = len(epochs_h) + len(steps_h) + len(tests_h)
    timings["summary_s"] = sum(timings[k] for k in ("load_trials_s", "load_histories_s",
                                                     "benchmark_table_s", "figures_s"))
    return timings


def schedule_curves(study: str, overrides: dict | None = None) -> pd.DataFrame:
    """Every scenario's LR per optimizer step over the study's budget, without training.

    Long format (scenario, family, unit, step, value). Constant-LR scenarios are flat lines;
    ``*-from-finder`` scenarios show placeholder bounds (1e-3, 1e-2) until a range test runs.
    ReduceLROnPlateau depends on the run, so plateau scenarios show their starting LR.
    """
    from lrstudy import scenarios

    spec = scenarios.load_study(study, overrides)
    rows = []
    for sc in spec.scenarios.values():
        total = sc.steps_per_epoch * sc.budget["epochs"]
        built = scenarios.build_schedule(sc)
        if built is None:
            curve = np.full(total, float(sc.learning_rate))
        else:
            curve = np.asarray(built.curve(sc.steps_per_epoch, sc.budget["epochs"]), float)
        rows.append(pd.DataFrame({
            "run_id": sc.name, "scenario": sc.name, "family": sc.family,
            "unit": built.unit if built is not None else "constant",
            "key": "step_learning_rate", "step": np.arange(total), "value": curve}))
    return pd.concat(rows, ignore_index=True)


def plot_schedule_gallery(curves: pd.DataFrame) -> Figure:
    """The gallery of ``notebooks/schedules.ipynb``: :func:`plot_lr_curves` on computed curves."""
    scenarios_frame = curves[["run_id", "scenario", "family"]].drop_duplicates()
    return plot_lr_curves(scenarios_frame, curves[["run_id", "key", "step", "value"]])
