"""Per-epoch metrics at step = epoch, epoch times, time to target, divergence.
"""

from __future__ import annotations

import math
import statistics
import time

import keras  # noqa: E402
import numpy as np  # noqa: E402

from lrstudy import interrupts, tasks
from lrstudy.tracking.metric_sink import MetricSink
from lrstudy.tracking.schema import Metric
from lrstudy.training.divergence import divergence_reason, stopping_reason
from lrstudy.training.effective_step import StepSizeProbe
from lrstudy.training.step_recorder import current_lr


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
                  # a schedule-free model's validation at y (lrstudy.lr.schedule_free), its
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
        self.sink.add_series(Metric.STEP_LEARNING_RATE, its[keep], lrs[keep])
        self.sink.add_series(Metric.STEP_LOSS, its[keep], losses[keep])
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
        # LR of the epoch's first step as recorded (reading it here evaluates the schedule
        # op by op, eagerly)
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
            # on the sorted array: the same values, without np.percentile's selection pass
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
