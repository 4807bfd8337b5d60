"""Every optimizer step's loss and learning rate, recorded inside the compiled step.
"""

from __future__ import annotations

from lrstudy import interrupts, tfquiet

tf = tfquiet.import_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402


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
        :class:`lrstudy.training.vector_stack.VectorStack` records its copies' steps itself): delivered as
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
