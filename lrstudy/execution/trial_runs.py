"""A trial's MLflow life around its fit: opened, claimed, recorded, ended as it ended.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

from lrstudy import interrupts, tasks
from lrstudy.spec import competition, resolve
from lrstudy.spec import study as scenarios
from lrstudy.tracking import metric_sink, sqlstore
from lrstudy.tracking import run_life
from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Metric, Tag
from lrstudy.training import fitting

#: The moments of a trial's life, in order (see :func:`lrstudy.interrupts.raise_at`).
PHASES = ("import", "claim", "seed", "data", "model", "compile", "trace", "epoch", "evaluate",
          "params", "artifacts", "flush")


def _artifacts(run_dir: Path, scenario, seed, outcome, sink, curves: bool = True) -> None:
    """config.json, model summary and, with ``curves``, the curves and LR curve as PNG."""
    from matplotlib.figure import (
        Figure,  # no pyplot: leaves the notebook's backend alone
    )

    (run_dir / "config.json").write_text(json.dumps(
        {"scenario": scenario.config(), "seed": seed, "params": outcome["params"]},
        indent=2, default=str))
    lines = io.StringIO()
    outcome["model"].summary(print_fn=lambda s, **_: lines.write(s + "\n"))
    (run_dir / "model_summary.txt").write_text(lines.getvalue())
    if not curves:
        return
    fig = Figure(figsize=(13, 3.5))
    axes = fig.subplots(1, 3)
    metric = tasks.get(scenario.task).primary
    for ax, keys, title in ((axes[0], ("loss", "val_loss"), "loss"),
                            (axes[1], (metric, f"val_{metric}"), metric)):
        for key in keys:
            pts = sink.points.get(key, [])
            ax.plot([p[0] + 1 for p in pts], [p[1] for p in pts], marker="o", label=key)
        ax.set(xlabel="epoch", title=title)
        ax.legend()
    pts = sink.points.get(Metric.STEP_LEARNING_RATE, [])
    axes[2].plot([p[0] for p in pts], [p[1] for p in pts])
    axes[2].set(xlabel="optimizer step", ylabel="learning rate", title="LR used per step",
                yscale="log" if pts and min(p[1] for p in pts) > 0 else "linear")
    fig.suptitle(f"{scenario.name}, seed {seed}")
    # fixed margins: tight_layout would draw the figure a second time
    fig.subplots_adjust(left=0.045, right=0.99, bottom=0.15, top=0.83, wspace=0.28)
    fig.savefig(run_dir / "curves.png", dpi=80)


def run_trial(study: str, scenario: scenarios.Scenario, seed: int, *, phase: str = "",
              peak_lr: float | None = None, evaluate_test: bool = True, tracking_uri=None,
              parent_run_id: str | None = None, finder_bounds=None, mlflow_client=None,
              params: dict | None = None) -> dict:
    """Run one trial into MLflow, idempotently: a FINISHED trial with the same key is skipped,
    and so is one that a live process (another kernel, another host) owns already.

    ``phase`` is the competition's (``demo``, ``tune``, ``final``; "" outside one) and is part
    of the key; ``peak_lr`` is logged as the param of that name (default: the largest LR the
    optimizer used); a ``tune`` trial is never evaluated on the test set; ``params`` are logged
    beside the trial's own (a final's tuning: :func:`lrstudy.spec.competition.tuning_params`).
    Returns a dict with ``status`` ("finished", "skipped", "diverged") and ``run_id``.
    """
    life = trial_life(study, scenario, seed, phase=phase, peak_lr=peak_lr,
                      tracking_uri=tracking_uri, parent_run_id=parent_run_id,
                      finder_bounds=finder_bounds, mlflow_client=mlflow_client, params=params)
    return live([life], lambda sinks: [fitting.fit_scenario(scenario, seed, sinks[0],
                                                    finder_bounds=finder_bounds,
                                                    evaluate_test=evaluate_test)])[0]


def live(lives: list, fit) -> list[dict]:
    """Drive the :func:`trial_life` of each trial around one ``fit(sinks)`` of those that
    need training: ``sinks`` has one entry per life, None where the trial was skipped, and
    ``fit`` returns the outcomes of the others, in order: one trial, or a stack of them. Each
    run ends as its own trial would (FINISHED, FAILED or KILLED when ``fit`` raises)."""
    results: list = [None] * len(lives)
    waiting = []  # (index, life), opened and claimed, in order
    try:
        sinks = []
        for i, life in enumerate(lives):
            try:
                sinks.append(next(life))
                waiting.append((i, life))
            except StopIteration as stop:
                sinks.append(None)
                results[i] = stop.value
        outcomes = list(fit(sinks)) if waiting else []
        while waiting:  # the runs end in the reverse order of their opening
            i, life = waiting.pop()
            try:
                life.send(outcomes.pop())
            except StopIteration as stop:
                results[i] = stop.value
    except BaseException as exc:
        for _, life in reversed(waiting):
            try:
                life.throw(exc)
            except BaseException:  # noqa: BLE001 (each re-raises exc once its run has ended)
                pass
        raise
    return results


def run_trials(study: str, trials: list, *, tracking_uri=None, parent_run_id=None,
               finder_bounds=None, mlflow_client=None) -> list[dict]:
    """Run ``trials`` (:class:`lrstudy.spec.competition.Trial`, one budget) into MLflow as one
    stack (:func:`fit_stack`), each its own trial: a FINISHED or claimed trial is skipped,
    the others train together and are tagged ``lrstudy.stack_size`` with how many did."""
    if len(trials) == 1:
        (t,) = trials
        return [run_trial(study, t.scenario, t.seed, phase=t.phase, peak_lr=t.peak_lr,
                          evaluate_test=t.evaluate_test, tracking_uri=tracking_uri,
                          parent_run_id=parent_run_id, finder_bounds=finder_bounds,
                          mlflow_client=mlflow_client, params=dict(t.params))]
    mlflow_client = mlflow_client or tracking.client(tracking_uri)
    lives = [trial_life(study, t.scenario, t.seed, phase=t.phase, peak_lr=t.peak_lr,
                        tracking_uri=tracking_uri, parent_run_id=parent_run_id,
                        finder_bounds=finder_bounds, mlflow_client=mlflow_client,
                        params=dict(t.params))
             for t in trials]

    def fit(sinks):
        pairs = [(t, sink) for t, sink in zip(trials, sinks) if sink is not None]
        for _, sink in pairs:
            mlflow_client.set_tag(sink.run_id, Tag.STACK_SIZE, str(len(pairs)))
        if len(pairs) == 1:
            ((t, sink),) = pairs
            return [fitting.fit_scenario(t.scenario, t.seed, sink, finder_bounds=finder_bounds,
                                 evaluate_test=t.evaluate_test)]
        return fitting.fit_stack([(t.scenario, t.seed, t.evaluate_test) for t, _ in pairs],
                         [sink for _, sink in pairs], finder_bounds)

    return live(lives, fit)


def trial_life(study: str, scenario: scenarios.Scenario, seed: int, *, phase: str = "",
               peak_lr: float | None = None, tracking_uri=None, parent_run_id=None,
               finder_bounds=None, mlflow_client=None, stack_size: int = 1,
               params: dict | None = None):
    """A trial's MLflow life around its fit, as a generator (see :func:`live`): it returns
    the skipped result at once, or opens and claims the run and yields the trial's
    :class:`~lrstudy.tracking.metric_sink.MetricSink`; sent the fit's outcome, it logs the params,
    tags and artifacts, and returns the result of :func:`run_trial`."""
    from mlflow.entities import Param, RunTag

    mlflow_client = mlflow_client or tracking.client(tracking_uri)
    exp_id = tracking.experiment_id(study, tracking_uri, mlflow_client)
    key = competition.key_of(scenario, seed, phase)
    base = {"seed": seed, "phase": phase, "peak_lr": peak_lr, "scenario": scenario.name}
    existing = tracking.trials_by_key(mlflow_client, exp_id, {key}).get(key, [])
    done = [r for r in existing if r.info.status == "FINISHED"]
    if done:
        return {**base, "status": "skipped", "run_id": done[0].info.run_id}
    label = f"-tune-lr{peak_lr:.3g}" if phase == "tune" else "-demo" if phase == "demo" else ""
    extra = {"phase": phase} if phase else {}
    tags = tracking.run_tags("trial", study, scenario, name=f"{scenario.name}{label}-s{seed}",
                             parent=parent_run_id, seed=seed, run_key=key, diverged="false",
                             stack_size=stack_size, **extra)
    with interrupts.stop_on_signals(), run_life.open_run(mlflow_client, exp_id, tags) as run:
        interrupts.raise_at("claim")
        if not tracking.claim(mlflow_client, exp_id, key, run.id):
            run.discard()
            return {**base, "status": "skipped", "run_id": None}
        sink = metric_sink.MetricSink(mlflow_client, run.id,
                             series_writer=sqlstore.series_writer(tracking_uri))
        try:
            if finder_bounds is not None:
                from lrstudy.execution import range_tests as finder_runs

                mlflow_client.log_batch(run.id, params=[
                    Param("finder.base_lr", repr(finder_bounds[0])),
                    Param("finder.max_lr", repr(finder_bounds[1])),
                    Param("finder.rule", resolve.finder_args(scenario)["rule"]),
                    Param("finder.twin", scenario.twin),
                    Param("finder.key", finder_runs.finder_key(finder_runs.setup_of(scenario)))])
            outcome = yield sink
            interrupts.raise_at("params")
            used = [v for _, v in sink.points.get(Metric.STEP_LEARNING_RATE, [])]
            peak = peak_lr if peak_lr is not None else (max(used) if used else float("nan"))
            logged = {**outcome["params"], **(params or {}), "peak_lr": peak}
            params = [Param(k, str(v)[:6000]) for k, v in logged.items()]
            mlflow_client.log_batch(run.id, params=params, tags=[
                RunTag(Tag.DIVERGED, str(outcome["diverged"]).lower()),
                RunTag(Tag.DIVERGED_REASON, outcome.get("diverged_reason") or "")])
            tracking.log_dataset(mlflow_client, run.id, outcome["dataset"])
            interrupts.raise_at("artifacts")
            with tempfile.TemporaryDirectory() as tmp:
                # a tuning point's curves are its metrics' charts in the MLflow UI and the
                # tuning notebook's figure: no PNG of its own (a fifth of a trial's overhead)
                _artifacts(Path(tmp), scenario, seed, outcome, sink, curves=phase != "tune")
                mlflow_client.log_artifacts(run.id, tmp)
            interrupts.raise_at("flush")
        finally:
            sink.flush()
    return {**base, "status": "diverged" if outcome["diverged"] else "finished",
            "run_id": run.id, "points": sink.points, "peak_lr": peak,
            "test_accuracy": outcome["test_accuracy"],
            **{k: v for k, v in outcome.items() if k == "test_rmse"}}
