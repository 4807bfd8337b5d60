"""The effective step size of an optimizer: |update| / |gradient| per parameter.
"""

from __future__ import annotations

import itertools
import json

from lrstudy import tfquiet

tf = tfquiet.import_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

from lrstudy.training import traces  # noqa: E402

_OWN = itertools.count()  # the per-model fallback's functions, each its own signature

#: How many probe engines (:class:`_ProbeEngine`, one per signature) a process keeps.
MAX_ENGINES = 4
ENGINES = traces.Engines(MAX_ENGINES)


def _anonymous(config):
    """A Keras configuration with its names (``name`` entries, and where a functional model's
    wiring refers to them) replaced by their order of appearance: two models of one
    architecture built one after the other differ in their names only."""
    names: dict[str, str] = {}

    def collect(c):
        if isinstance(c, dict):
            if isinstance(c.get("name"), str):
                names.setdefault(c["name"], f"#{len(names)}")
            for v in c.values():
                collect(v)
        elif isinstance(c, (list, tuple)):
            for v in c:
                collect(v)

    def rename(c):
        if isinstance(c, dict):
            return {k: rename(v) for k, v in c.items()}
        if isinstance(c, (list, tuple)):
            return [rename(v) for v in c]
        return names.get(c, c) if isinstance(c, str) else c

    collect(config)
    return rename(config)


def signature(model, loss_fn, x, y) -> tuple | None:
    """What a probe's traced function depends on: the model's architecture (its
    configuration, names aside: :func:`_anonymous`), the loss's class and configuration, the
    optimizer's class and configuration (:func:`lrstudy.training.traces.optimizer_config`,
    the LR aside), whether its momentum is cycled, and the probe batch's shapes. None when the model or the
    loss has no configuration to compare (the probe is then traced per model)."""
    try:
        arch = json.dumps(_anonymous(model.get_config()), sort_keys=True, default=repr)
        loss = json.dumps(_anonymous(loss_fn.get_config()), sort_keys=True, default=repr)
    except (AttributeError, NotImplementedError, TypeError):
        return None
    opt = model.optimizer
    return (type(model), arch, type(loss_fn), loss, type(opt),
            repr(sorted(traces.optimizer_config(opt).items())),
            getattr(opt, "momentum_fn", None) is not None,
            tuple(x.shape), x.dtype.name, tuple(y.shape), y.dtype.name)


class _ProbeEngine:
    """The traced probe of every :class:`StepSizeProbe` of one :func:`signature`, made once per
    process (:data:`ENGINES`): a model of the architecture (a clone) and an optimizer of the
    class and configuration whose LR (and cycled momentum) are variables, on which the probe
    is traced once. A probe assigns its model's weights, its optimizer's slots and iteration,
    and the LR (and momentum) its optimizer uses at that iteration to them (:meth:`load`),
    then calls :attr:`fn`: nothing to undo, the trial's own variables are only read."""

    def __init__(self, sig: tuple, model, loss_fn):
        self.model = _clone(model)
        self.loss_fn = type(loss_fn).from_config(loss_fn.get_config())
        opt = model.optimizer
        self.lr = tf.Variable(0.0, trainable=False, name="probe_lr")
        self.momentum = tf.Variable(0.0, trainable=False, name="probe_momentum")
        kwargs = {}
        if getattr(opt, "momentum_fn", None) is not None:
            kwargs["momentum_fn"] = lambda it: self.momentum
        self.optimizer = type(opt)(learning_rate=lambda: self.lr, **kwargs,
                                   **traces.optimizer_config(opt))
        self.optimizer.build(self.model.trainable_variables)
        self.fn = traces.function(self._probe, "StepSizeProbe._probe", sig, autograph=False)

    def pairs(self, model) -> list | None:
        """(the trial's variable, the engine's) for each weight of the model and each optimizer
        variable but the LR, in order; None when they do not match in number and shape."""
        opt = model.optimizer
        skip = {id(getattr(opt, "_learning_rate", None))}
        mine = list(model.weights) + [v for v in opt.variables if id(v) not in skip]
        engine = list(self.model.weights) + list(self.optimizer.variables)
        if len(mine) != len(engine) or any(tuple(a.shape) != tuple(b.shape)
                                           for a, b in zip(mine, engine)):
            return None
        return list(zip(mine, engine))

    def load(self, model, pairs) -> None:
        """The trial's state into the engine: ``pairs`` (:meth:`pairs`), and the LR and
        cycled momentum its optimizer uses at its iteration."""
        for mine, engine in pairs:
            engine.assign(mine.value)
        opt = model.optimizer
        self.lr.assign(tf.cast(tf.reshape(opt._get_current_learning_rate(), []), tf.float32))
        if getattr(opt, "momentum_fn", None) is not None:
            self.momentum.assign(tf.cast(tf.reshape(opt.momentum_fn(opt.iterations), []),
                                         tf.float32))

    def _probe(self, x, y):
        return _step(self.model, self.optimizer, self.loss_fn, x, y, restore=False)


def _clone(model):
    """A model of ``model``'s architecture, built from its configuration (its layers' classes
    known by name while it is read), with weights of its own, not compiled."""
    custom = {type(layer).__name__: type(layer) for layer in model._flatten_layers()}
    with keras.saving.custom_object_scope(custom):
        return type(model).from_config(model.get_config())


def _step(model, optimizer, loss_fn, x, y, restore: bool):
    """One step of ``optimizer`` on ``model`` on ``(x, y)``: the weights after and before it
    and the gradients, flat; with ``restore``, the weights and optimizer variables put back
    after."""
    weights = model.trainable_variables
    saved_weights = [tf.identity(w) for w in weights]
    saved_slots = [tf.identity(v) for v in optimizer.variables] if restore else []
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=False))
    grads = tape.gradient(loss, weights)
    optimizer.apply(grads, weights)
    flat = [tf.concat([tf.reshape(t, [-1]) for t in ts], 0)
            for ts in ([w.value for w in weights], saved_weights,
                       [tf.convert_to_tensor(g) for g in grads])]
    if restore:
        with tf.control_dependencies(flat):
            for w, old in zip(weights, saved_weights):
                w.assign(old)
            for v, old in zip(optimizer.variables, saved_slots):
                v.assign(old)
    return [tf.identity(t) for t in flat]


class StepSizeProbe:
    """Per-parameter |update| / |gradient| of one optimizer step on a fixed batch.

    For plain SGD the ratio is the learning rate; for adaptive optimizers it shows the step
    size they really take. The step runs as a ``tf.function`` traced once per
    :func:`signature` in a process, on an engine's copy of the model and optimizer that is
    given this model's state first (:class:`_ProbeEngine`): probes of many trials of one
    architecture and optimizer share one trace. A model whose configuration cannot be
    compared (or whose state does not match a clone's) is probed by a function of its own,
    traced once per model, which steps the model itself and restores its weights, optimizer
    slots and iteration count. The ratios are taken in NumPy (float32).
    """

    def __init__(self, model, loss_fn, x, y):
        self.model, self.loss_fn = model, loss_fn
        self.x, self.y = tf.constant(x), tf.constant(y)
        self._run = None

    def _probe(self, x, y):
        """The step on this model, restored after (the per-model fallback)."""
        return _step(self.model, self.model.optimizer, self.loss_fn, x, y, restore=True)

    def build(self) -> bool:
        """Ready to trace (no variables may be created while tracing); False when the model
        has nothing to train (its ratios are empty)."""
        if not self.model.trainable_variables:
            return False
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        return True

    def _runner(self):
        """A function of no argument returning the probe's outputs: through the engine of the
        probe's signature, else a function of this model's own."""
        sig = signature(self.model, self.loss_fn, self.x, self.y)
        if sig is not None:
            try:
                engine = ENGINES.get(sig, lambda: _ProbeEngine(sig, self.model, self.loss_fn))
            except (TypeError, ValueError):  # the architecture or optimizer does not clone
                engine = None
            pairs = engine.pairs(self.model) if engine is not None else None
            if pairs is not None:
                def run():
                    engine.load(self.model, pairs)
                    return engine.fn(self.x, self.y)
                return run
        own = traces.function(self._probe, "StepSizeProbe._probe", ("model", next(_OWN)),
                              autograph=False)
        return lambda: own(self.x, self.y)

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

    def outputs(self):
        """The probe's weights after and before the step and gradients (tensors), or None
        when the model has nothing to train."""
        if self._run is None:
            if not self.build():
                return None
            self._run = self._runner()
        return self._run()

    def __call__(self) -> np.ndarray:
        out = self.outputs()
        return np.zeros(0) if out is None else self.ratios(out)


class ProbeGroup:
    """Several models' :class:`StepSizeProbe` (a stack's copies), each run through the engine
    of its signature: the copies of a stack share one trace, as do the stacks after it."""

    def __call__(self, probes) -> list[np.ndarray]:
        """Each probe's ratios (see :meth:`StepSizeProbe.ratios`), in order."""
        return [probe() for probe in probes]
