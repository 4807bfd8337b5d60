"""The traced part of a :class:`lrstudy.training.vector_stack.VectorStack`, made once per
signature per process.

What is traced depends only on the stack's :func:`signature` (the number of copies, the
layers, the loss, the optimizer's class and configuration, steps per execution, XLA): every
stack of one signature in a process shares one :class:`Engine` (its variables and traced
functions, :data:`ENGINES`), so a signature's loop, validation and probe are traced once
per process, however many stacks or trials pass through it (:mod:`lrstudy.training.traces`
warns of a second trace). A stack assigns its own state to the engine's variables, and
before each call the LR (and cycled momentum) of each copy at each of the call's steps.
"""

from __future__ import annotations

import numpy as np

from lrstudy import tfquiet

tf = tfquiet.import_tensorflow()
import keras  # noqa: E402

from lrstudy import interrupts  # noqa: E402
from lrstudy.training import traces  # noqa: E402

#: How many engines (:class:`Engine`, one per signature) a process keeps: each holds its
#: stacked weights, optimizer slots and compiled programs while it is kept.
MAX_ENGINES = 4
ENGINES = traces.Engines(MAX_ENGINES)


def layers_of(model) -> list:
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def signature(models, steps_per_execution: int, jit_compile: bool) -> tuple:
    """What the traced functions of a stack of ``models`` (:func:`unsupported` has no
    objection) depend on: the number of copies, the input and layers (kernel shapes, bias,
    activation), the loss's class and configuration, the optimizer's class and configuration
    (the LR aside), whether its momentum is cycled, steps per execution and XLA. Stacks of
    one signature share an engine (:data:`ENGINES`)."""
    first = models[0]
    layers = tuple(
        ("dense", tuple(layer.kernel.shape), bool(layer.use_bias), layer.activation)
        if isinstance(layer, keras.layers.Dense) else (type(layer).__name__,)
        for layer in layers_of(first))
    loss = {k: v for k, v in first.loss.get_config().items() if k != "name"}
    opt = first.optimizer
    return (len(models), tuple(first.inputs[0].shape[1:]), first.inputs[0].dtype, layers,
            type(first.loss), repr(sorted(loss.items())), type(opt),
            repr(sorted(traces.optimizer_config(opt).items())), getattr(opt, "momentum_fn", None) is not None,
            int(steps_per_execution), bool(jit_compile))


def _spec(t) -> tuple:
    """A tensor's or variable's shape and dtype, as a function's key."""
    return tuple(t.shape), tf.as_dtype(t.dtype).name


class Engine:
    """The traced part of every :class:`VectorStack` of one :func:`signature`, made once per
    process (:data:`ENGINES`): the stacked weights ``[copies, size]``, the stacked optimizer
    (its slots and iteration count) and the functions traced on them (the training loop, with
    and without records; validation; the step-size probe), each traced once.

    What is particular to a stack is assigned to its variables, not traced: the stack's weights
    and optimizer state (:meth:`VectorStack._load`), and before each call the LR of each copy at
    each of the call's iterations, ``lrs`` ``[steps_per_execution, copies]`` from iteration
    ``first`` on (and the cycled momentum likewise, ``momenta``), which :meth:`VectorStack._tables`
    computes in Python from each copy's own schedule, or LR variable as its per-epoch
    scheduler or ReduceLROnPlateau set it. ``owner``: (a weak reference to) the stack whose state
    the variables hold."""

    def __init__(self, signature: tuple, first, n: int, steps_per_execution: int,
                 jit_compile: bool, cycled: bool):
        self.signature = signature
        self.n, self.spe, self.jit = n, int(steps_per_execution), bool(jit_compile)
        self.loss = type(first.loss).from_config(first.loss.get_config())
        # per layer: ("flatten",) or ("dense", activation, kernel index, bias index or None)
        self.plan, index = [], 0
        for layer in layers_of(first):
            if isinstance(layer, keras.layers.Dense):
                bias = index + 1 if layer.use_bias else None
                self.plan.append(("dense", layer.activation, index, bias))
                index += 1 + layer.use_bias
            else:
                self.plan.append(("flatten",))
        self.shapes = [tuple(w.shape) for w in first.trainable_weights]
        self.weights = [keras.Variable(np.zeros((n, int(np.prod(shape))), np.float32),
                                       trainable=True, name=f"stacked_{j}")
                        for j, shape in enumerate(self.shapes)]
        self.lrs = tf.Variable(tf.zeros([self.spe, n]), trainable=False, name="stacked_lrs")
        self.momenta = (tf.Variable(tf.zeros([self.spe, n]), trainable=False,
                                    name="stacked_momenta") if cycled else None)
        self.first = tf.Variable(0, dtype=tf.int64, trainable=False, name="stacked_first")
        self.optimizer = self._stacked_optimizer(first.optimizer)
        self.optimizer.build(self.weights)
        self.owner = None
        self._functions: dict = {}

    # ---- the stacked optimizer -------------------------------------------------------------
    def _row(self, iteration):
        """The row of ``lrs`` and ``momenta`` of ``iteration``."""
        return tf.cast(iteration, tf.int64) - self.first

    def current_lrs(self):
        """Each copy's LR at the stacked iteration, ``[copies]``, from ``lrs``."""
        return tf.gather(self.lrs, self._row(self.optimizer.iterations))

    def _stacked_optimizer(self, opt):
        kwargs = {}
        if self.momenta is not None:  # a cycled momentum (lrstudy.lr.optimizers): each copy's own
            kwargs["momentum_fn"] = lambda it: tf.gather(self.momenta, self._row(it))[:, None]
        return type(opt)(learning_rate=lambda: self.current_lrs()[:, None], **kwargs,
                         **traces.optimizer_config(opt))

    def slot_pairs(self, optimizer):
        """(copy's variable, stacked variable, whether it is per copy) for each optimizer
        variable but the iteration count and LR, in order: a slot of a weight is per copy
        (``[copies, size]``), a variable of the optimizer's own (Nadam's running product of
        its momentum schedule: a function of the iteration, the same for every copy) is
        shared."""
        skip = {id(optimizer.iterations), id(getattr(optimizer, "_learning_rate", None))}
        mine = [v for v in optimizer.variables if id(v) not in skip]
        stacked = [v for v in self.optimizer.variables
                   if v is not self.optimizer.iterations]
        pairs = []
        for m, s in zip(mine, stacked):
            per_copy = tuple(s.shape) == (self.n, int(np.prod(m.shape)))
            if not per_copy and tuple(s.shape) != tuple(m.shape):
                raise ValueError(f"the stacked optimizer's variable {s.name} {tuple(s.shape)} "
                                 f"does not match the copies' {m.name} {tuple(m.shape)}")
            pairs.append((m, s, per_copy))
        if len(mine) != len(stacked):
            raise ValueError("the stacked optimizer's variables do not match the copies'")
        return pairs

    # ---- the traced functions, one per signature -------------------------------------------
    def _function(self, name: str, key: tuple, make):
        """The function ``name`` of this engine for ``key`` (input shapes, flags), made (and
        then traced, once) by ``make(signature)`` the first time."""
        signature = (self.signature, name, *key)
        fn = self._functions.get(signature)
        if fn is None:
            fn = self._functions[signature] = make(signature)
        return fn

    def loop(self, record: bool, indices, counts, x_train, y_train):
        """The compiled training loop (:meth:`_run`) for these inputs' shapes."""
        key = (record, *(_spec(t) for t in (indices, counts, x_train, y_train)))
        return self._function("VectorStack._run", key, lambda sig: traces.function(
            lambda *args: self._run(*args, record=record), "VectorStack._run", sig,
            jit_compile=self.jit, autograph=False))

    def evaluate(self, x, y):
        """The validation function (:meth:`_eval_batch`) for batches of ``x``'s and ``y``'s
        kind, whatever their number of rows."""
        specs = (tf.TensorSpec([None, *x.shape[1:]], x.dtype),
                 tf.TensorSpec([None, *y.shape[1:]], y.dtype),
                 [tf.TensorSpec(w.shape, w.dtype) for w in self.weights])
        return self._function("VectorStack._eval_batch", (_spec(x)[1:], _spec(y)[1:]),
                              lambda sig: traces.function(
                                  self._eval_batch, "VectorStack._eval_batch", sig,
                                  input_signature=specs, autograph=False))

    def probe(self, x, y):
        """The step-size probe (:meth:`_probe_step`) for a probe batch of these shapes."""
        return self._function("VectorStack._probe_step", (_spec(x), _spec(y)),
                              lambda sig: traces.function(
                                  self._probe_step, "VectorStack._probe_step", sig,
                                  autograph=False))

    # ---- the computation ----------------------------------------------------------------
    def _forward(self, x, weights):
        """The copies' outputs ``[copies, batch, classes]`` for ``x`` ``[copies, batch, ...]``."""
        h = x
        for step in self.plan:
            if step[0] == "flatten":
                h = tf.reshape(h, tf.concat([tf.shape(h)[:2], [-1]], 0))
                continue
            _, activation, k, b = step
            kernel = tf.reshape(weights[k], (self.n, *self.shapes[k]))
            h = tf.einsum("nbi,nio->nbo", h, kernel) if len(h.shape) == 3 else tf.einsum(
                "n...i,nio->n...o", h, kernel)
            if b is not None:
                h = h + tf.reshape(weights[b], [self.n] + [1] * (len(h.shape) - 2) + [-1])
            h = activation(h)
        return h

    def _per_example(self, y, y_pred):
        """Each copy's loss and correctness per example, ``[copies, batch]`` each."""
        losses = self.loss.call(y, y_pred)
        hits = tf.cast(tf.equal(tf.argmax(y_pred, axis=-1, output_type=tf.int64),
                                tf.cast(y, tf.int64)), tf.float32)
        return losses, hits

    def _train_step(self, indices, count, live, x_train, y_train):
        interrupts.raise_at("trace")  # Python runs here only while the step is traced
        x = tf.gather(x_train, indices)
        y = tf.gather(y_train, indices)
        batch = tf.shape(indices)[1]
        real = tf.cast(tf.range(batch)[None, :] < count[:, None], tf.float32)
        size = tf.cast(batch, tf.float32)
        # Keras's sum over the batch size, with the padding weighted out (StackedModel)
        weight = real * (size / tf.cast(count, tf.float32))[:, None]
        weights = [w.value for w in self.weights]
        with tf.GradientTape() as tape:
            y_pred = self._forward(x, weights)
            per, hits = self._per_example(y, y_pred)
            loss = tf.reduce_sum(per * weight, axis=1) / size
            total = tf.reduce_sum(loss * live)
        grads = tape.gradient(total, weights)
        lrs = self.current_lrs()
        self.optimizer.apply(grads, self.weights)
        return loss, lrs, tf.reduce_sum(hits * real, axis=1)

    def _run(self, indices, counts, start, steps, live, x_train, y_train, record: bool):
        """``steps`` steps from step ``start`` of the epoch's ``indices`` ``[steps, copies,
        batch]`` (``counts`` ``[steps, copies]``) into the training set ``(x_train,
        y_train)`` (variables): each copy's summed loss (weighted by its examples), hits and
        examples, and (with ``record``, else zeros) the (LR, loss) of each step ``[spe,
        copies, 2]``."""
        zeros = tf.zeros([self.n], tf.float32)

        def body(t, loss_sum, hit_sum, seen, rows):
            # a gather, not a slice: XLA takes a slice's start as a constant and compiled the
            # loop again for each call's start
            count = tf.gather(counts, start + t)
            loss, lrs, hits = self._train_step(tf.gather(indices, start + t), count, live,
                                               x_train, y_train)
            n = tf.cast(count, tf.float32)
            if record:  # a TensorArray, written in place (a scatter copied the whole buffer)
                rows = rows.write(t, tf.stack([lrs, loss], -1))
            n = n * live  # a frozen copy's metrics stay as they stood
            return t + 1, loss_sum + loss * n, hit_sum + hits * live, seen + n, rows

        rows = tf.TensorArray(tf.float32, size=self.spe, element_shape=[self.n, 2])
        _, loss_sum, hit_sum, seen, rows = tf.while_loop(
            lambda t, *_: t < steps, body, (tf.constant(0), zeros, zeros, zeros, rows),
            maximum_iterations=self.spe)
        # the rows past ``steps`` (an epoch's last call) were never written: zeros
        return loss_sum, hit_sum, seen, rows.stack()

    def _probe_step(self, x, y):
        """The step-size probe of every copy at once (see
        :class:`lrstudy.training.effective_step.StepSizeProbe`): one optimizer step on the batch
        ``(x, y)`` from the stacked state, undone; the weights after and before it and the
        gradients, ``[copies, parameters]`` each."""
        weights = [w.value for w in self.weights]
        before = [tf.identity(w) for w in weights]
        slots = [tf.identity(v) for v in self.optimizer.variables]
        x, y = self._to_every_copy(x), self._to_every_copy(y)
        with tf.GradientTape() as tape:
            per, _ = self._per_example(y, self._forward(x, weights))
            loss = tf.reduce_sum(tf.reduce_mean(per, axis=1))
        grads = tape.gradient(loss, weights)
        self.optimizer.apply(grads, self.weights)
        flat = [tf.concat(ts, axis=1) for ts in ([w.value() for w in weights], before, grads)]
        with tf.control_dependencies(flat):
            for w, old in zip(weights, before):
                w.assign(old)
            for v, old in zip(self.optimizer.variables, slots):
                v.assign(old)
        return [tf.identity(t) for t in flat]

    def _to_every_copy(self, t):
        """One batch for every copy: ``t`` broadcast to ``[copies, ...]``."""
        return tf.broadcast_to(t[None], tf.concat([[self.n], tf.shape(t)], 0))

    def _eval_batch(self, x, y, weights):
        x, y = self._to_every_copy(x), self._to_every_copy(y)
        per, hits = self._per_example(y, self._forward(x, weights))
        return tf.reduce_sum(per, axis=1), tf.reduce_sum(hits, axis=1)
