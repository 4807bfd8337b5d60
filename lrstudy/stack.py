"""Many trials in one compiled program: a stack of copies trained together.

Trials that share a budget (model, data, batch size, epochs: the seeds of a scenario, the
grid points of a tuned strategy) train as one stack (:func:`stack_of`): a
:class:`lrstudy.vstack.VectorStack` (the copies as stacked weights, one batched op per
layer) where their models and optimizers allow it, else one :class:`StackedModel` trained by
one Keras ``fit``, described here; :class:`Dispatcher` feeds each copy's callbacks in both.
Each copy is the very model, optimizer, data pipeline and callbacks that
:func:`lrstudy.train.prepare_fit` makes for the trial unstacked (same initial weights, same
data order, same dropout state, its own optimizer state and LR schedule); the stack only
joins their train and test steps into one traced (and, as the budget says, XLA-compiled)
function run ``steps_per_execution`` steps at a time, so the per-step cost of Keras's loop
and of the launches is paid once for all copies. One pipeline of indices feeds all copies
(:func:`lrstudy.batches.batch_indices` of their seeds: each copy's order is its trial's);
the compiled step gathers each copy's batch from the stack's one copy of the training set,
and an epoch's last, smaller batch is padded to the full size with examples of weight 0 (for
models of row-wise layers, :func:`row_wise`), so the step compiles for one shape. Validation
and the test set run as a plain graph (no XLA compile per batch shape), the test set once
for all copies (:meth:`StackedModel.evaluate_copies`). The steps are plain Python to
TensorFlow (no autograph, which transpiled each copy's branch anew). What is not shared:
each copy's step is unrolled in the program (its trace and compile grow with the copies),
and its arithmetic is its own.

- A copy whose callbacks stop it (:class:`lrstudy.callbacks.EpochLogger`'s divergence rules
  set ``stop_training`` on *its* model, at the end of a call, as unstacked) is frozen there:
  no more updates, metrics or recorded steps; the others go on. The train and test steps
  are traced for the live copies only (a frozen copy's logs are its metrics as they stand)
  and traced again, without it, before their next call: no ``tf.cond`` per copy in them,
  which cost a fifth of a steady epoch and a second of compiling at six copies.
- :class:`Dispatcher` is the one callback of the stacked ``fit``: it hands each copy's own
  callbacks (StepRecorder, EpochLogger, per-epoch schedulers, ReduceLROnPlateau) the copy's
  model and the copy's logs (``c3/val_loss`` becomes copy 3's ``val_loss``), so per-epoch
  schedulers and plateaus act per copy, each on its own validation loss.
- Times: a copy's ``epoch_time_s`` and ``train_time_s`` are the stack's wall time (every copy
  of the stack trained in it); the tag ``lrstudy.stack_size`` says how many.

:func:`auto_size` picks the largest stack that fits the available memory, estimated before
training from the sizes of the weights, optimizer state, activations and data pipelines.
"""

from __future__ import annotations

import math

from lrstudy import tfquiet

tf = tfquiet.import_tensorflow()
import keras  # noqa: E402

from lrstudy import callbacks as cb  # noqa: E402
from lrstudy import batches, checks, data  # noqa: E402

MAX_AUTO = 16  # more copies buy little once the per-step overhead is shared
MEMORY_FRACTION = 0.5  # of the memory available when the stack is sized
# What a stack's fit adds beyond its data and copies: XLA's compile, TF's allocator, the
# validation data Keras converts (bench (e) measured a rise of about 200 MB over them).
RUNTIME_BYTES = 256 * 2**20
# What each copy adds to the traced, XLA-compiled program (its step is unrolled in it): bench
# (e) measured a rise of 772 MB for 6 copies where the rest of the estimate came to 572 MB.
PROGRAM_BYTES_PER_COPY = 48 * 2**20


def prefix(i: int) -> str:
    """The prefix of copy ``i``'s entries in a stack's logs: ``c3/loss``, ``val_c3/loss``."""
    return f"c{i}/"


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
    (see :func:`lrstudy.batches.batch_indices`); ``test_step`` one ``(x, y)`` batch shared by all.
    Each copy's loss, gradients and update are its own (its ``compute_loss``, its optimizer);
    the logs are ``c<i>/<metric>``.

    A last batch padded to the full size (``count`` examples of it real) is trained with
    weights ``batch / count`` on the real examples and 0 on the padding: Keras's losses divide
    the weighted sum by the batch size, so the loss, its gradients and the metrics are those
    of the ``count`` real examples, and the compiled step keeps one shape (no second XLA
    compile of the whole stack for the last batch of an epoch)."""

    def __init__(self, copies, train_arrays=None, **kwargs):
        super().__init__(**kwargs)
        self.copies = list(copies)
        # the training set, read by the train step: the pipelines give indices only
        self._train_arrays = tuple(train_arrays) if train_arrays is not None else None
        self.live = list(range(len(self.copies)))  # the copies the train step trains
        self.scored = list(self.live)  # the copies validation and the test set evaluate
        self._traced_for = {"train": None, "test": None}  # the copies each step was traced for
        self.built = True

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

    def __init__(self, stacked: StackedModel, callbacks_per_copy):
        super().__init__()
        self.stacked = stacked
        self.lists = [keras.callbacks.CallbackList(list(cbs), model=copy)
                      for copy, cbs in zip(stacked.copies, callbacks_per_copy)]
        self.done = [False] * len(self.lists)
        def each_copys(kind):
            return [next((c for c in cbs if isinstance(c, kind)), None)
                    for cbs in callbacks_per_copy]

        # each copy's EpochLogger (or None): their step-size probes run as one function
        self.loggers = each_copys(cb.EpochLogger)
        # and its StepRecorder (or None): a VectorStack hands it the steps it recorded
        self.recorders = each_copys(cb.StepRecorder)
        for logger in filter(None, self.loggers):
            logger.defer_probe = True
        self.probes = cb.ProbeGroup()

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
        if hasattr(self.stacked, "probe"):  # a VectorStack probes its stacked state
            ratios = self.stacked.probe(probed, *self.loggers[probed[0]].probe)
        else:
            ratios = self.probes([self.loggers[i].step_size_probe() for i in probed])
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
    # callback swaps its average in: lrstudy.schedule_free.EvaluateAtX)
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


def _padding_weights(indices, count):
    """The sample weights of a batch of which the first ``count`` examples are real (see
    :class:`StackedModel`)."""
    rows = tf.shape(indices)[0]
    real = tf.cast(tf.range(rows) < count, tf.float32)
    return real * (tf.cast(rows, tf.float32) / tf.cast(count, tf.float32))


_ARRAYS: list = []  # [(a training set's images, its variables)]: the last one made


def training_arrays(dataset):
    """The stack's one copy of the training set (``dataset.x_train``, ``y_train``) as
    variables, which the compiled step reads in place. Kept for the next stack on the same
    arrays (:func:`lrstudy.data.load_cached` shares them between the trials of a process):
    making them costs about 0.5 s for Fashion-MNIST."""
    if _ARRAYS and _ARRAYS[0][0] is dataset.x_train:
        return _ARRAYS[0][1]
    arrays = (tf.Variable(dataset.x_train, trainable=False),
              tf.Variable(dataset.y_train, trainable=False))
    _ARRAYS[:] = [(dataset.x_train, arrays)]
    return arrays


def stack_of(prepared: list, steps_per_execution: int, vectorize: bool = True):
    """The stack of the prepared trials (one budget, see :func:`lrstudy.train.fit_stack`):
    a :class:`lrstudy.vstack.VectorStack` where ``vectorize`` and
    :func:`lrstudy.vstack.unsupported` has no objection, else a compiled
    :class:`StackedModel`; None for one trial that does not vectorize (Keras's ``fit``
    trains it as it is). Builds the copies (metrics and optimizer state)."""
    from lrstudy import vstack

    budget = prepared[0].scenario.budget
    ds = prepared[0].dataset
    sample = (ds.x_train[:budget["batch_size"]], ds.y_train[:budget["batch_size"]])
    for p in prepared:
        p.model._symbolic_build(data_batch=sample)  # metrics and optimizer state, now
    models = [p.model for p in prepared]
    if vectorize and vstack.unsupported(models) is None:
        return vstack.VectorStack(models, training_arrays(ds), steps_per_execution,
                                  budget["jit_compile"])
    if len(prepared) == 1:
        return None
    stacked = StackedModel(models, train_arrays=training_arrays(ds))
    stacked.compile(optimizer="sgd", steps_per_execution=steps_per_execution,
                    jit_compile=budget["jit_compile"])
    return stacked


def train(stacked, prepared: list, verbose: int = 0):
    """Train ``stacked`` (:func:`stack_of` of ``prepared``) on their budget, each copy's
    callbacks fed through a :class:`Dispatcher`, on one pipeline of indices
    (:func:`lrstudy.batches.batch_indices` of their seeds, each copy's orders hashed as fed
    into its trial's :class:`~lrstudy.batches.OrderDigest`). A generator: a
    :class:`~lrstudy.vstack.VectorStack` yields each epoch's index after its end; a
    :class:`StackedModel` trains in one Keras ``fit`` and yields nothing."""
    budget = prepared[0].scenario.budget
    ds = prepared[0].dataset
    indices = batches.batch_indices(len(ds.x_train), budget["batch_size"],
                                    [p.seed for p in prepared], pad=row_wise(prepared[0].model),
                                    digests=[p.order for p in prepared])
    dispatcher = Dispatcher(stacked, [p.callbacks for p in prepared])
    kwargs = prepared[0].fit_kwargs()
    if isinstance(stacked, StackedModel):
        kwargs["callbacks"] = [dispatcher]
        stacked.fit(indices, epochs=budget["epochs"], verbose=verbose, **kwargs)
        return
    yield from stacked.epochs(indices, budget["epochs"], prepared[0].scenario.steps_per_epoch,
                              dispatcher, kwargs.get("validation_data"),
                              kwargs.get("validation_batch_size", 1024))


# ---- how many copies fit ------------------------------------------------------------------

def copy_bytes(scenario, input_shape, num_classes: int, train_size: int) -> int:
    """An upper estimate of one copy's memory in a stack: weights, gradients and up to two
    optimizer slots (float32), the activations of a training batch kept for the backward
    pass (every layer's output, twice), its epoch's order of the examples (int64, drawn
    and cut into batches: twice) and its part of the compiled program
    (:data:`PROGRAM_BYTES_PER_COPY`). The stack's one copy of the training set is
    :func:`shared_bytes`."""
    from lrstudy import models

    model, _ = models.build(scenario.budget["model"], input_shape, num_classes)
    params = sum(math.prod(w.shape) for w in model.weights)
    acts = 0
    for layer in model.layers:
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None:
            acts += math.prod(d for d in shape[1:] if d)
    batch = scenario.budget["batch_size"]
    return 4 * (4 * params + 2 * batch * acts) + 2 * 8 * train_size + PROGRAM_BYTES_PER_COPY


def shared_bytes(input_shape, train_size: int) -> int:
    """The stack's training set (float32 images, labels), twice: the stack's variables, and
    the tensor each is made from (for the moment it is created: the copies make no pipeline
    of their own); and :data:`RUNTIME_BYTES`."""
    return 2 * 4 * train_size * (math.prod(input_shape) + 1) + RUNTIME_BYTES


def available_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def auto_size(scenario, input_shape, num_classes: int, train_size: int,
              available: int | None = None) -> int:
    """The largest stack (at most :data:`MAX_AUTO`) whose estimated memory
    (:func:`shared_bytes` and :func:`copy_bytes` per copy) fits :data:`MEMORY_FRACTION` of
    the available memory; at least 1."""
    avail = available_bytes() if available is None else available
    per_copy = copy_bytes(scenario, input_shape, num_classes, train_size)
    room = MEMORY_FRACTION * avail - shared_bytes(input_shape, train_size)
    return max(1, min(MAX_AUTO, int(room // max(per_copy, 1))))


def size_for(scenario, mode) -> int:
    """The stack size ``mode`` (see :func:`lrstudy.checks.stack`) gives the trials of
    ``scenario``'s budget: 1 for ``off``, the memory's for ``auto`` (:func:`auto_size`), else
    the number given."""
    mode = checks.stack(mode)
    if mode == "off":
        return 1
    if mode != "auto":
        return mode
    budget = scenario.budget
    # seed 0's split under split = "per-seed": every seed's has the same sizes
    ds = data.load_cached(budget["dataset"], budget["train_size"], budget["val_size"],
                          split=budget["split"], seed=0)
    return auto_size(scenario, ds.input_shape, ds.num_classes, len(ds.x_train))


def groups(trials: list, size: int) -> list[list]:
    """``trials`` (each with ``scenario`` and ``seed``, one budget) cut into stacks of at most
    ``size``, in order. Under ``split = "per-seed"`` a stack holds the trials of one seed
    only (in the order of their seeds' first trials): a stack's copies share one training
    set and one validation set, and seeds draw different ones."""
    size = max(1, int(size))
    if trials and trials[0].scenario.budget["split"] == data.PER_SEED:
        by_seed: dict = {}
        for t in trials:
            by_seed.setdefault(t.seed, []).append(t)
        return [same[i:i + size] for same in by_seed.values()
                for i in range(0, len(same), size)]
    return [trials[i:i + size] for i in range(0, len(trials), size)]
