"""The effective step size of an optimizer: |update| / |gradient| per parameter.
"""

from __future__ import annotations

from lrstudy import tfquiet

tf = tfquiet.import_tensorflow()
import numpy as np  # noqa: E402


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
        them: half the ops to trace), in float32, the weights' own precision (float64 buys
        nothing here and costs four times as much)."""
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
    per copy would pay TensorFlow's set-up of a function for each."""

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
