"""Synthetic trials frames across workloads, for ``tests/test_report_across_*.py``: the columns
of :func:`lrstudy.report.frames.load_trials` that the statistics across workloads read, with
values chosen by each test. No store, no training."""

from __future__ import annotations

import numpy as np
import pandas as pd

REGRESSION = "regression"
CLASSIFICATION = "classification"


def _metric(task: str, phase: str) -> str:
    name = "rmse" if task == REGRESSION else "accuracy"
    return f"test_{name}" if phase == "final" else f"final_val_{name}"


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in ("test_accuracy", "test_rmse", "final_val_accuracy", "final_val_rmse"):
        if column not in frame:
            frame[column] = np.nan
    return frame


def finals(scores: dict, tasks: dict | None = None, diverged=(), params: dict | None = None
           ) -> pd.DataFrame:
    """Final trials from ``{workload: {strategy: per-seed test values}}`` (accuracy, or RMSE
    where ``tasks[workload]`` is "regression"); seeds 0, 1, ... in order, a None value leaves
    that seed out. ``diverged``: ``(workload, strategy, seed)`` marked diverged (their value
    stays as given: the statistics must not read it). ``params``: ``{(workload, strategy):
    {column: value}}`` added to each of its rows."""
    rows = []
    for workload, by_strategy in scores.items():
        task = (tasks or {}).get(workload, CLASSIFICATION)
        for strategy, values in by_strategy.items():
            extra = (params or {}).get((workload, strategy), {})
            for seed, value in enumerate(values):
                if value is None:
                    continue
                rows.append({"scenario": f"{strategy}@{workload}", "seed": seed,
                             "phase": "final", "task": task, "num_classes": 10,
                             "diverged": (workload, strategy, seed) in set(diverged),
                             _metric(task, "final"): float(value), **extra})
    return _frame(rows)


def tuning(grids: dict, tasks: dict | None = None, diverged=()) -> pd.DataFrame:
    """Tuning trials from ``{workload: {strategy: {peak_lr: per-seed validation values}}}``
    on tuning seeds 1000, 1001, ...; ``diverged``: ``(workload, strategy, peak_lr, seed)``."""
    rows = []
    for workload, by_strategy in grids.items():
        task = (tasks or {}).get(workload, CLASSIFICATION)
        for strategy, grid in by_strategy.items():
            for lr, values in grid.items():
                for i, value in enumerate(values):
                    rows.append({"scenario": f"{strategy}@{workload}", "seed": 1000 + i,
                                 "phase": "tune", "task": task, "num_classes": 10,
                                 "peak_lr": float(lr),
                                 "diverged": (workload, strategy, lr, 1000 + i) in set(diverged),
                                 _metric(task, "tune"): float(value)})
    return _frame(rows)


def paired_scores(rng: np.random.Generator, means: dict, seeds: int, seed_sd: float = 0.003,
                  noise_sd: float = 0.004) -> dict:
    """``{strategy: per-seed values}``: each strategy's mean, plus a seed effect every
    strategy shares (the paired design) and noise of its own."""
    shared = rng.normal(0, seed_sd, seeds)
    return {name: (mean + shared + rng.normal(0, noise_sd, seeds)).tolist()
            for name, mean in means.items()}
