"""One scenario of a study, as ``notebooks/scenario.ipynb`` runs it: its phases' trials,
in stacks, then a table and its curves.
"""

from __future__ import annotations

import contextlib
import sys

from lrstudy import interrupts, tasks
from lrstudy.execution import trial_runs
from lrstudy.spec import competition
from lrstudy.spec import study as scenarios
from lrstudy.tracking import run_life
from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Metric
from lrstudy.training import fitting, stacking


def run_scenario(study: str = "smoke", scenario: str = "fixed-baseline", seeds: int = 1,
                 *, phase: str = "", grid_points: int = 0, epochs: int = 0, train_size: int = 0,
                 batch_size: int = 0, tracking_uri: str = "", parent_run_id: str = "",
                 threads: int = 0, stack: str = "auto") -> list[dict]:
    """What ``notebooks/scenario.ipynb`` runs: the trials of one scenario of a study.

    Without a competition: seeds ``0 .. seeds - 1``. In a competition: the trials of
    ``phase``, or of all the scenario's phases in order when ``phase`` is "" (a person running
    the notebook by hand): a demo's seeds; a strategy's tuning grid, then its finals at the
    validation winner (``seeds`` final seeds; ``grid_points`` overrides the study's grid).
    They run in this one process (one notebook execution), so that the kernel start and the
    TensorFlow import are paid once; each trial is resumable on its own through its run key.
    Without ``parent_run_id`` a scenario run is opened here to group the trials.
    ``stack`` (``auto``, ``off`` or a number, see :func:`lrstudy.training.stacking.size_for`): the trials
    of a phase train in stacks of that many (:func:`run_trials`).
    """
    from lrstudy.execution import range_tests as finder_runs

    fitting.configure_threads(threads)
    overrides = {k: v for k, v in (("epochs", epochs), ("train_size", train_size),
                                   ("batch_size", batch_size)) if v}
    spec = scenarios.load_study(study, overrides)
    (sc,) = spec.select([scenario])
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    comp = competition.with_grid_points(spec.competition, grid_points)
    phases = competition.phases_to_run(comp, sc, phase)
    scenarios.validate(spec, [sc])
    size = stacking.size_for(sc, stack)
    uri = tracking.check_store(tracking_uri or None)
    mlflow_client = tracking.client(uri)
    exp_id = tracking.experiment_id(spec.name, uri, mlflow_client)
    if parent_run_id:
        parent = contextlib.nullcontext(run_life.Run(mlflow_client, parent_run_id))
    else:
        parent = run_life.open_run(mlflow_client, exp_id, tracking.run_tags(
            "scenario", spec.name, sc, name=sc.name))
    results = []
    with interrupts.stop_on_signals(), parent as run:
        bounds = None
        if sc.finder is not None:
            bounds = finder_runs.bounds_for(spec.name, sc, tracking_uri=uri,
                                            parent_run_id=run.id, mlflow_client=mlflow_client)
        for ph in phases:
            for trials in _rounds(comp, sc, ph, seeds, mlflow_client, exp_id):
                for group in stacking.groups(trials, size):
                    for res in trial_runs.run_trials(spec.name, group, tracking_uri=uri,
                                          parent_run_id=run.id, finder_bounds=bounds,
                                          mlflow_client=mlflow_client):
                        results.append(res)
                        print(f"{sc.name} {ph or 'seed'} {res['seed']}: {res['status']}"
                              + (f" (stack of {len(group)})" if len(group) > 1 else ""),
                              file=sys.stderr)
    return results


def _rounds(comp, sc, phase: str, seeds: int, mlflow_client, exp_id: str):
    """The trials of a phase, in rounds: one, but for a tuning, whose grid grows beyond an
    edge where the winner sits (:func:`lrstudy.spec.competition.tuning`) until it is interior or
    capped: each round trains the points still pending, then the tuning is read again."""
    if phase == "final" and comp.role(sc) == "tuned":
        tuned = competition.tuning(comp, sc, mlflow_client, exp_id)
        yield competition.trials(comp, sc, phase, seeds, tuned.winner,
                                 params=competition.tuning_params(tuned))
        return
    if phase != "tune":
        yield competition.trials(comp, sc, phase, seeds)
        return
    tried: set = set()
    while (pending := competition.tuning(comp, sc, mlflow_client, exp_id).pending):
        if tried.issuperset(pending):  # trained, yet not FINISHED: failed or taken elsewhere
            return
        tried.update(pending)
        yield competition.trials(comp, sc, "tune", seeds, points=list(pending))


def _grid(results: list[dict]) -> bool:
    """Whether the results are a tuning's: trials at more than one peak LR."""
    return len({res.get("peak_lr") for res in results}) > 1


def _metric(results: list[dict]) -> str:
    """The primary metric the results were logged with: ``rmse`` for a regression."""
    regression = any("val_rmse" in (res.get("points") or {}) for res in results)
    return tasks.REGRESSION.primary if regression else tasks.CLASSIFICATION.primary


def results_table(results: list[dict]):
    """One row per trial: its seed (and a tuning's peak LR), status, run id, final validation
    and test accuracy (RMSE for a regression)."""
    import pandas as pd

    m, grid = _metric(results), _grid(results)
    rows = []
    for res in results:
        pts = res.get("points") or {}
        rows.append({
            **({"peak_lr": res["peak_lr"]} if grid else {}),
            "seed": res["seed"], "status": res["status"], "run_id": res["run_id"],
            f"val_{m}": (pts.get(f"val_{m}") or [(0, float("nan"))])[-1][1],
            f"test_{m}": res.get(f"test_{m}", float("nan")),
            "epochs": len(pts.get(f"val_{m}") or []),
        })
    return pd.DataFrame(rows).set_index(["peak_lr", "seed"] if grid else "seed")


def plot_results(results: list[dict]):
    """The notebook's figure: validation accuracy and loss per epoch, LR per step, per seed,
    with one legend for the three panels, beside them (a tuning's 15 trials would cover a
    panel's curves, and placing a legend "best" in each panel searched every point of it);
    a tuning's trials are named by their peak LR and seed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
    m, grid = _metric(results), _grid(results)
    for res in results:
        pts = res.get("points") or {}
        label = (f"LR {res['peak_lr']:.4g}, " if grid else "") + f"seed {res['seed']}"
        label += " (diverged)" if res["status"] == "diverged" else ""
        for ax, key in ((axes[0], f"val_{m}"), (axes[1], "val_loss")):
            series = pts.get(key, [])
            ax.plot([s + 1 for s, _ in series], [v for _, v in series], marker="o", label=label)
            ax.set(xlabel="epoch", title=key)
        series = pts.get(Metric.STEP_LEARNING_RATE, [])
        axes[2].plot([s for s, _ in series], [v for _, v in series], label=label)
    axes[2].set(xlabel="optimizer step", title="learning rate used", yscale="log")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper")
    return fig
