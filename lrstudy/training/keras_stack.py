"""A stack as one Keras model: each copy's own train step, side by side in one program.
"""

from __future__ import annotations

from lrstudy import tfquiet
from lrstudy.training.dispatch import copy_logs, prefix
from lrstudy.training.effective_step import ProbeGroup

tf = tfquiet.import_tensorflow()
import keras  # noqa: E402

#: Layers whose output for an example depends on that example alone (for Dropout: on a random
#: draw whose first rows do not depend on the batch size, as the tests check): a model made of
#: these trains on a batch padded with examples of weight 0 as on the batch without them.
ROW_WISE = tuple(getattr(keras.layers, name) for name in (
    "InputLayer", "Dense", "Flatten", "Dropout", "Reshape", "Activation", "Rescaling",
    "Conv1D", "Conv2D", "Conv3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D"))


def row_wise(model) -> bool:
    """Whether every layer of ``model`` is one of :data:`ROW_WISE` (exactly that class)."""
    return all(type(layer) in ROW_WISE for layer in model.layers)


class StackedModel(keras.Model):
    """N compiled Keras models trained side by side: ``train_step`` takes a tuple of N
    ``(x, y)`` batches (one per copy), or with ``train_arrays`` N ``(indices, count)`` pairs
    (see :func:`lrstudy.data.order.batch_indices`); ``test_step`` one ``(x, y)`` batch shared by all.
    Each copy's loss, gradients and update are its own (its ``compute_loss``, its optimizer);
    the logs are ``c<i>/<metric>``.

    A last batch padded to the full size (``count`` examples of it real) is trained with
    weights ``batch / count`` on the real examples and 0 on the padding: Keras's losses divide
    the weighted sum by the batch size, so the loss, its gradients and the metrics are those
    of the ``count`` real examples, and the compiled step keeps one shape (no second XLA
    compile of the whole stack for the last batch of an epoch).

    Its train and test functions are Keras's, made per stack on the copies' own models and
    optimizers (whose variables they capture): each stack traces them anew, as Keras's ``fit``
    does each model, unlike a :class:`~lrstudy.training.vector_stack.VectorStack`'s, which are
    traced once per signature (:mod:`lrstudy.training.traces`). Only its step-size probes
    are shared across stacks."""

    def __init__(self, copies, train_arrays=None, **kwargs):
        super().__init__(**kwargs)
        self.copies = list(copies)
        # the training set, read by the train step: the pipelines give indices only
        self._train_arrays = tuple(train_arrays) if train_arrays is not None else None
        self.live = list(range(len(self.copies)))  # the copies the train step trains
        self.scored = list(self.live)  # the copies validation and the test set evaluate
        self._traced_for = {"train": None, "test": None}  # the copies each step was traced for
        self._probes = ProbeGroup()
        self.built = True

    def probe_copies(self, copies: list[int], loggers: list) -> list:
        """The step-size probes of ``copies``, each its EpochLogger's own, run on the probe
        engine of their signature (:class:`~lrstudy.training.effective_step.ProbeGroup`:
        traced once per process, not per stack)."""
        return self._probes([loggers[i].step_size_probe() for i in copies])

    def freeze(self, i: int) -> None:
        """Copy ``i`` trains no more: left out of the train step from its next call on
        (traced anew then, see :meth:`refresh`), and of validation."""
        for copies in (self.live, self.scored):
            if i in copies:
                copies.remove(i)

    def refresh(self) -> None:
        """Trace the train step again if a copy froze since it was traced (Keras's ``fit``
        makes its train function once, then calls it)."""
        if self.live and self.train_function is not None:
            self.make_train_function()

    def _traced(self, kind: str, copies: list, make, force: bool):
        """The ``kind`` step's function, traced again when ``copies`` changed since."""
        current = getattr(self, f"{kind}_function")
        if current is not None and not force and self._traced_for[kind] == copies:
            return current
        make(force=True)
        self._traced_for[kind] = list(copies)
        return getattr(self, f"{kind}_function")

    def make_train_function(self, force=False):
        return self._traced("train", self.live, super().make_train_function, force)

    def call(self, inputs, training=False):
        return [m(x, training=training) for m, x in zip(self.copies, inputs)]

    @property
    def metrics(self):
        return [m for copy in self.copies for m in copy.metrics]

    @tf.autograph.experimental.do_not_convert  # plain Python: nothing to convert
    def _copy_step(self, copy, x, y, training, weight=None, count=None):
        if training:
            with tf.GradientTape() as tape:
                y_pred = copy(x, training=True)
                loss = copy._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=weight,
                                          training=True)
            weights = copy.trainable_weights
            copy.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        else:
            y_pred = copy(x, training=False)
            loss = copy._compute_loss(x=x, y=y, y_pred=y_pred, training=False)
        copy._loss_tracker.update_state(
            loss, sample_weight=tf.shape(x)[0] if count is None else count)
        return copy.compute_metrics(x, y, y_pred, sample_weight=weight)

    @tf.autograph.experimental.do_not_convert  # plain Python: nothing to convert
    def train_step(self, data):
        logs = {}
        for i, copy in enumerate(self.copies):
            if i not in self.live:  # frozen: its metrics as they stand
                out = copy.get_metrics_result()
            elif self._train_arrays is not None:  # (indices, count): gather the batch here
                x, y = self._train_arrays
                indices, count = data[i]
                out = self._copy_step(copy, tf.gather(x, indices), tf.gather(y, indices),
                                      True, _padding_weights(indices, count), count)
            else:
                out = self._copy_step(copy, *data[i][:2], True)
            logs.update({prefix(i) + k: v for k, v in out.items()})
        return logs

    @tf.autograph.experimental.do_not_convert  # plain Python: nothing to convert
    def test_step(self, data):
        x, y = data[:2]
        logs = {}
        for i, copy in enumerate(self.copies):
            out = (self._copy_step(copy, x, y, False) if i in self.scored
                   else copy.get_metrics_result())
            logs.update({prefix(i) + k: v for k, v in out.items()})
        return logs

    def make_test_function(self, force=False):
        """Validation and the test set run as a plain TensorFlow graph, not under XLA: a few
        large batches an epoch, whose XLA compiles (one per batch shape, every copy's forward
        in each) cost more than they save; tracing is all they need."""
        def plain(force):
            jit, self._jit_compile = self._jit_compile, False
            try:
                super(StackedModel, self).make_test_function(force=force)
            finally:
                self._jit_compile = jit

        return self._traced("test", self.scored, plain, force)

    def evaluate_copies(self, x, y, which, batch_size: int) -> list[dict | None]:
        """Each copy in ``which`` (booleans, one per copy) evaluated on ``(x, y)`` in one pass
        of the stack (one trace for all, where ``model.evaluate`` per copy traces each): its
        logs (``loss`` and its metrics), None for the others (no pass at all when no copy is
        in ``which``). Leaves every copy frozen."""
        if not any(which):
            return [None] * len(which)
        self.scored = [i for i, on in enumerate(which) if on]  # the same copies as the
        logs = self.evaluate(x, y, batch_size=batch_size,  # last validation: no new trace
                             verbose=0, return_dict=True)
        self.scored = []
        return [copy_logs(logs, i) if on else None for i, on in enumerate(which)]


def _padding_weights(indices, count):
    """The sample weights of a batch of which the first ``count`` examples are real (see
    :class:`StackedModel`)."""
    rows = tf.shape(indices)[0]
    real = tf.cast(tf.range(rows) < count, tf.float32)
    return real * (tf.cast(rows, tf.float32) / tf.cast(count, tf.float32))
