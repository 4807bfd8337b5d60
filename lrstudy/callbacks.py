"""Keras callbacks that record what a reader of the study needs, cheaply and exactly.

- :class:`StepRecorder` captures the loss and the learning rate of *every* optimizer step
  inside the compiled train step (into small buffers), so it stays exact when Keras runs many
  steps per execution and callbacks fire only every N steps. Keras's batch logs are running
  averages over the epoch; the recorder keeps the per-batch loss.
- :class:`EpochLogger` records per-epoch metrics at step = epoch, the LR of the epoch,
  epoch times (without the first epoch's tracing and compiling), time to target, divergence
  (:func:`divergence_reason`), and the effective step size of the optimizer.
- :class:`MetricSink` writes the points to the store epoch by epoch, from a thread of its own.

Callbacks share one ``logs`` dict in list order: put LR schedulers before :class:`EpochLogger`.
"""

from __future__ import annotations

import math
import statistics
import time

from lrstudy import interrupts, tasks, tfquiet
from lrstudy.finder import smooth

tf = tfquiet.import_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

MLFLOW_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call
# Divergence (see divergence_reason). Training stops at once when a step's loss is NaN or
# infinite, or exceeds this many times the loss of the first step: with ReLU networks a
# blown-up run often escapes float overflow by killing its units, then wanders at a finite
# but absurd loss.
DIVERGENCE_FACTOR = 1e4
# Judged at the end of training, without stopping it: accuracy within this much of 1/classes
# (train and validation) over the last half of the epochs ...
CHANCE_TOLERANCE = 0.02
# ... or the smoothed training loss above this many times the first step's loss over the
# last half of the steps. A run stuck at chance sits near its initial loss (log(classes)
# for a net that starts near uniform): that is the chance rule's case. Above 3x the net is
# confidently wrong for half of training, which no learning run does; the margin covers a
# first batch's loss that is low by luck and the short spikes of cyclical peaks and warm-ups,
# which the smoothing and "over the whole last half" absorb as well.
LOSS_ABOVE_INITIAL_FACTOR = 3.0
SMOOTHING_BETA = 0.98  # the LR range test's (lrstudy.finder.smooth)
DIVERGENCE_REASONS = ("nonfinite", "blow_up", "chance", "loss_above_initial")


class MetricSink:
    """Buffers metric points and ships them to MLflow in chunks.

    What :meth:`send` ships (each epoch's end sends: the MLflow UI shows a trial's curves,
    per-step series included, while it trains) is written in a thread of the sink's own, in
    order; :meth:`flush` waits. Into a local sqlite store every point goes through
    ``series_writer`` (:func:`lrstudy.sqlstore.series_writer`: bulk inserts, where
    ``log_batch`` builds an ORM object per point: 6 ms of CPU for an epoch's ten metrics),
    into any other store through ``log_batch``; not MLflow's asynchronous one, whose queue
    polls once a second and makes ending a run wait about 1 s (mlflow/mlflow#12324). With
    ``client=None`` it only keeps the points (``.points``), which the tests and figures use.
    """

    def __init__(self, client=None, run_id: str | None = None, keep: bool = True,
                 series_writer=None):
        self.client, self.run_id, self.keep = client, run_id, keep
        self.series_writer = series_writer
        self.points: dict[str, list[tuple[int, float]]] = {}
        self._pending: list = []
        self._series: list[tuple[str, float, int, int]] = []
        self._writes: list = []  # the futures of the writes sent
        self._writer = None  # a one-thread executor, made by the first send

    def add(self, key: str, value: float, step: int) -> None:
        value = float(value)
        if not math.isfinite(value):
            return  # never logged: a diverged run's series stop at the last finite point
        if self.keep:
            self.points.setdefault(key, []).append((int(step), value))
        if self.series_writer is not None:
            self._series.append((key, value, int(time.time() * 1000), int(step)))
        elif self.client is not None:
            from mlflow.entities import Metric

            self._pending.append(Metric(key, value, int(time.time() * 1000), int(step)))
            if len(self._pending) >= MLFLOW_BATCH:
                self.send()

    def add_series(self, key: str, steps, values) -> None:
        """``add`` for each point, in one pass where no MLflow batch is involved (the points
        a series writer stores, or only kept): a few hundred points each drain."""
        if self.series_writer is None and self.client is not None:
            for step, value in zip(steps, values):
                self.add(key, value, step)
            return
        steps, values = np.asarray(steps, np.int64), np.asarray(values, np.float64)
        finite = np.isfinite(values)  # a non-finite value is never logged (see add)
        pairs = list(zip(steps[finite].tolist(), values[finite].tolist()))
        if self.keep:
            self.points.setdefault(key, []).extend(pairs)
        if self.series_writer is not None:
            now = int(time.time() * 1000)
            self._series.extend((key, value, now, step) for step, value in pairs)

    def send(self) -> None:
        """Ship what is buffered without waiting (the sink's thread writes it, in order)."""
        if not (self._pending or self._series):  # points pend only with a client
            return
        if self._writer is None:
            from concurrent.futures import ThreadPoolExecutor

            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="MetricSink")
        if self._series:
            self._writes.append(self._writer.submit(self.series_writer, self.run_id,
                                                    self._series))
            self._series = []
        for i in range(0, len(self._pending), MLFLOW_BATCH):
            self._writes.append(self._writer.submit(
                self.client.log_batch, self.run_id, metrics=self._pending[i:i + MLFLOW_BATCH],
                synchronous=True))
        self._pending = []

    def flush(self) -> None:
        """Send the rest and wait until MLflow has stored everything."""
        self.send()
        writes, self._writes = self._writes, []
        if self._writer is not None:
            self._writer.shutdown(wait=True)  # returns as soon as the last write is done
            self._writer = None
        for write in writes:
            write.result()  # a write's error is raised here

    def last(self, key: str, default=None):
        series = self.points.get(key)
        return series[-1][1] if series else default


def current_lr(optimizer) -> float:
    """The learning rate the optimizer uses at its next step (schedules included)."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class StepRecorder(keras.callbacks.Callback):
    """Records (iteration, learning rate, loss) of every training step inside the graph.

    It wraps the model's ``compute_loss`` (the public override point Keras's ``train_step``
    calls) so that, when training, the loss of the batch and the optimizer's learning rate at
    that iteration are written into a buffer of ``capacity`` rows (at least the model's
    steps per execution), at the row of the step's iteration counted from the last drain: one
    write per step (the iterations between two drains are consecutive, so they are not
    stored). The buffer is drained into ``on_steps(iterations, lrs, losses)`` each time Keras
    returns to Python, so no step is lost.
    """

    def __init__(self, capacity: int, on_steps=None):
        super().__init__()
        self.capacity = int(capacity)
        self.on_steps = on_steps
        self._installed_on = None
        self._rows = tf.Variable(tf.zeros([self.capacity, 2], tf.float32), trainable=False)
        self._start = tf.Variable(0, dtype=tf.int64, trainable=False)  # iteration of row 0

    def set_model(self, model):
        super().set_model(model)
        if self._installed_on is model:
            return
        if model.steps_per_execution > self.capacity:
            raise ValueError(f"StepRecorder capacity {self.capacity} is smaller than the "
                             f"model's steps_per_execution {model.steps_per_execution}")
        original = model.compute_loss
        recorder = self

        def compute_loss(x=None, y=None, y_pred=None, sample_weight=None, training=True):
            interrupts.raise_at("trace")  # Python runs here only while the step is traced
            loss = original(x, y, y_pred, sample_weight, training=training)
            if training:  # a Python bool at trace time: evaluation steps are not recorded
                recorder._record(model.optimizer, loss)
            return loss

        model.compute_loss = compute_loss
        self._installed_on = model

    def _iterations(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def _record(self, optimizer, loss):
        row = tf.cast(optimizer.iterations, tf.int64) - self._start
        row = tf.minimum(row, self.capacity - 1)[None, None]
        lr = tf.cast(optimizer.learning_rate, tf.float32)
        values = tf.stack([tf.reshape(lr, []), tf.reshape(tf.cast(loss, tf.float32), [])])
        self._rows.scatter_nd_update(row, values[None])

    def drain(self):
        start, end = int(self._start.numpy()), self._iterations()
        n = min(end - start, self.capacity)
        self._start.assign(end)
        if n > 0:
            self._deliver(start, self._rows.numpy()[:n])

    def load(self, rows) -> None:
        """Rows ``(LR, loss)`` of the steps since the last drain, computed elsewhere (a
        :class:`lrstudy.vstack.VectorStack` records its copies' steps itself): delivered as
        a drain delivers them, which then finds nothing left."""
        start = int(self._start.numpy())
        self._start.assign(start + len(rows))
        self._deliver(start, np.asarray(rows, np.float32))

    def _deliver(self, start: int, rows) -> None:
        if self.on_steps is not None:
            self.on_steps(np.arange(start, start + len(rows), dtype=np.int64),
                          rows[:, 0].copy(), rows[:, 1].copy())

    def on_train_begin(self, logs=None):
        self._start.assign(self._iterations())

    def on_train_batch_end(self, batch, logs=None):
        self.drain()

    def on_epoch_end(self, epoch, logs=None):
        self.drain()

    def on_train_end(self, logs=None):
        self.drain()


class StepSizeProbe:
    """Per-parameter |update| / |gradient| of one optimizer step on a fixed batch, undone after.

    For plain SGD the ratio is the learning rate; for adaptive optimizers it shows the step
    size they really take. The step and the restore of the weights, the optimizer's slots and
    its iteration count run as one ``tf.function`` (traced once per model: ten times cheaper
    than running it eagerly); the ratios are taken in NumPy (float64).
    """

    def __init__(self, model, loss_fn, x, y):
        self.model, self.loss_fn = model, loss_fn
        self.x, self.y = tf.constant(x), tf.constant(y)
        self._fn = None

    def _probe(self, x, y):
        model, optimizer = self.model, self.model.optimizer
        weights = model.trainable_variables
        saved_weights = [tf.identity(w) for w in weights]
        saved_slots = [tf.identity(v) for v in optimizer.variables]
        with tf.GradientTape() as tape:
            loss = self.loss_fn(y, model(x, training=False))
        grads = tape.gradient(loss, weights)
        optimizer.apply(grads, weights)
        flat = [tf.concat([tf.reshape(t, [-1]) for t in ts], 0)
                for ts in ([w.value for w in weights], saved_weights,
                           [tf.convert_to_tensor(g) for g in grads])]
        with tf.control_dependencies(flat):
            for w, old in zip(weights, saved_weights):
                w.assign(old)
            for v, old in zip(optimizer.variables, saved_slots):
                v.assign(old)
        return [tf.identity(t) for t in flat]

    def build(self) -> bool:
        """Ready to trace (no variables may be created while tracing); False when the model
        has nothing to train (its ratios are empty)."""
        if not self.model.trainable_variables:
            return False
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        return True

    @staticmethod
    def ratios(outputs) -> np.ndarray:
        """The ratios of the parameters whose gradient exceeds 1e-8 in size, from what the
        graph returns: the weights after and before the step and the gradients (NumPy takes
        them: half the ops to trace, 0.1 s less per trial), in float32, the weights' own
        precision (0.4 ms for 100k parameters, a quarter of float64's)."""
        after, before, grads = (np.asarray(t, np.float32) for t in outputs)
        grads = np.abs(grads)
        moved = grads > 1e-8
        return np.abs(after[moved] - before[moved]) / grads[moved]

    def __call__(self) -> np.ndarray:
        if self._fn is None:
            if not self.build():
                return np.zeros(0)
            self._fn = tf.function(self._probe)
        return self.ratios(self._fn(self.x, self.y))


class ProbeGroup:
    """Several models' :class:`StepSizeProbe` run as one ``tf.function``: a stack probes its
    copies in one graph, traced and optimized once (per set of probes), where a function
    per copy paid TensorFlow's set-up of a function each (0.1-0.2 s)."""

    def __init__(self):
        self._fns: dict[tuple, object] = {}

    def __call__(self, probes) -> list[np.ndarray]:
        """Each probe's ratios (see :meth:`StepSizeProbe.ratios`), in order."""
        live = [p for p in probes if p.build()]
        key = tuple(map(id, live))
        if live and key not in self._fns:
            self._fns[key] = tf.function(lambda: [p._probe(p.x, p.y) for p in live])
        outputs = dict(zip(key, self._fns[key]())) if live else {}
        return [StepSizeProbe.ratios(outputs[id(p)]) if id(p) in outputs else np.zeros(0)
                for p in probes]


def _last_half(n: int) -> int:
    """How many of ``n`` epochs or steps are its last half: ``ceil(n / 2)``, at least 1."""
    return max(1, math.ceil(n / 2))


def stopping_reason(losses, first_loss: float | None) -> tuple[int, str] | None:
    """The first step (index into ``losses``) that stops training, and why, or None:
    ``"nonfinite"``: its loss is NaN or infinite; ``"blow_up"``: above
    :data:`DIVERGENCE_FACTOR` times ``first_loss`` (the first step's loss; None: no bound)."""
    losses = np.asarray(losses, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        nonfinite = ~np.isfinite(losses)
        bad = nonfinite | (losses > DIVERGENCE_FACTOR * (first_loss or np.inf))
    if not bad.any():
        return None
    at = int(np.argmax(bad))
    return at, "nonfinite" if nonfinite[at] else "blow_up"


def at_chance(epoch_logs, num_classes: int | None,
              tolerance: float = CHANCE_TOLERANCE) -> bool:
    """Whether ``accuracy`` and ``val_accuracy`` (where logged) of the last half of the epochs
    all lie within ``tolerance`` of ``1 / num_classes``."""
    if not epoch_logs or not num_classes or num_classes < 2:
        return False
    chance = 1.0 / num_classes
    for logs in epoch_logs[-_last_half(len(epoch_logs)):]:
        values = [logs[k] for k in ("accuracy", "val_accuracy") if logs.get(k) is not None]
        if not values or not all(abs(float(v) - chance) <= tolerance + 1e-9 for v in values):
            return False  # a NaN accuracy is not "at chance": the non-finite rule's case
    return True


def loss_stays_above_initial(losses, factor: float = LOSS_ABOVE_INITIAL_FACTOR,
                             beta: float = SMOOTHING_BETA) -> bool:
    """Whether the smoothed loss stays above ``factor`` times the first step's loss over the
    last half of the steps. Smoothed: the bias-corrected EMA of :func:`lrstudy.finder.smooth`,
    started afresh at the last half, so that a spike the run recovered from earlier (a first
    step at a large LR) cannot hold it up there: at beta 0.98 the EMA remembers about 50
    steps, as long as the whole of a short trial."""
    losses = np.asarray(losses, dtype=np.float64)
    if not losses.size or not np.isfinite(losses).all() or losses[0] <= 0:
        return False
    smoothed = smooth(losses[-_last_half(len(losses)):], beta)
    return bool((smoothed > factor * losses[0]).all())


def divergence_reason(epoch_logs, losses, num_classes: int | None) -> str:
    """Why a trial has diverged, or "" when it has not.

    ``epoch_logs``: one dict of Keras logs per epoch (``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``); ``losses``: the loss of every step, in order. The first rule that holds
    names the reason (:data:`DIVERGENCE_REASONS`):

    - ``nonfinite``: a step's loss, or an epoch's ``loss`` or ``val_loss``, is NaN or infinite;
    - ``blow_up``: a step's loss exceeds :data:`DIVERGENCE_FACTOR` times the first step's
      (these two stop training at once, see :class:`EpochLogger`);
    - ``chance``: the accuracies are stuck at chance (:func:`at_chance`);
    - ``loss_above_initial``: the smoothed loss stays high (:func:`loss_stays_above_initial`).
    """
    losses = np.asarray(losses, dtype=np.float64)
    finite = losses[np.isfinite(losses)]
    stop = stopping_reason(losses, float(finite[0]) if finite.size else None)
    if stop is not None:
        return stop[1]
    if any(not math.isfinite(float(logs.get(k, 0.0))) for logs in epoch_logs
           for k in ("loss", "val_loss")):
        return "nonfinite"
    if at_chance(epoch_logs, num_classes):
        return "chance"
    if loss_stays_above_initial(losses):
        return "loss_above_initial"
    return ""


def first_epoch_extra(calls, tails=()) -> float | None:
    """The first epoch's one-off cost (tracing, XLA compiles) in seconds, or None.

    ``calls[e]``: the wall times of epoch ``e``'s calls of the train function, in order, each
    from the end of the call before (the first: from the epoch's start, when Keras makes the
    epoch's data iterator) to its end. Each runs ``steps_per_execution`` steps; the last one
    of an epoch may run fewer, on a smaller last batch: a new shape, which XLA compiles once
    more in the first epoch. Every epoch makes the same calls on batches of the same sizes,
    so each call of the first epoch is set against the median of the same call in the later
    epochs, and the differences are summed. ``tails[e]``: the rest of epoch ``e``, from the
    end of its last call to the epoch's end: the validation, whose first run traces and
    compiles the test function (twice with a smaller last batch under XLA) and makes the
    validation data's iterator; it is set against the median of the later tails. The calls
    and the tail make up the whole epoch, so what is left of the first is a steady epoch.

    A one-epoch trial has no later epoch: its first call is set against the median of its
    other full calls (not the last: a possibly smaller batch, compiled anew), and neither the
    last call's nor the validation's compile can be told apart. With fewer than three calls
    nothing can: None.
    """
    first, later = list(calls[0]) if calls else [], [list(c) for c in calls[1:]]
    if later:
        train = 0.0
        for i, t in enumerate(first):
            same = [c[i] for c in later if len(c) > i]
            if same:
                train += t - statistics.median(same)
    elif len(first) >= 3:
        train = first[0] - statistics.median(first[1:-1])
    else:
        return None
    extra = max(0.0, train)
    if len(tails) > 1:
        extra += max(0.0, tails[0] - statistics.median(tails[1:]))
    return extra


class EpochLogger(keras.callbacks.Callback):
    """Per-epoch metrics at step = epoch, per-step series, divergence and time to target.

    ``sink`` receives every point (see :class:`MetricSink`). ``probe``: a small fixed batch
    ``(x, y)`` for the effective step size at each epoch's start (None to skip), undone and
    not part of the epoch time. ``learning_rate``: the LR of the epoch's first step, as a
    :class:`StepRecorder` feeding :meth:`on_steps` records it. ``num_classes``: chance's
    denominator (default: the model's output size).

    Times: ``epoch_time_s`` runs from the epoch's start (after the probe) to its end,
    validation included; the first epoch's also leaves out its one-off tracing and XLA
    compiles (:func:`first_epoch_extra`), kept as :attr:`compile_time` (None when it cannot be
    told apart, see there). The first epoch's ``epoch_time_s`` is therefore logged when
    training ends. :attr:`train_time` is the sum of the epoch times, :attr:`time_to_target`
    their sum up to the epoch that reached ``target``. One ``fit`` per logger.

    Divergence: a non-finite or blown-up step loss stops training at once (``diverged_step``
    is that step); the other rules of :func:`divergence_reason` are judged when training
    ends. :attr:`diverged_reason` says which (or ""), :attr:`diverged` whether any.
    """

    EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy",
                  "mae", "rmse", "val_mae", "val_rmse",  # those Keras logs (by the task)
                  # a schedule-free model's validation at y (lrstudy.schedule_free), its
                  # val_* being at x
                  "val_loss_at_y", "val_accuracy_at_y", "val_mae_at_y", "val_rmse_at_y")

    def __init__(self, sink: MetricSink, *, target: float = 0.0, log_every: int = 1,
                 loss_fn=None, probe=None, num_classes: int | None = None, task=None):
        super().__init__()
        #: the target is on ``task.val_metric`` (``val_accuracy`` by default, >= target)
        self.task = task or tasks.CLASSIFICATION
        self.sink, self.target, self.log_every = sink, target, max(1, int(log_every))
        self.loss_fn, self.probe, self.num_classes = loss_fn, probe, num_classes
        self._probe = None
        self.defer_probe = False  # a stack probes its copies together (see take_probe)
        self.stop_reason = ""  # the rule that stopped training: "nonfinite", "blow_up" or ""
        self.diverged_reason = ""
        self.diverged_step = None
        self.first_loss = None
        self.epochs_to_target = None
        self.compile_time = None
        self.epochs_done = 0
        self.epoch_logs: list[dict] = []
        self._losses: list[np.ndarray] = []
        self._raw_times: list[float] = []  # per epoch, compile included
        self._calls: list[list[float]] = []  # per epoch, the train function's calls
        self._tails: list[float] = []  # per epoch, from the end of its last call to its end
        self._first_epoch = None  # (index, pending) until the first epoch's time is logged
        self._t0 = self._t_mark = 0.0  # the epoch's start; the end of its last call
        self._in_epoch = False
        self._fed = False  # whether a StepRecorder delivers the steps (see on_epoch_begin)
        self._epoch_lr = None

    @property
    def diverged(self) -> bool:
        return bool(self.diverged_reason)

    @property
    def epoch_times(self) -> list[float]:
        """Each epoch's time, the first one's without :attr:`compile_time`."""
        times = list(self._raw_times)
        if times and self.compile_time:
            times[0] -= self.compile_time
        return times

    @property
    def train_time(self) -> float:
        return sum(self.epoch_times)

    @property
    def time_to_target(self) -> float | None:
        if self.epochs_to_target is None:
            return None
        return sum(self.epoch_times[:self.epochs_to_target - self._epoch_offset])

    @property
    def _epoch_offset(self) -> int:
        return self._first_epoch[0] if self._first_epoch else 0

    # -- per step (fed by StepRecorder) --------------------------------------------------
    def on_steps(self, its, lrs, losses):
        self._fed = True
        if self._epoch_lr is None:  # the epoch's first step
            self._epoch_lr = float(lrs[0])
        keep = its % self.log_every == 0
        self.sink.add_series("step_learning_rate", its[keep], lrs[keep])
        self.sink.add_series("step_loss", its[keep], losses[keep])
        self._losses.append(losses)
        if self.first_loss is None and np.isfinite(losses[0]):
            self.first_loss = float(losses[0])
        stop = stopping_reason(losses, self.first_loss)
        if stop is not None and not self.stop_reason:
            self.diverged_step, self.stop_reason = int(its[stop[0]]), stop[1]
            self.diverged_reason = self.stop_reason
            self.model.stop_training = True

    # -- the epoch's time line, cut at the end of each call (see first_epoch_extra) --------
    def on_train_batch_end(self, batch, logs=None):  # after StepRecorder drained the call
        if self._in_epoch:
            now = time.perf_counter()
            self._calls[-1].append(now - self._t_mark)
            self._t_mark = now

    # -- per epoch ------------------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        # the LR and the effective step size the epoch starts with (after any per-epoch
        # scheduler, earlier in the callback list); once a StepRecorder feeds the logger, the
        # LR of the epoch's first step as recorded (reading it here costs 1.7 ms an epoch)
        self._epoch_lr = None if self._fed else current_lr(self.model.optimizer)
        self._ratios = None
        if self.wants_probe() and not self.defer_probe:
            self._ratios = self.step_size_probe()()
        self._calls.append([])
        self._in_epoch = True
        self._t0 = self._t_mark = time.perf_counter()

    # -- the probe, which a stack runs for all its copies at once (defer_probe) ------------
    def wants_probe(self) -> bool:
        return self.probe is not None and not self.stop_reason

    def step_size_probe(self) -> StepSizeProbe:
        if self._probe is None or self._probe.model is not self.model:
            self._probe = StepSizeProbe(self.model, self.loss_fn, *self.probe)
        return self._probe

    def take_probe(self, ratios: np.ndarray) -> None:
        """The epoch's probe, run by a stack after ``on_epoch_begin``: the epoch's clock
        starts again after it, as after the logger's own."""
        self._ratios = ratios
        self._t0 = self._t_mark = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        interrupts.raise_at("epoch")
        now = time.perf_counter()
        elapsed = now - self._t0
        self._in_epoch = False
        self._raw_times.append(elapsed)
        self._tails.append(now - self._t_mark)
        if self._first_epoch is None:
            self._first_epoch = (epoch, True)  # its time is logged at the end of training
        else:
            self.sink.add("epoch_time_s", elapsed, epoch)
        self.epochs_done = epoch + 1
        logs = logs or {}
        self.epoch_logs.append({k: float(logs[k]) for k in self.EPOCH_KEYS if k in logs})
        for key in self.EPOCH_KEYS:
            if key in logs:
                self.sink.add(key, logs[key], epoch)
        if self._epoch_lr is not None:
            self.sink.add("learning_rate", self._epoch_lr, epoch)
        if any(not math.isfinite(float(logs.get(k, 0.0))) for k in ("loss", "val_loss")):
            if not self.stop_reason:
                self.diverged_step = int(self.model.optimizer.iterations)
                self.stop_reason = self.diverged_reason = "nonfinite"
            self.model.stop_training = True
        if self._ratios is not None and self._ratios.size:
            # sorted first: 0.6 ms for 100k ratios, where np.percentile's selection took 1.7
            quantiles = (10, 50, 90)
            for q, value in zip(quantiles, np.percentile(np.sort(self._ratios), quantiles)):
                self.sink.add(f"effective_lr_p{q}", value, epoch)
        val = logs.get(self.task.val_metric)
        if (self.epochs_to_target is None and self.target and val is not None
                and self.task.reached(val, self.target)):
            self.epochs_to_target = epoch + 1
        self.sink.send()

    def on_train_end(self, logs=None):  # after StepRecorder's last drain
        if self._first_epoch is not None and self._first_epoch[1]:
            self.compile_time = first_epoch_extra(self._calls, self._tails)
            self.sink.add("epoch_time_s", self.epoch_times[0], self._first_epoch[0])
            self._first_epoch = (self._first_epoch[0], False)
        if not self.stop_reason:
            losses = np.concatenate(self._losses) if self._losses else np.zeros(0)
            self.diverged_reason = divergence_reason(self.epoch_logs, losses,
                                                     self._classes())

    def _classes(self) -> int | None:
        if self.num_classes:
            return int(self.num_classes)
        try:
            size = int(self.model.outputs[0].shape[-1])
        except (AttributeError, IndexError, TypeError, ValueError):
            return None
        return 2 if size == 1 else size
