"""Keras callbacks that record what a reader of the study needs, cheaply and exactly.

- :class:`StepRecorder` captures the loss and the learning rate of *every* optimizer step
  inside the compiled train step (into small buffers), so it stays exact when Keras runs many
  steps per execution and callbacks fire only every N steps. Keras's batch logs are running
  averages over the epoch; the recorder keeps the per-batch loss.
- :class:`EpochLogger` records per-epoch metrics at step = epoch, the LR of the epoch,
  epoch times, time to target, divergence, and the effective step size of the optimizer.
- :class:`MetricSink` sends metrics to MLflow in batches of at most 1000, asynchronously,
  and is flushed at the end.

Callbacks share one ``logs`` dict in list order: put LR schedulers before :class:`EpochLogger`.
"""

from __future__ import annotations

import math
import time

from lrstudy import interrupts, tfquiet

tf = tfquiet.import_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

MLFLOW_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call
# A trial has diverged when a step's loss is NaN or infinite, or when it exceeds this many
# times the loss of the first step: with ReLU networks a blown-up run often escapes float
# overflow by killing its units, and then wanders at a finite but absurd loss.
DIVERGENCE_FACTOR = 1e4


SERIES_PREFIX = "step_"  # the long per-step series


class MetricSink:
    """Buffers metric points and ships them to MLflow in chunks.

    Per-epoch and final metrics go through MLflow's asynchronous ``log_batch``. The long
    per-step series go through ``series_writer`` when there is one
    (:func:`lrstudy.sqlstore.series_writer`: one bulk insert into a local sqlite store at
    :meth:`flush`), else through ``log_batch`` too. With ``client=None`` it only keeps the
    points (``.points``), which the tests and the notebooks' figures use.
    """

    def __init__(self, client=None, run_id: str | None = None, keep: bool = True,
                 series_writer=None):
        self.client, self.run_id, self.keep = client, run_id, keep
        self.series_writer = series_writer
        self.points: dict[str, list[tuple[int, float]]] = {}
        self._pending: list = []
        self._series: list[tuple[str, float, int, int]] = []
        self._operations: list = []

    def add(self, key: str, value: float, step: int) -> None:
        value = float(value)
        if not math.isfinite(value):
            return  # never logged: a diverged run's series stop at the last finite point
        if self.keep:
            self.points.setdefault(key, []).append((int(step), value))
        if self.series_writer is not None and key.startswith(SERIES_PREFIX):
            self._series.append((key, value, int(time.time() * 1000), int(step)))
        elif self.client is not None:
            from mlflow.entities import Metric

            self._pending.append(Metric(key, value, int(time.time() * 1000), int(step)))
            if len(self._pending) >= MLFLOW_BATCH:
                self.send()

    def add_series(self, key: str, steps, values) -> None:
        for step, value in zip(steps, values):
            self.add(key, value, step)

    def send(self) -> None:
        """Ship what is buffered without waiting (MLflow's async logging)."""
        if self.client is None or not self._pending:
            return
        for i in range(0, len(self._pending), MLFLOW_BATCH):
            op = self.client.log_batch(self.run_id, metrics=self._pending[i:i + MLFLOW_BATCH],
                                       synchronous=False)
            if op is not None:
                self._operations.append(op)
        self._pending = []

    def flush(self) -> None:
        """Send the rest and wait until MLflow has stored everything."""
        if self._series:
            self.series_writer(self.run_id, self._series)
            self._series = []
        self.send()
        for op in self._operations:
            op.wait()
        self._operations = []

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
    that iteration are written into buffers of ``capacity`` entries (at least the model's
    steps per execution). The buffers are drained into ``on_steps(iterations, lrs, losses)``
    each time Keras returns to Python, so no step is lost.
    """

    def __init__(self, capacity: int, on_steps=None):
        super().__init__()
        self.capacity = int(capacity)
        self.on_steps = on_steps
        self._installed_on = None
        self._its = tf.Variable(tf.zeros([self.capacity], tf.int64), trainable=False)
        self._lrs = tf.Variable(tf.zeros([self.capacity], tf.float32), trainable=False)
        self._losses = tf.Variable(tf.zeros([self.capacity], tf.float32), trainable=False)
        self._count = tf.Variable(0, dtype=tf.int32, trainable=False)

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

    def _record(self, optimizer, loss):
        i = tf.minimum(self._count.read_value(), self.capacity - 1)[None, None]
        self._its.scatter_nd_update(i, tf.cast(optimizer.iterations, tf.int64)[None])
        lr = tf.cast(optimizer.learning_rate, tf.float32)
        self._lrs.scatter_nd_update(i, tf.reshape(lr, [1]))
        self._losses.scatter_nd_update(i, tf.reshape(tf.cast(loss, tf.float32), [1]))
        self._count.assign_add(1)

    def drain(self):
        n = min(int(self._count.numpy()), self.capacity)
        if n == 0:
            return
        its = self._its.numpy()[:n].copy()
        lrs = self._lrs.numpy()[:n].copy()
        losses = self._losses.numpy()[:n].copy()
        self._count.assign(0)
        if self.on_steps is not None:
            self.on_steps(its, lrs, losses)

    def on_train_batch_end(self, batch, logs=None):
        self.drain()

    def on_epoch_end(self, epoch, logs=None):
        self.drain()

    def on_train_end(self, logs=None):
        self.drain()


class StepSizeProbe:
    """Per-parameter |update| / |gradient| of one optimizer step on a fixed batch, undone after.

    For plain SGD the ratio is the learning rate; for adaptive optimizers it shows the step
    size they really take. The step, the ratios and the restore of the weights, the optimizer's
    slots and its iteration count run as one compiled ``tf.function`` (traced once per model):
    ten times cheaper than running it eagerly.
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
        ratios = []
        for w, old, g in zip(weights, saved_weights, grads):
            update = tf.abs(tf.cast(w.value, tf.float64) - tf.cast(old, tf.float64))
            grad = tf.abs(tf.cast(tf.convert_to_tensor(g), tf.float64))
            mask = grad > 1e-8
            ratios.append(tf.boolean_mask(update, mask) / tf.boolean_mask(grad, mask))
        with tf.control_dependencies(ratios):
            for w, old in zip(weights, saved_weights):
                w.assign(old)
            for v, old in zip(optimizer.variables, saved_slots):
                v.assign(old)
        return tf.concat(ratios, 0) if ratios else tf.zeros([0], tf.float64)

    def __call__(self) -> np.ndarray:
        if self._fn is None:
            if not self.model.optimizer.built:  # no variables may be created while tracing
                self.model.optimizer.build(self.model.trainable_variables)
            self._fn = tf.function(self._probe)
        return self._fn(self.x, self.y).numpy()


class EpochLogger(keras.callbacks.Callback):
    """Per-epoch metrics at step = epoch, per-step series, divergence and time to target.

    ``sink`` receives every point (see :class:`MetricSink`). ``probe`` is a small fixed batch
    ``(x, y)`` used for the effective step size at each epoch's start, where ``learning_rate``
    is read too (None to skip). The probe's step is undone and is not part of the epoch time.
    """

    EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")

    def __init__(self, sink: MetricSink, *, target: float = 0.0, log_every: int = 1,
                 loss_fn=None, probe=None):
        super().__init__()
        self.sink, self.target, self.log_every = sink, target, max(1, int(log_every))
        self.loss_fn, self.probe = loss_fn, probe
        self._probe = None
        self.diverged = False
        self.diverged_step = None
        self.first_loss = None
        self.epochs_to_target = None
        self.time_to_target = None
        self.train_time = 0.0
        self.epochs_done = 0
        self._t0 = 0.0

    # -- per step (fed by StepRecorder) --------------------------------------------------
    def on_steps(self, its, lrs, losses):
        keep = its % self.log_every == 0
        self.sink.add_series("step_learning_rate", its[keep], lrs[keep])
        self.sink.add_series("step_loss", its[keep], losses[keep])
        if self.first_loss is None and np.isfinite(losses[0]):
            self.first_loss = float(losses[0])
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(losses) | (losses > DIVERGENCE_FACTOR * (self.first_loss or np.inf))
        if bad.any() and not self.diverged:
            self.diverged = True
            self.diverged_step = int(its[np.argmax(bad)])
            self.model.stop_training = True

    # -- per epoch ------------------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        # the LR and the effective step size the epoch starts with (after any per-epoch
        # scheduler, which comes earlier in the callback list)
        self._epoch_lr = current_lr(self.model.optimizer)
        self._ratios = None
        if self.probe is not None and not self.diverged:
            if self._probe is None or self._probe.model is not self.model:
                self._probe = StepSizeProbe(self.model, self.loss_fn, *self.probe)
            self._ratios = self._probe()
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        interrupts.raise_at("epoch")
        elapsed = time.perf_counter() - self._t0
        self.train_time += elapsed
        self.epochs_done = epoch + 1
        logs = logs or {}
        for key in self.EPOCH_KEYS:
            if key in logs:
                self.sink.add(key, logs[key], epoch)
        self.sink.add("learning_rate", self._epoch_lr, epoch)
        self.sink.add("epoch_time_s", elapsed, epoch)
        if any(not math.isfinite(float(logs.get(k, 0.0))) for k in ("loss", "val_loss")):
            if not self.diverged:
                self.diverged, self.diverged_step = True, int(self.model.optimizer.iterations)
            self.model.stop_training = True
        if self._ratios is not None and self._ratios.size:
            for q in (10, 50, 90):
                self.sink.add(f"effective_lr_p{q}", np.percentile(self._ratios, q), epoch)
        val_acc = logs.get("val_accuracy")
        if (self.epochs_to_target is None and self.target and val_acc is not None
                and val_acc >= self.target):
            self.epochs_to_target, self.time_to_target = epoch + 1, self.train_time
        self.sink.send()
