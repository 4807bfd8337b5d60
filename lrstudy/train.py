"""One scenario x seed: build data, model, optimizer; fit; evaluate on test; log to MLflow.

The fast path: data as tensors built once per process, each epoch's order drawn in one op
(:mod:`lrstudy.batches`), many steps per execution under XLA. The semantics stay exact: per-step schedules run inside the
graph, per-epoch schedulers and ReduceLROnPlateau fire at epoch boundaries (callbacks at
epoch begin/end are unaffected by steps per execution), and
:class:`lrstudy.callbacks.StepRecorder` keeps the loss and LR of every step inside the graph.

A trial is an MLflow run opened with :func:`lrstudy.tracking.open_run`: it ends FINISHED,
FAILED, or KILLED when a signal stops it at any moment of its life (the named moments of
:data:`PHASES` are where the tests send one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import sys
import tempfile
from pathlib import Path

from lrstudy import tfquiet

tf = tfquiet.import_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

from lrstudy import batches  # noqa: E402
from lrstudy import callbacks as cb  # noqa: E402
from lrstudy import (competition, data, interrupts, models, optimizers,  # noqa: E402
                     resolve, scenarios, schedule_free, sqlstore, tasks, tracking)
from lrstudy.tracking import TAG  # noqa: E402

interrupts.raise_at("import")

# Keras runs each step as its own XLA launch inside a host loop; more steps per execution
# cut the returns to Python (and callbacks) per epoch. StepRecorder keeps every step anyway.
AUTO_STEPS_PER_EXECUTION = 256
VALIDATION_BATCH = 1024  # evaluation only: the batch changes no metric, only the speed
#: The moments of a trial's life, in order (see :func:`lrstudy.interrupts.raise_at`).
PHASES = ("import", "claim", "seed", "data", "model", "compile", "trace", "epoch", "evaluate",
          "params", "artifacts", "flush")


def configure_threads(threads: int) -> None:
    """Limit TensorFlow to ``threads`` CPU threads (before any op runs); 0 keeps the default."""
    if threads and threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow is already initialized: the setting is fixed
            pass


def steps_per_execution(scenario: scenarios.Scenario) -> int:
    chosen = scenario.budget["steps_per_execution"] or AUTO_STEPS_PER_EXECUTION
    return max(1, min(chosen, scenario.steps_per_epoch))


def weights_digest(model: keras.Model) -> str:
    """A short SHA-256 of the model's weights: equal digests, equal initial weights."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()[:16]


def build_optimizer(scenario: scenarios.Scenario, schedule, finder_bounds=None):
    """The scenario's optimizer: on the per-step schedule object, else a plain LR variable."""
    momentum_fn = schedule.momentum if schedule is not None else None
    if schedule is not None and schedule.unit == "step":
        lr = schedule.keras_schedule()
    elif schedule is not None:
        lr = float(schedule.fn(0))
    else:
        lr = constant_lr(scenario, finder_bounds)
    return optimizers.make(scenario.optimizer, lr, momentum_fn=momentum_fn,
                           **resolve.optimizer_args(scenario))


def constant_lr(scenario: scenarios.Scenario, finder_bounds=None) -> float:
    """A constant scenario's LR: its ``learning_rate``, or the range test's ``max_lr`` for
    ``learning_rate = "from_finder"``."""
    if scenario.learning_rate == resolve.FROM_FINDER:
        if finder_bounds is None:
            raise ValueError(f"scenario {scenario.name!r} takes its LR from the range test, "
                             "which has not run")
        return float(finder_bounds[1])
    return float(scenario.learning_rate)


def initial_lr(scenario: scenarios.Scenario, schedule, finder_bounds=None) -> float:
    return float(schedule.fn(0)) if schedule is not None else constant_lr(scenario, finder_bounds)


def trial_params(scenario, schedule, ds, seed, finder_bounds=None, pairing=None) -> dict:
    """The params of a trial; ``pairing`` adds ``init_weights_sha`` and ``batch_order_sha``
    (see :class:`PreparedFit`), which the report uses to check that seed ``i`` gave every
    strategy of a budget the same start (a paired design). ``split``: ``per-seed`` when the
    trial's seed drew its train/validation split, else ``fixed``."""
    params = {
        "optimizer": scenario.optimizer,
        "learning_rate": initial_lr(scenario, schedule, finder_bounds),
        "schedule": schedule.name if schedule is not None else "constant",
        "schedule.unit": schedule.unit if schedule is not None else "",
        "model": scenario.budget["model"],
        "dataset": ds.name,
        "train_size": len(ds.x_train),
        "val_size": len(ds.x_val),
        "split": "per-seed" if scenario.budget["split"] == data.PER_SEED else "fixed",
        "epochs": scenario.budget["epochs"],
        "batch_size": scenario.budget["batch_size"],
        "seed": seed,
        "num_classes": ds.num_classes,
        **({"task": ds.task} if ds.task != "classification" else {}),
        **({"dataset.sha256": ds.digest} if ds.digest else {}),
        **(pairing or {}),
        "target": scenario.target,
        "steps_per_execution": steps_per_execution(scenario),
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
    for key, value in resolve.optimizer_args(scenario).items():  # fractions as steps
        params[f"optimizer.{key}"] = value
    if schedule is not None:
        for key, value in schedule.args.items():
            params[f"schedule.{key}"] = value
    if scenario.plateau is not None:
        for key, value in resolve.plateau_args(scenario).items():
            params[f"plateau.{key}"] = value
    return params


@dataclasses.dataclass
class PreparedFit:
    """A compiled model and what ``model.fit`` needs for one trial (see :func:`prepare_fit`)."""

    scenario: scenarios.Scenario
    seed: int
    model: keras.Model
    data: tf.data.Dataset | None  # None with pipeline=False (a stack feeds its copies)
    dataset: data.Dataset
    schedule: object
    callbacks: list
    logger: cb.EpochLogger | None
    finder_bounds: tuple | None = None
    #: ``init_weights_sha`` (the weights as built): equal across the strategies of a budget
    #: for one seed, as ``batch_order_sha`` (:meth:`observed_pairing`) must be.
    pairing: dict = dataclasses.field(default_factory=dict)
    #: the orders the pipeline fed this trial, hashed as fed (the trial's own pipeline, or
    #: its copy's part of a stack's)
    order: batches.OrderDigest = dataclasses.field(default_factory=batches.OrderDigest)

    def observed_pairing(self) -> dict:
        """:attr:`pairing` and ``batch_order_sha``, the digest of the orders of every epoch
        the pipeline fed (known once training has ended)."""
        return {**self.pairing, "batch_order_sha": self.order.hexdigest()}

    def fit_kwargs(self) -> dict:
        """Keyword arguments of ``model.fit`` besides the data and epochs (``shuffle``
        off: the pipeline is in the trial's order already, and Keras warns of a dataset it
        is asked to shuffle)."""
        ds = self.dataset
        kwargs = {"callbacks": self.callbacks, "shuffle": False}
        if not len(ds.x_val):  # a tutorial without a validation split
            return kwargs
        batch = max(VALIDATION_BATCH, self.scenario.budget["batch_size"])
        return {**kwargs, "validation_data": (ds.x_val, ds.y_val),
                "validation_batch_size": batch}


def prepare_fit(scenario: scenarios.Scenario, seed: int, sink: cb.MetricSink | None,
                finder_bounds=None, pipeline: bool = True) -> PreparedFit:
    """Seed, load the data, build and compile the model, make the callbacks of one trial.

    ``pipeline=False`` leaves out the trial's own data pipeline (``data`` is None): a stack
    feeds its copies from one (:func:`lrstudy.batches.batch_indices` of their seeds).

    With ``sink=None`` nothing is recorded (no :class:`~lrstudy.callbacks.StepRecorder`, no
    :class:`~lrstudy.callbacks.EpochLogger`): only the callbacks that are part of the
    scenario's semantics (per-epoch schedulers, ReduceLROnPlateau) remain. ``make bench``
    uses that as the untracked side of its comparisons.
    """
    budget = scenario.budget
    interrupts.raise_at("seed")
    data.seed_everything(seed)
    interrupts.raise_at("data")
    ds = data.load_cached(budget["dataset"], budget["train_size"], budget["val_size"],
                          split=budget["split"], seed=seed)
    interrupts.raise_at("model")
    schedule = resolve.build_schedule(scenario, finder_bounds)
    task = tasks.get(ds.task)
    model, from_logits = models.build(budget["model"], ds.input_shape, ds.num_classes, ds.task)
    pairing = {"init_weights_sha": weights_digest(model)}
    optimizer = build_optimizer(scenario, schedule, finder_bounds)
    loss_fn, metrics = task.compile_args(keras, from_logits)
    spe = steps_per_execution(scenario)
    interrupts.raise_at("compile")
    model.compile(optimizer=optimizer, loss=loss_fn, metrics=metrics,
                  steps_per_execution=spe, jit_compile=budget["jit_compile"])
    callbacks = []
    if schedule_free.evaluates_at_x(optimizer):  # first: it adds the logs at y the logger reads
        at_y = (((ds.x_val, ds.y_val), max(VALIDATION_BATCH, budget["batch_size"]))
                if sink is not None and len(ds.x_val) else (None, None))
        callbacks.append(schedule_free.EvaluateAtX(*at_y))
    if schedule is not None and schedule.unit == "epoch":
        callbacks.append(schedule.epoch_callback())
    if scenario.plateau is not None:
        callbacks.append(resolve.plateau_callback(optimizer, **resolve.plateau_args(scenario)))
    logger = None
    if sink is not None:  # after the schedulers: the logger reads the LR they set
        logger = cb.EpochLogger(sink, target=scenario.target, log_every=budget["log_every"],
                                loss_fn=loss_fn, probe=(ds.x_train[:256], ds.y_train[:256]),
                                num_classes=ds.num_classes, task=task)
        callbacks += [cb.StepRecorder(spe, on_steps=logger.on_steps), logger]
    order = batches.OrderDigest()
    pipe = batches.train_dataset(ds, budget["batch_size"], seed, order) if pipeline else None
    return PreparedFit(scenario, seed, model, pipe, ds, schedule, callbacks, logger,
                       finder_bounds, pairing, order)


def fit_scenario(scenario: scenarios.Scenario, seed: int, sink: cb.MetricSink,
                 finder_bounds=None, verbose: int = 0, evaluate_test: bool = True,
                 vectorize: bool = True) -> dict:
    """Train and evaluate one trial, feeding ``sink``. Returns the outcome (no MLflow here).
    A model :mod:`lrstudy.vstack` can vectorize trains as a stack of one (see
    :func:`fit_stack`); any other, or any with ``vectorize=False``, with Keras's ``fit``."""
    return fit_stack([(scenario, seed, evaluate_test)], [sink], finder_bounds, verbose,
                     vectorize)[0]


def fit_stack(trials, sinks, finder_bounds=None, verbose: int = 0,
              vectorize: bool = True) -> list[dict]:
    """Train ``trials`` (``(scenario, seed, evaluate_test)``, one budget) as one stack
    (:func:`lrstudy.stack.stack_of`), feeding each trial's sink; the outcomes as
    :func:`fit_scenario` returns them, in order. No MLflow here."""
    from lrstudy import stack

    if len({repr(sorted(sc.budget.items())) for sc, _, _ in trials}) != 1:
        raise ValueError("the trials of a stack must share one budget")
    budget = trials[0][0].budget
    if budget["split"] == data.PER_SEED and len({seed for _, seed, _ in trials}) != 1:
        # the copies share one training and validation set: the split of one seed
        raise ValueError("the trials of a stack with split = \"per-seed\" must share one seed "
                         "(lrstudy.stack.groups)")
    with data.op_determinism(enabled=not budget["jit_compile"]):
        prepared = [prepare_fit(sc, seed, sink, finder_bounds, pipeline=False)
                    for (sc, seed, _), sink in zip(trials, sinks)]
        ds = prepared[0].dataset
        stacked = stack.stack_of(prepared, steps_per_execution(trials[0][0]), vectorize)
        if stacked is None:  # one trial, which Keras's fit trains as it is
            ((sc, seed, test),), (p,) = trials, prepared
            p.data = batches.train_dataset(ds, budget["batch_size"], seed, p.order)
            p.model.fit(p.data, epochs=budget["epochs"], verbose=verbose, **p.fit_kwargs())
            return [finish_fit(p, sinks[0], evaluate_test=test)]
        for _ in stack.train(stacked, prepared, verbose):
            pass
        interrupts.raise_at("evaluate")
        which = [test for _, _, test in trials]
        tests = stacked.evaluate_copies(ds.x_test, ds.y_test, which, VALIDATION_BATCH)
        models = [p.model for p in prepared]
        tests_y = [None] * len(trials)  # the copies evaluated at x above, also at y
        if any(schedule_free.evaluates_at_x(m.optimizer) for m in models):
            with schedule_free.at_y(models):
                tests_y = stacked.evaluate_copies(ds.x_test, ds.y_test, which,
                                                  VALIDATION_BATCH)
        return [finish_fit(p, sink, evaluate_test=test, test_logs=logs, test_logs_at_y=at_y)
                for p, sink, (_, _, test), logs, at_y
                in zip(prepared, sinks, trials, tests, tests_y)]


def finish_fit(prepared: PreparedFit, sink: cb.MetricSink, evaluate_test: bool = True,
               test_logs: dict | None = None, test_logs_at_y: dict | None = None) -> dict:
    """Evaluate on the test set and add the final metrics of the trial to ``sink``.

    A diverged trial is evaluated too. ``evaluate_test=False`` (a tuning trial) leaves the
    test set alone: ``test_loss`` and ``test_accuracy`` are NaN and not logged. The final
    times leave out the first epoch's tracing and compiling, logged as ``compile_time_s``
    (see :class:`lrstudy.callbacks.EpochLogger`). The outcome's ``diverged`` is a bool,
    ``diverged_reason`` one of :data:`lrstudy.callbacks.DIVERGENCE_REASONS` or "".
    ``test_logs``: the test set's logs when they were had already (a stack evaluates its
    copies in one pass, :meth:`lrstudy.stack.StackedModel.evaluate_copies`).
    A schedule-free model (:mod:`lrstudy.schedule_free`) holds its average x after training:
    the test metrics are x's, and y's are logged beside them as ``test_<metric>_at_y``
    (``test_logs_at_y`` when a stack had them already).
    """
    scenario, ds, logger, model = (prepared.scenario, prepared.dataset, prepared.logger,
                                   prepared.model)
    epochs = scenario.budget["epochs"]
    interrupts.raise_at("evaluate")
    task = tasks.get(ds.task)
    test = dict.fromkeys(("loss",) + task.metrics, float("nan"))
    if evaluate_test and test_logs is not None:
        test = {k: float(test_logs[k]) for k in test}
    elif evaluate_test:
        test = dict(zip(test, model.evaluate(ds.x_test, ds.y_test,
                                             batch_size=VALIDATION_BATCH, verbose=0)))
    at_y = {}
    if evaluate_test and schedule_free.evaluates_at_x(model.optimizer):
        if test_logs_at_y is None:
            with schedule_free.at_y([model]):
                test_logs_at_y = dict(zip(test, model.evaluate(
                    ds.x_test, ds.y_test, batch_size=VALIDATION_BATCH, verbose=0)))
        at_y = schedule_free.at_y_keys({f"test_{k}": float(test_logs_at_y[k]) for k in test})
    test_loss, test_acc = test["loss"], test.get("accuracy", float("nan"))
    for key, value in ([(f"test_{k}", v) for k, v in test.items()] + list(at_y.items())
                       + [("train_time_s", logger.train_time)]):
        sink.add(key, value, epochs)  # a NaN is not logged
    if logger.compile_time is not None:
        sink.add("compile_time_s", logger.compile_time, epochs)
    if logger.epochs_to_target is not None:
        sink.add("epochs_to_target", logger.epochs_to_target, epochs)
        sink.add("time_to_target_s", logger.time_to_target, epochs)
    return {
        "model": model, "schedule": prepared.schedule, "dataset": ds, "logger": logger,
        "params": trial_params(scenario, prepared.schedule, ds, prepared.seed,
                               prepared.finder_bounds, prepared.observed_pairing()),
        "diverged": bool(logger.diverged), "diverged_reason": logger.diverged_reason,
        "test_accuracy": test_acc, "test_loss": test_loss,
        **{f"test_{k}": v for k, v in test.items()},
    }


def _artifacts(run_dir: Path, scenario, seed, outcome, sink) -> None:
    """config.json, model summary, curves and LR curve as PNG."""
    from matplotlib.figure import Figure  # no pyplot: leaves the notebook's backend alone

    (run_dir / "config.json").write_text(json.dumps(
        {"scenario": scenario.config(), "seed": seed, "params": outcome["params"]},
        indent=2, default=str))
    lines = io.StringIO()
    outcome["model"].summary(print_fn=lambda s, **_: lines.write(s + "\n"))
    (run_dir / "model_summary.txt").write_text(lines.getvalue())
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
    pts = sink.points.get("step_learning_rate", [])
    axes[2].plot([p[0] for p in pts], [p[1] for p in pts])
    axes[2].set(xlabel="optimizer step", ylabel="learning rate", title="LR used per step",
                yscale="log" if pts and min(p[1] for p in pts) > 0 else "linear")
    fig.suptitle(f"{scenario.name}, seed {seed}")
    # fixed margins: tight_layout's extra drawing pass was half of a trial's 0.6 s of artifacts
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
    beside the trial's own (a final's tuning: :func:`lrstudy.competition.tuning_params`).
    Returns a dict with ``status`` ("finished", "skipped", "diverged") and ``run_id``.
    """
    life = trial_life(study, scenario, seed, phase=phase, peak_lr=peak_lr,
                      tracking_uri=tracking_uri, parent_run_id=parent_run_id,
                      finder_bounds=finder_bounds, mlflow_client=mlflow_client, params=params)
    return live([life], lambda sinks: [fit_scenario(scenario, seed, sinks[0],
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
    """Run ``trials`` (:class:`lrstudy.competition.Trial`, one budget) into MLflow as one
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
            mlflow_client.set_tag(sink.run_id, TAG + "stack_size", str(len(pairs)))
        if len(pairs) == 1:
            ((t, sink),) = pairs
            return [fit_scenario(t.scenario, t.seed, sink, finder_bounds=finder_bounds,
                                 evaluate_test=t.evaluate_test)]
        return fit_stack([(t.scenario, t.seed, t.evaluate_test) for t, _ in pairs],
                         [sink for _, sink in pairs], finder_bounds)

    return live(lives, fit)


def trial_life(study: str, scenario: scenarios.Scenario, seed: int, *, phase: str = "",
               peak_lr: float | None = None, tracking_uri=None, parent_run_id=None,
               finder_bounds=None, mlflow_client=None, stack_size: int = 1,
               params: dict | None = None):
    """A trial's MLflow life around its fit, as a generator (see :func:`live`): it returns
    the skipped result at once, or opens and claims the run and yields the trial's
    :class:`~lrstudy.callbacks.MetricSink`; sent the fit's outcome, it logs the params,
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
    with interrupts.stop_on_signals(), tracking.open_run(mlflow_client, exp_id, tags) as run:
        interrupts.raise_at("claim")
        if not tracking.claim(mlflow_client, exp_id, key, run.id):
            run.discard()
            return {**base, "status": "skipped", "run_id": None}
        sink = cb.MetricSink(mlflow_client, run.id,
                             series_writer=sqlstore.series_writer(tracking_uri))
        try:
            if finder_bounds is not None:
                from lrstudy import finder_runs

                mlflow_client.log_batch(run.id, params=[
                    Param("finder.base_lr", repr(finder_bounds[0])),
                    Param("finder.max_lr", repr(finder_bounds[1])),
                    Param("finder.rule", resolve.finder_args(scenario)["rule"]),
                    Param("finder.twin", scenario.twin),
                    Param("finder.key", finder_runs.finder_key(finder_runs.setup_of(scenario)))])
            outcome = yield sink
            interrupts.raise_at("params")
            used = [v for _, v in sink.points.get("step_learning_rate", [])]
            peak = peak_lr if peak_lr is not None else (max(used) if used else float("nan"))
            logged = {**outcome["params"], **(params or {}), "peak_lr": peak}
            params = [Param(k, str(v)[:6000]) for k, v in logged.items()]
            mlflow_client.log_batch(run.id, params=params, tags=[
                RunTag(TAG + "diverged", str(outcome["diverged"]).lower()),
                RunTag(TAG + "diverged_reason", outcome.get("diverged_reason") or "")])
            tracking.log_dataset(mlflow_client, run.id, outcome["dataset"])
            interrupts.raise_at("artifacts")
            with tempfile.TemporaryDirectory() as tmp:
                _artifacts(Path(tmp), scenario, seed, outcome, sink)
                mlflow_client.log_artifacts(run.id, tmp)
            interrupts.raise_at("flush")
        finally:
            sink.flush()
    return {**base, "status": "diverged" if outcome["diverged"] else "finished",
            "run_id": run.id, "points": sink.points, "peak_lr": peak,
            "test_accuracy": outcome["test_accuracy"],
            **{k: v for k, v in outcome.items() if k == "test_rmse"}}


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
    ``stack`` (``auto``, ``off`` or a number, see :func:`lrstudy.stack.size_for`): the trials
    of a phase train in stacks of that many (:func:`run_trials`).
    """
    from lrstudy import finder_runs
    from lrstudy import stack as stacking

    configure_threads(threads)
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
        parent = contextlib.nullcontext(tracking.Run(mlflow_client, parent_run_id))
    else:
        parent = tracking.open_run(mlflow_client, exp_id, tracking.run_tags(
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
                    for res in run_trials(spec.name, group, tracking_uri=uri,
                                          parent_run_id=run.id, finder_bounds=bounds,
                                          mlflow_client=mlflow_client):
                        results.append(res)
                        print(f"{sc.name} {ph or 'seed'} {res['seed']}: {res['status']}"
                              + (f" (stack of {len(group)})" if len(group) > 1 else ""),
                              file=sys.stderr)
    return results


def _rounds(comp, sc, phase: str, seeds: int, mlflow_client, exp_id: str):
    """The trials of a phase, in rounds: one, but for a tuning, whose grid grows beyond an
    edge where the winner sits (:func:`lrstudy.competition.tuning`) until it is interior or
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


def _metric(results: list[dict]) -> str:
    """The primary metric the results were logged with: ``rmse`` for a regression."""
    regression = any("val_rmse" in (res.get("points") or {}) for res in results)
    return tasks.REGRESSION.primary if regression else tasks.CLASSIFICATION.primary


def results_table(results: list[dict]):
    """One row per seed: status, run id, final validation and test accuracy (RMSE for a
    regression)."""
    import pandas as pd

    m = _metric(results)
    rows = []
    for res in results:
        pts = res.get("points") or {}
        rows.append({
            "seed": res["seed"], "status": res["status"], "run_id": res["run_id"],
            f"val_{m}": (pts.get(f"val_{m}") or [(0, float("nan"))])[-1][1],
            f"test_{m}": res.get(f"test_{m}", float("nan")),
            "epochs": len(pts.get(f"val_{m}") or []),
        })
    return pd.DataFrame(rows).set_index("seed")


def plot_results(results: list[dict]):
    """The notebook's figure: validation accuracy and loss per epoch, LR per step, per seed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    m = _metric(results)
    for res in results:
        pts = res.get("points") or {}
        label = f"seed {res['seed']}" + (" (diverged)" if res["status"] == "diverged" else "")
        for ax, key in ((axes[0], f"val_{m}"), (axes[1], "val_loss")):
            series = pts.get(key, [])
            ax.plot([s + 1 for s, _ in series], [v for _, v in series], marker="o", label=label)
            ax.set(xlabel="epoch", title=key)
        series = pts.get("step_learning_rate", [])
        axes[2].plot([s for s, _ in series], [v for _, v in series], label=label)
    axes[2].set(xlabel="optimizer step", title="learning rate used", yscale="log")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    return fig
