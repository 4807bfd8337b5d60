"""The fit of one trial (or a stack of them): data, model, optimizer, callbacks; train;
evaluate.
"""

from __future__ import annotations

import dataclasses
import hashlib

from lrstudy import tfquiet

tf = tfquiet.import_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

from lrstudy import determinism, interrupts, models, tasks
from lrstudy.data import datasets as data
from lrstudy.data import order as batches  # noqa: E402
from lrstudy.data import splits  # noqa: E402
from lrstudy.lr import optimizers, schedule_free
from lrstudy.spec import resolve
from lrstudy.spec import study as scenarios
from lrstudy.tracking import metric_sink
from lrstudy.training import epoch_logger, stacking, step_recorder

interrupts.raise_at("import")


# Keras runs each step as its own XLA launch inside a host loop; more steps per execution
# cut the returns to Python (and callbacks) per epoch. StepRecorder keeps every step anyway.
AUTO_STEPS_PER_EXECUTION = 256


VALIDATION_BATCH = 1024  # evaluation only: the batch changes no metric, only the speed


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
        "split": "per-seed" if scenario.budget["split"] == splits.PER_SEED else "fixed",
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
    logger: epoch_logger.EpochLogger | None
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


def prepare_fit(scenario: scenarios.Scenario, seed: int, sink: metric_sink.MetricSink | None,
                finder_bounds=None, pipeline: bool = True) -> PreparedFit:
    """Seed, load the data, build and compile the model, make the callbacks of one trial.

    ``pipeline=False`` leaves out the trial's own data pipeline (``data`` is None): a stack
    feeds its copies from one (:func:`lrstudy.data.order.batch_indices` of their seeds).

    With ``sink=None`` nothing is recorded (no :class:`~lrstudy.training.step_recorder.StepRecorder`, no
    :class:`~lrstudy.training.epoch_logger.EpochLogger`): only the callbacks that are part of the
    scenario's semantics (per-epoch schedulers, ReduceLROnPlateau) remain. ``make bench``
    uses that as the untracked side of its comparisons.
    """
    budget = scenario.budget
    interrupts.raise_at("seed")
    determinism.seed_everything(seed)
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
        logger = epoch_logger.EpochLogger(sink, target=scenario.target, log_every=budget["log_every"],
                                loss_fn=loss_fn, probe=(ds.x_train[:256], ds.y_train[:256]),
                                num_classes=ds.num_classes, task=task)
        callbacks += [step_recorder.StepRecorder(spe, on_steps=logger.on_steps), logger]
    order = batches.OrderDigest()
    pipe = batches.train_dataset(ds, budget["batch_size"], seed, order) if pipeline else None
    return PreparedFit(scenario, seed, model, pipe, ds, schedule, callbacks, logger,
                       finder_bounds, pairing, order)


def fit_scenario(scenario: scenarios.Scenario, seed: int, sink: metric_sink.MetricSink,
                 finder_bounds=None, verbose: int = 0, evaluate_test: bool = True,
                 vectorize: bool = True) -> dict:
    """Train and evaluate one trial, feeding ``sink``. Returns the outcome (no MLflow here).
    A model :mod:`lrstudy.training.vector_stack` can vectorize trains as a stack of one (see
    :func:`fit_stack`); any other, or any with ``vectorize=False``, with Keras's ``fit``."""
    return fit_stack([(scenario, seed, evaluate_test)], [sink], finder_bounds, verbose,
                     vectorize)[0]


def fit_stack(trials, sinks, finder_bounds=None, verbose: int = 0,
              vectorize: bool = True) -> list[dict]:
    """Train ``trials`` (``(scenario, seed, evaluate_test)``, one budget) as one stack
    (:func:`lrstudy.training.stacking.stack_of`), feeding each trial's sink; the outcomes as
    :func:`fit_scenario` returns them, in order. No MLflow here."""

    if len({repr(sorted(sc.budget.items())) for sc, _, _ in trials}) != 1:
        raise ValueError("the trials of a stack must share one budget")
    budget = trials[0][0].budget
    if budget["split"] == splits.PER_SEED and len({seed for _, seed, _ in trials}) != 1:
        # the copies share one training and validation set: the split of one seed
        raise ValueError("the trials of a stack with split = \"per-seed\" must share one seed "
                         "(lrstudy.training.stacking.groups)")
    with determinism.op_determinism(enabled=not budget["jit_compile"]):
        prepared = [prepare_fit(sc, seed, sink, finder_bounds, pipeline=False)
                    for (sc, seed, _), sink in zip(trials, sinks)]
        ds = prepared[0].dataset
        stacked = stacking.stack_of(prepared, steps_per_execution(trials[0][0]), vectorize)
        if stacked is None:  # one trial, which Keras's fit trains as it is
            ((sc, seed, test),), (p,) = trials, prepared
            p.data = batches.train_dataset(ds, budget["batch_size"], seed, p.order)
            p.model.fit(p.data, epochs=budget["epochs"], verbose=verbose, **p.fit_kwargs())
            return [finish_fit(p, sinks[0], evaluate_test=test)]
        for _ in stacking.train(stacked, prepared, verbose):
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


def finish_fit(prepared: PreparedFit, sink: metric_sink.MetricSink, evaluate_test: bool = True,
               test_logs: dict | None = None, test_logs_at_y: dict | None = None) -> dict:
    """Evaluate on the test set and add the final metrics of the trial to ``sink``.

    A diverged trial is evaluated too. ``evaluate_test=False`` (a tuning trial) leaves the
    test set alone: ``test_loss`` and ``test_accuracy`` are NaN and not logged. The final
    times leave out the first epoch's tracing and compiling, logged as ``compile_time_s``
    (see :class:`lrstudy.training.epoch_logger.EpochLogger`). The outcome's ``diverged`` is a bool,
    ``diverged_reason`` one of :data:`lrstudy.training.divergence.DIVERGENCE_REASONS` or "".
    ``test_logs``: the test set's logs when they were had already (a stack evaluates its
    copies in one pass, :meth:`lrstudy.training.keras_stack.StackedModel.evaluate_copies`).
    A schedule-free model (:mod:`lrstudy.lr.schedule_free`) holds its average x after training:
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
