"""A stack as one set of stacked weights: every copy's step in one batched op per layer.

:class:`lrstudy.training.keras_stack.StackedModel` runs each copy's own Keras ``train_step`` side by side in
one program: the per-step cost of Keras's loop is shared, but each copy still pays its own
forward pass, loss, metrics and optimizer update (measured: most of a stacked step). For
the models the default study trains (dense layers on flattened images, see
:func:`unsupported`) :class:`VectorStack` goes further, as ``vmap`` over seeds does in JAX:

- each weight of the copies is one variable ``[copies, size]``, and each Dense layer one
  batched matmul over the copies (``einsum``);
- one optimizer of the copies' class and configuration updates every copy in one op per
  variable, with the learning rate a vector: each copy's own (its per-step schedule at the
  iteration, or its LR variable as its per-epoch scheduler or ReduceLROnPlateau set it);
- each copy's loss (the copies' own Keras loss, per example) and accuracy are vectors;
- a call of ``steps_per_execution`` steps is one XLA-compiled loop, compiled once.

What is traced depends only on the stack's :func:`signature` (the number of copies, the
layers, the optimizer's class and configuration, steps per execution, XLA): every stack of
one signature in a process shares one :class:`lrstudy.training.vector_engine.Engine` (its variables and traced functions,
:data:`ENGINES`), so a signature's loop, validation and probe are traced once per process,
however many stacks or trials pass through it (:mod:`lrstudy.training.traces` warns of a
second trace). A stack assigns its own state to the engine's variables, and before each call
the LR (and cycled momentum) of each copy at each of the call's steps, computed in Python
from each copy's own schedule or LR variable (:meth:`VectorStack._tables`).

Each time the loop returns to Python, the live copies' optimizers are given the stack's
iteration count and their StepRecorders the steps' LR and loss
(:meth:`lrstudy.training.step_recorder.StepRecorder.load`); then their own callbacks run through
:class:`lrstudy.training.dispatch.Dispatcher` as in a stacked ``fit``, in Keras's order: the per-epoch
schedulers and plateaus, the loggers, divergence. The step-size probes run on the stacked
state, all copies in one function (:meth:`VectorStack.probe`). Validation evaluates what
each copy's trial would: for a schedule-free optimizer (:mod:`lrstudy.lr.schedule_free`, its
averaging state one per copy) the copies' averages x, and y beside them. A copy's Keras
model and optimizer slots are given its stacked weights and slots when it freezes (its
callbacks stopped it: it is left out of the loss, the metrics and the records from then on, as in
:class:`~lrstudy.training.keras_stack.StackedModel`) or training ends.

Exact to float32 round-off against the trials one by one (the tests compare them).
"""

from __future__ import annotations

import weakref

import numpy as np

from lrstudy import tfquiet

tf = tfquiet.import_tensorflow()
import keras  # noqa: E402

from lrstudy.data import aligned  # noqa: E402
from lrstudy.lr import schedule_free  # noqa: E402
from lrstudy.training import effective_step, traces  # noqa: E402
from lrstudy.training.vector_engine import ENGINES, Engine, layers_of, signature  # noqa: E402

#: Optimizer settings that act across a whole variable (or change the update's structure):
#: over a stacked variable they would mix the copies, so a stack with them is not vectorized.
MIXING = ("clipnorm", "global_clipnorm", "use_ema", "gradient_accumulation_steps",
          "loss_scale_factor")


def _dense_ok(layer) -> bool:
    return (layer.kernel_regularizer is None and layer.bias_regularizer is None
            and layer.activity_regularizer is None and layer.kernel_constraint is None
            and layer.bias_constraint is None and not getattr(layer, "lora_enabled", False)
            and layer.dtype_policy.name == "float32")


def unsupported(models) -> str | None:
    """Why ``models`` (compiled, built, one per copy) cannot train as a :class:`VectorStack`,
    or None: they must be Sequential stacks of Dense and Flatten layers (float32, no
    regularizers or constraints) of one architecture, with a rank-2 output and sparse
    categorical cross-entropy (the classification task, whose one metric, accuracy, the
    stack computes), and optimizers of one class and configuration
    (the LR aside) at the same iteration, none of :data:`MIXING` set."""
    first = models[0]

    def arch(model):
        return [(type(layer).__name__, getattr(layer, "units", None),
                 getattr(layer, "use_bias", None), getattr(layer, "activation", None))
                for layer in layers_of(model)]

    if not isinstance(first, keras.Sequential):
        return "the model is not a keras.Sequential"
    for layer in layers_of(first):
        if type(layer) is keras.layers.Dense:
            if not _dense_ok(layer):
                return (f"layer {layer.name} has a regularizer, a constraint or LoRA, or is "
                        "not float32")
        elif type(layer) is not keras.layers.Flatten:
            return f"layer {layer.name} is a {type(layer).__name__}, not Dense or Flatten"
    if len(first.outputs[0].shape) != 2:
        return "the model's output is not one vector per example"
    if type(first.loss) is not keras.losses.SparseCategoricalCrossentropy:
        return "the loss is not sparse categorical cross-entropy"
    opt = first.optimizer
    config = traces.optimizer_config(opt)
    if any(config.get(key) for key in MIXING):
        return f"the optimizer sets one of {', '.join(MIXING)}"
    if type(opt).__name__ == "ScheduleFreeAdamW":
        return "ScheduleFreeAdamW keeps state beyond its slots"
    for model in models[1:]:
        if arch(model) != arch(first) or type(model.loss) is not type(first.loss):
            return "the copies' models differ"
        if (type(model.optimizer) is not type(opt)
                or traces.optimizer_config(model.optimizer) != config):
            return "the copies' optimizers differ beyond their learning rates"
        if int(model.optimizer.iterations) != int(opt.iterations):
            return "the copies' optimizers are at different iterations"
    if getattr(first.loss, "reduction", None) != "sum_over_batch_size":
        return "the loss is not averaged over the batch"
    return None


def _per_step(value, iterations: np.ndarray, kind: str) -> np.ndarray:
    """``value`` (a copy's LR: a ``LearningRateSchedule``, a callable or a variable; or with
    ``kind`` "momentum", its cycled momentum function of the iteration) at each of
    ``iterations``, in float32. A schedule is evaluated on the vector of iterations at once
    (the registry's schedules are element-wise), else step by step."""
    steps = tf.constant(iterations, tf.int64)
    schedule = kind == "momentum" or isinstance(
        value, keras.optimizers.schedules.LearningRateSchedule)

    def f32(v):
        return tf.cast(tf.convert_to_tensor(v), tf.float32).numpy()

    if not schedule:
        out = f32(value() if callable(value) else value)
        return np.full(len(iterations), out.reshape(()), np.float32)
    try:
        out = f32(value(steps))
    except (TypeError, ValueError, tf.errors.InvalidArgumentError):
        out = None
    if out is not None and out.size == 1:
        return np.full(len(iterations), out.reshape(()), np.float32)
    if out is not None and out.shape == (len(iterations),):
        return out
    return np.array([f32(value(steps[i])).reshape(()) for i in range(len(iterations))],
                    np.float32)


class VectorStack:
    """The copies (compiled, built Keras models; see :func:`unsupported`) as stacked weights,
    trained on ``train_arrays`` (the stack's one copy of the training set) by
    :meth:`epochs`, on the engine of their :func:`signature`. It has
    :class:`~lrstudy.training.keras_stack.StackedModel`'s interface to the
    :class:`~lrstudy.training.dispatch.Dispatcher` (``copies``, ``freeze``, ``refresh``,
    ``stop_training``) and :meth:`evaluate_copies`.

    Stacks of one signature may be alive at once (``make bench`` trains some in turns): the
    engine's variables hold one stack's state at a time, and a stack that finds another's
    there first gives that one's live copies their state back (as when they freeze) and
    loads its own (:meth:`_claim`)."""

    def __init__(self, copies, train_arrays, steps_per_execution: int, jit_compile: bool):
        self.copies = list(copies)
        self.n = len(self.copies)
        self.live = list(range(self.n))
        self.scored = list(self.live)
        self.stop_training = False
        self.x_train, self.y_train = train_arrays
        first = self.copies[0]
        sig = signature(self.copies, steps_per_execution, jit_compile)
        self.engine = ENGINES.get(sig, lambda: Engine(
            sig, first, self.n, steps_per_execution, jit_compile,
            cycled=getattr(first.optimizer, "momentum_fn", None) is not None))
        self.spe = self.engine.spe
        self.jit = self.engine.jit
        self._pairs = [self.engine.slot_pairs(c.optimizer) for c in self.copies]
        self.iterations = int(first.optimizer.iterations)  # the stack's, while not loaded
        self._probe_batch = None
        self._claim()

    @property
    def weights(self) -> list:
        """The stacked weights ``[copies, size]`` (the engine's, holding this stack's)."""
        self._claim()
        return self.engine.weights

    @property
    def optimizer(self):
        """The stacked optimizer (the engine's, holding this stack's state)."""
        self._claim()
        return self.engine.optimizer

    # ---- the engine's variables: this stack's state -----------------------------------------
    def _claim(self) -> None:
        """Make the engine's variables hold this stack's state: if another stack's are
        there, its live copies take theirs back (:meth:`_release`), then this one's are
        loaded (:meth:`_load`)."""
        engine = self.engine
        owner = engine.owner() if engine.owner is not None else None
        if owner is self:
            return
        if owner is not None:
            owner._release()
        self._load()
        engine.owner = weakref.ref(self)

    def _load(self) -> None:
        """The engine's variables from the copies' Keras state: each copy's weights and
        optimizer slots as its row, an optimizer variable shared by the copies from the
        first, and the stack's iteration count."""
        engine = self.engine
        for j, w in enumerate(engine.weights):
            w.assign(np.stack([np.reshape(c.trainable_weights[j].numpy(), -1)
                               for c in self.copies]))
        for k, (_, s, per_copy) in enumerate(self._pairs[0]):
            mine = [pairs[k][0] for pairs in self._pairs]
            s.assign(np.stack([np.reshape(m.numpy(), -1) for m in mine]) if per_copy
                     else mine[0].numpy())
        engine.optimizer.iterations.assign(self.iterations)

    def _release(self) -> None:
        """Another stack takes the engine: the live copies' models and optimizers take their
        state from it (a frozen copy's took it when it froze), to be loaded again."""
        self.iterations = int(self.engine.optimizer.iterations)
        for i in self.live:
            self._sync(i)

    def _tables(self, rows: int) -> None:
        """The engine's LR table (and cycled momentum table) for this call: each live copy's
        LR at each of the ``rows`` iterations from the stack's on, as its own optimizer would
        use it (its schedule at the iteration, or its LR variable as its per-epoch
        scheduler or ReduceLROnPlateau set it), a frozen copy's 0."""
        engine = self.engine
        its = np.arange(self.iterations, self.iterations + rows, dtype=np.int64)
        tables = [(engine.lrs, "lr", lambda c: c.optimizer._learning_rate)]
        if engine.momenta is not None:
            tables.append((engine.momenta, "momentum", lambda c: c.optimizer.momentum_fn))
        for variable, kind, of in tables:
            table = np.zeros((engine.spe, self.n), np.float32)
            for i in self.live:
                table[:rows, i] = _per_step(of(self.copies[i]), its, kind)
            variable.assign(table)
        engine.first.assign(self.iterations)

    # ---- the computation ----------------------------------------------------------------
    def run_steps(self, record: bool, indices, counts, start, steps, live):
        """One call of the compiled loop (:meth:`lrstudy.training.vector_engine.Engine._run`): ``steps`` steps from step
        ``start`` of the epoch's ``indices``, the copies ``live`` (1.0) trained, the LR
        tables set for them first (:meth:`_tables`). Its outputs, and the stack's iteration
        count moved on."""
        self._claim()
        self._tables(int(steps))
        run = self.engine.loop(record, indices, counts, self.x_train, self.y_train)
        out = run(indices, counts, start, steps, live, self.x_train, self.y_train)
        self.iterations = int(self.engine.optimizer.iterations)
        return out

    def probe_copies(self, copies: list[int], loggers: list) -> list:
        """The step-size probes of ``copies`` on the stacked state, on the probe batch their
        EpochLoggers share (the first one's)."""
        return self.probe(copies, *loggers[copies[0]].probe)

    def probe(self, copies: list[int], x, y) -> list[np.ndarray]:
        """The effective step sizes of ``copies`` on the probe batch ``(x, y)``
        (:meth:`lrstudy.training.effective_step.StepSizeProbe.ratios` of each), in one function
        for every copy, traced once per signature (the LR of each copy at the stack's
        iteration set first)."""
        if self._probe_batch is None:
            self._probe_batch = (tf.constant(x), tf.constant(y))
        self._claim()
        self._tables(1)
        fn = self.engine.probe(*self._probe_batch)
        after, before, grads = (t.numpy() for t in fn(*self._probe_batch))
        return [effective_step.StepSizeProbe.ratios((after[i], before[i], grads[i]))
                for i in copies]

    @staticmethod
    def _batches(x, y, batch_size: int) -> list:
        """``(x, y)`` as tensors of ``batch_size`` rows, made once for every epoch's
        validation (not converted again at each epoch)."""
        x, y = aligned.tensor(x), aligned.tensor(y)
        return [(x[i:i + batch_size], y[i:i + batch_size])
                for i in range(0, int(x.shape[0]), batch_size)]

    def _evaluate_all(self, batches, weights) -> tuple[np.ndarray, np.ndarray]:
        """Every copy's mean loss and accuracy on ``batches`` (:meth:`_batches`) with
        ``weights``."""
        loss, hits, count = np.zeros(self.n), np.zeros(self.n), 0
        if not batches:
            return loss, hits
        evaluate = self.engine.evaluate(*batches[0])
        for x, y in batches:
            a, b = evaluate(x, y, weights)
            loss += a.numpy()
            hits += b.numpy()
            count += int(x.shape[0])
        return loss / count, hits / count

    def _validated_weights(self) -> dict:
        """The stacked weights validation evaluates, by the suffix of their metrics' names:
        the weights as trained (``""``), or for a schedule-free optimizer the copies'
        averages x (``""``) and the weights as trained, y (``"_at_y"``; see
        :mod:`lrstudy.lr.schedule_free`)."""
        trained = [tf.convert_to_tensor(w) for w in self.weights]
        if not schedule_free.evaluates_at_x(self.optimizer):
            return {"": trained}
        return {"": [self.optimizer.average(w) for w in self.weights], "_at_y": trained}

    # ---- the copies' Keras state --------------------------------------------------------
    def _sync_iterations(self) -> None:
        """The live copies' iteration counts from the stack's (their callbacks read their LR
        and steps from them after each call)."""
        for i in self.live:
            self.copies[i].optimizer.iterations.value.assign(self.iterations)

    def _sync(self, i: int) -> None:
        """Copy ``i``'s weights and optimizer slots from the engine (when it freezes, training
        ends or another stack takes the engine: nothing reads them in between, the probes
        read the engine). The engine must hold this stack's state."""
        copy = self.copies[i]
        for w, s in zip(copy.trainable_weights, self.engine.weights):
            w.value.assign(tf.reshape(s.value[i], w.shape))
        for mine, s, per_copy in self._pairs[i]:
            mine.value.assign(tf.reshape(s.value[i], mine.shape) if per_copy else s.value)
        copy.optimizer.iterations.value.assign(self.engine.optimizer.iterations.value)

    def _copies_weights(self):
        """Each copy's weights as its Keras model holds them (a frozen copy's: as it froze),
        stacked."""
        return [tf.stack([tf.reshape(c.trainable_weights[j], [-1]) for c in self.copies])
                for j in range(len(self.engine.shapes))]

    # ---- StackedModel's interface to the Dispatcher --------------------------------------
    def freeze(self, i: int) -> None:
        """Copy ``i`` trains no more: its model and optimizer take the stack's state as it is,
        and it is left out of the loop's loss, the metrics and the records from the next
        call on, and of validation."""
        if i in self.live:
            self._claim()
            self._sync(i)
        for copies in (self.live, self.scored):
            if i in copies:
                copies.remove(i)

    def refresh(self) -> None:
        """Nothing to trace again: the live copies are an input of the loop."""

    # ---- training ---------------------------------------------------------------------------
    def epochs(self, indices: tf.data.Dataset, epochs: int, steps_per_epoch: int, dispatcher,
               validation=None, validation_batch: int = 1024):
        """Train ``epochs`` epochs on ``indices`` (:func:`lrstudy.data.order.batch_indices` of the
        copies' seeds, padded), calling ``dispatcher``'s hooks as Keras's ``fit`` calls a
        callback's; ``validation``: ``(x, y)`` evaluated at each epoch's end. A generator:
        it yields each epoch's index after the epoch's end (``make bench`` takes turns
        with it); exhausting it is a whole ``fit``."""
        record = any(r is not None for r in dispatcher.recorders)
        epoch_data = indices.batch(steps_per_epoch)
        val_batches = self._batches(*validation, validation_batch) if validation else None
        dispatcher.on_train_begin()
        logs = {}
        for epoch in range(epochs):
            dispatcher.on_epoch_begin(epoch)
            if epoch:  # Keras's fit opens the dataset twice an epoch after the first (Keras
                iter(epoch_data)  # 3.15, as the tests check): each opening draws new orders
            (parts,) = epoch_data.take(1)  # each copy's order: its trial's under Keras's fit
            idx = tf.stack([p[0] for p in parts], axis=1)
            counts = tf.stack([p[1] for p in parts], axis=1)
            sums = np.zeros((3, self.n))
            for start in range(0, steps_per_epoch, self.spe):
                steps = min(self.spe, steps_per_epoch - start)
                dispatcher.on_train_batch_begin(start)
                mine = list(self.live)
                live = tf.constant([float(i in mine) for i in range(self.n)])
                *parts_sums, rows = self.run_steps(record, idx, counts, tf.constant(start),
                                                   tf.constant(steps), live)
                sums += np.array([s.numpy() for s in parts_sums], dtype=np.float64)
                self._sync_iterations()
                if record:
                    rows = rows.numpy()[:steps]
                    for i in mine:
                        if dispatcher.recorders[i] is not None:
                            dispatcher.recorders[i].load(rows[:, i])
                logs = self._train_logs(sums)
                dispatcher.on_train_batch_end(start + steps - 1, logs)
                if self.stop_training:
                    break
            logs = self._train_logs(sums)
            if val_batches and self.scored:
                for suffix, weights in self._validated_weights().items():
                    loss, acc = self._evaluate_all(val_batches, weights)
                    for i in self.scored:
                        logs[f"val_c{i}/loss{suffix}"] = loss[i]
                        logs[f"val_c{i}/accuracy{suffix}"] = acc[i]
            dispatcher.on_epoch_end(epoch, logs)
            yield epoch
            if self.stop_training:
                break
        dispatcher.on_train_end(logs)  # which freezes each copy still live (see freeze)

    def _train_logs(self, sums) -> dict:
        """Each copy's running loss and accuracy, named as a Keras stack names them
        (:func:`lrstudy.training.dispatch.prefix`; not imported: stack imports this module)."""
        loss_sum, hit_sum, seen = sums
        logs = {}
        for i in range(self.n):
            if seen[i]:
                logs[f"c{i}/loss"] = loss_sum[i] / seen[i]
                logs[f"c{i}/accuracy"] = hit_sum[i] / seen[i]
        return logs

    def evaluate_copies(self, x, y, which, batch_size: int) -> list[dict | None]:
        """Each copy in ``which`` evaluated on ``(x, y)`` with the weights its model holds:
        ``{"loss", "accuracy"}``, None for the others (see
        :meth:`lrstudy.training.keras_stack.StackedModel.evaluate_copies`)."""
        if not any(which):
            return [None] * len(which)
        loss, acc = self._evaluate_all(self._batches(x, y, batch_size), self._copies_weights())
        return [{"loss": float(loss[i]), "accuracy": float(acc[i])} if on else None
                for i, on in enumerate(which)]
