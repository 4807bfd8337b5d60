"""A synthetic study in a fresh sqlite store, and the summary's calls timed over it
(``bench/bench.py`` part (d)).

The store holds what a real study leaves: scenario parent runs, FINISHED trials with full
per-epoch histories, per-step LR and loss and final metrics (a few diverged, without test
metrics), and two LR range tests, all logged through ``MlflowClient.log_batch``.
"""

from __future__ import annotations

import io
import math
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lrstudy import report
from lrstudy.spec.study import FAMILIES
from lrstudy.tracking import run_life
from lrstudy.tracking import store as tracking

LOG_BATCH = 1000  # MLflow's limit of metrics per log_batch call


def _log_run(mlflow_client, exp_id, tags, params, metrics) -> str:
    """A FINISHED run with ``params`` and ``metrics`` (``(key, value, timestamp, step)``)."""
    from mlflow.entities import Metric, Param

    entities = [Metric(k, float(v), ts, int(s)) for k, v, ts, s in metrics]
    params = [Param(k, str(v)) for k, v in params.items()]
    with run_life.open_run(mlflow_client, exp_id, tags, heartbeat=False) as run:
        for start in range(0, max(len(entities), 1), LOG_BATCH):
            mlflow_client.log_batch(run.id, metrics=entities[start:start + LOG_BATCH],
                                    params=params if start == 0 else [])
    return run.id


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


def _range_test_metrics() -> list[tuple]:
    """The curve and suggestions of one LR range test."""
    lrs = np.geomspace(1e-7, 1.0, 100)
    loss = 2.3 - 1.5 / (1 + np.exp(-(np.log10(lrs) + 3))) + np.exp(np.log10(lrs) + 1)
    smooth = pd.Series(loss).ewm(alpha=0.02).mean().to_numpy()
    now = int(time.time() * 1000)
    metrics = [(k, v, now + i, i) for i in range(lrs.size)
               for k, v in (("finder_lr", lrs[i]), ("finder_loss", loss[i]),
                            ("finder_loss_smoothed", smooth[i]))]
    return metrics + [("suggestion_steepest", 1e-3, now, 0), ("suggestion_valley", 3e-3, now, 0),
                      ("suggested_lr", 3e-3, now, 0)]


def _fill_synthetic_study(uri: str, study: str, n_trials: int, epochs: int, seeds: int,
                          steps_per_epoch: int) -> None:
    mlflow_client = tracking.client(uri)
    exp_id = tracking.experiment_id(study, uri, mlflow_client)
    rng = np.random.default_rng(0)
    families = [f for f in FAMILIES if f != "finder"]
    n_scenarios = max(1, math.ceil(n_trials / seeds))
    for index in range(n_scenarios):
        family = families[index % len(families)]
        scenario = SimpleNamespace(name=f"{family}-{index // len(families)}", family=family,
                                   baseline=f"{family}-0")
        lr = float(10 ** rng.uniform(-4, -1))
        quality = float(rng.uniform(0.7, 0.9))
        parent_tags = tracking.run_tags("scenario", study, scenario)
        with run_life.open_run(mlflow_client, exp_id, parent_tags, heartbeat=False) as parent:
            for seed in range(min(seeds, n_trials - index * seeds)):
                diverged = index % 10 == 9 and seed == 0  # a few, as in a real study
                tags = tracking.run_tags("trial", study, scenario, parent=parent.id,
                                         seed=seed, diverged=str(diverged).lower(),
                                         run_key=f"{scenario.name}-{seed}")
                params = {"optimizer": "adam", "learning_rate": lr, "schedule": "constant",
                          "model": "mlp128", "dataset": "fashion_mnist", "train_size": 48000,
                          "epochs": epochs, "batch_size": 128, "seed": seed}
                metrics = _synthetic_trial(rng, epochs, steps_per_epoch, lr, quality)
                if diverged:
                    metrics = [m for m in metrics if not m[0].startswith("test_")]
                _log_run(mlflow_client, exp_id, tags, params, metrics)
    for index in range(2):
        finder = SimpleNamespace(name=f"finder-{index}", family="finder", baseline=None)
        params = {"model": "mlp128", "optimizer": "adam", "dataset": "fashion_mnist",
                  "start_lr": 1e-7, "end_lr": 1.0, "num_it": 100, "rule": "valley"}
        _log_run(mlflow_client, exp_id, tracking.run_tags("lr_range_test", study, finder),
                 params, _range_test_metrics())


def _render(fig: Figure) -> int:
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
    uri = tracking.tracking_uri(str(Path(tmpdir).resolve() / "bench.db"))
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

    trials = timed("load_trials_s", report.load_trials, study, uri)
    epochs_h = timed("load_histories_s", report.load_histories, trials["run_id"],
                     report.EPOCH_KEYS, uri)
    steps_h = timed("load_histories_s", report.load_histories,
                    report.one_seed_per_scenario(trials), report.STEP_KEYS, uri)
    tests = timed("load_trials_s", report.load_range_tests, study, uri)
    tests_h = timed("load_histories_s", report.load_histories, tests["run_id"],
                    report.FINDER_KEYS, uri)
    sens = timed("load_trials_s", report.sensitivity_trials, trials, uri)
    table = timed("benchmark_table_s", report.benchmark_table, trials)
    figures = [
        timed("figures_s", report.plot_family_curves, trials, epochs_h),
        timed("figures_s", report.plot_lr_curves, trials, steps_h),
        timed("figures_s", report.plot_lr_sensitivity, sens),
        timed("figures_s", report.plot_range_tests, tests, tests_h),
        timed("figures_s", report.plot_test_accuracy, trials, table),
    ]
    for fig in figures:
        timed("figures_s", _render, fig)
    timings["rows_loaded"] = len(epochs_h) + len(steps_h) + len(tests_h)
    timings["summary_s"] = sum(timings[k] for k in ("load_trials_s", "load_histories_s",
                                                     "benchmark_table_s", "figures_s"))
    return timings
