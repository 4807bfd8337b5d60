"""The schedule gallery of ``notebooks/schedules.ipynb``: every scenario's learning rate per
optimizer step over its study's budget, computed from the schedules the training builds,
without training and without a tracking store."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lrstudy.report.figures import plot_lr_curves
from lrstudy.spec import resolve
from lrstudy.spec import study as scenarios
from lrstudy.tracking.schema import Metric


def schedule_curves(study: str, overrides: dict | None = None) -> pd.DataFrame:
    """Every scenario's LR per optimizer step over the study's budget, without training.

    Long format (scenario, family, unit, step, value). Constant-LR scenarios are flat lines;
    ``*-from-finder`` scenarios show placeholder bounds (1e-3, 1e-2) until a range test runs.
    ReduceLROnPlateau depends on the run, so plateau scenarios show their starting LR.
    """
    spec = scenarios.load_study(study, overrides)
    rows = []
    for sc in spec.scenarios.values():
        total = sc.steps_per_epoch * sc.budget["epochs"]
        built = resolve.build_schedule(sc)
        if built is None:
            placeholder = sc.learning_rate == resolve.FROM_FINDER  # the range test's, later
            curve = np.full(total, 1e-2 if placeholder else float(sc.learning_rate))
        else:
            curve = np.asarray(built.curve(sc.steps_per_epoch, sc.budget["epochs"]), float)
        rows.append(pd.DataFrame({
            "run_id": sc.name, "scenario": sc.name, "family": sc.family,
            "unit": built.unit if built is not None else "constant",
            "key": Metric.STEP_LEARNING_RATE, "step": np.arange(total), "value": curve}))
    return pd.concat(rows, ignore_index=True)


def plot_schedule_gallery(curves: pd.DataFrame) -> Figure:
    """:func:`lrstudy.report.figures.plot_lr_curves` on the curves of :func:`schedule_curves`:
    one panel per family, log y."""
    scenarios_frame = curves[["run_id", "scenario", "family"]].drop_duplicates()
    return plot_lr_curves(scenarios_frame, curves[["run_id", "key", "step", "value"]])
