"""Each copy of a stack its own callbacks: the one callback of a stacked fit, and the
protocol both kinds of stack follow.
"""

from __future__ import annotations

from typing import Protocol

import keras  # noqa: E402

from lrstudy.training import epoch_logger, step_recorder


class Stack(Protocol):
    """What the :class:`Dispatcher` needs of a stack, the same of both kinds
    (:class:`lrstudy.training.keras_stack.StackedModel`,
    :class:`lrstudy.training.vector_stack.VectorStack`): the copies' models, those validation
    scores (``scored``), whether the stack stops, a copy frozen, the traced functions made
    again without the frozen copies, and the step-size probes of some copies run as one."""

    copies: list
    scored: list
    stop_training: bool

    def freeze(self, i: int) -> None: ...

    def refresh(self) -> None: ...

    def probe_copies(self, copies: list[int], loggers: list) -> list: ...


def prefix(i: int) -> str:
    """The prefix of copy ``i``'s entries in a stack's logs: ``c3/loss``, ``val_c3/loss``."""
    return f"c{i}/"


def copy_logs(logs, i: int) -> dict:
    """Copy ``i``'s entries of the stack's ``logs``, under the names its callbacks know."""
    out = {}
    for key, value in (logs or {}).items():
        val = key.startswith("val_")
        name = key[4:] if val else key
        if name.startswith(prefix(i)):
            out[("val_" if val else "") + name[len(prefix(i)):]] = value
    return out


class Dispatcher(keras.callbacks.Callback):
    """The stacked ``fit``'s callback: runs each copy's own callbacks on the copy's model and
    logs, freezes a copy its callbacks stop (and ends its training there, as unstacked), and
    stops the stack when every copy has stopped."""

    def __init__(self, stacked: Stack, callbacks_per_copy):
        super().__init__()
        self.stacked = stacked
        self.lists = [keras.callbacks.CallbackList(list(cbs), model=copy)
                      for copy, cbs in zip(stacked.copies, callbacks_per_copy)]
        self.done = [False] * len(self.lists)
        def each_copys(kind):
            return [next((c for c in cbs if isinstance(c, kind)), None)
                    for cbs in callbacks_per_copy]

        # each copy's EpochLogger (or None): their step-size probes run as one function
        self.loggers = each_copys(epoch_logger.EpochLogger)
        # and its StepRecorder (or None): a VectorStack hands it the steps it recorded
        self.recorders = each_copys(step_recorder.StepRecorder)
        for logger in filter(None, self.loggers):
            logger.defer_probe = True

    def _live(self):
        return [i for i, done in enumerate(self.done) if not done]

    def _end(self, i, logs=None):
        self.done[i] = True
        self.stacked.freeze(i)
        copy = self.stacked.copies[i]
        copy.optimizer.finalize_variable_values(copy.trainable_weights)
        self.lists[i].on_train_end(copy_logs(logs, i))
        if all(self.done):
            self.stacked.stop_training = True

    def on_train_begin(self, logs=None):
        for i in self._live():
            self.stacked.copies[i].stop_training = False
            self.lists[i].on_train_begin()

    def on_epoch_begin(self, epoch, logs=None):
        for i in self._live():
            self.lists[i].on_epoch_begin(epoch)
        # after every copy's per-epoch schedulers, as a logger's own probe comes after them
        probed = [i for i in self._live()
                  if self.loggers[i] is not None and self.loggers[i].wants_probe()]
        if not probed:
            return
        ratios = self.stacked.probe_copies(probed, self.loggers)
        for i, r in zip(probed, ratios):
            self.loggers[i].take_probe(r)

    def on_train_batch_begin(self, batch, logs=None):
        self.stacked.refresh()  # before the call: without the copies frozen since the last
        for i in self._live():
            self.lists[i].on_train_batch_begin(batch)

    def on_train_batch_end(self, batch, logs=None):
        for i in self._live():
            self.lists[i].on_train_batch_end(batch, copy_logs(logs, i))
            if self.stacked.copies[i].stop_training:  # frozen from the next call on
                self.stacked.freeze(i)

    # a StackedModel's validation, for the copies it evaluates (a schedule-free copy's
    # callback swaps its average in: lrstudy.lr.schedule_free.EvaluateAtX)
    def on_test_begin(self, logs=None):
        for i in list(self.stacked.scored):
            self.lists[i].on_test_begin()

    def on_test_end(self, logs=None):
        for i in list(self.stacked.scored):
            self.lists[i].on_test_end(copy_logs(logs, i))

    def on_epoch_end(self, epoch, logs=None):
        for i in self._live():
            self.lists[i].on_epoch_end(epoch, copy_logs(logs, i))
            if self.stacked.copies[i].stop_training:
                self._end(i, logs)

    def on_train_end(self, logs=None):
        for i in self._live():
            self._end(i, logs)
