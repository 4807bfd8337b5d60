"""Which trials train together, how many fit the memory, and the stack that trains them.
"""

from __future__ import annotations

import math

from lrstudy import tfquiet
from lrstudy.training.dispatch import Dispatcher
from lrstudy.training.keras_stack import StackedModel, row_wise

tf = tfquiet.import_tensorflow()

from lrstudy import checks  # noqa: E402
from lrstudy.data import aligned  # noqa: E402
from lrstudy.data import datasets as data  # noqa: E402
from lrstudy.data import order as batches  # noqa: E402
from lrstudy.data import splits  # noqa: E402

MAX_AUTO = 16  # more copies buy little once the per-step overhead is shared


MEMORY_FRACTION = 0.5  # of the memory available when the stack is sized


# What a stack's fit adds beyond its data and copies: XLA's compile, TF's allocator, the
# validation data Keras converts (bench (e) measured a rise of about 200 MB over them).
RUNTIME_BYTES = 256 * 2**20


# What each copy adds to the traced, XLA-compiled program (its step is unrolled in it): bench
# (e) measured a rise of 772 MB for 6 copies where the rest of the estimate came to 572 MB.
PROGRAM_BYTES_PER_COPY = 48 * 2**20


_ARRAYS: list = []  # [(a training set's images, its variables)]: the last one made


def training_arrays(dataset):
    """The stack's training set (``dataset.x_train``, ``y_train``) as variables, which the
    compiled step reads in place. Each is the dataset's own memory where TensorFlow can share
    it (:func:`lrstudy.data.aligned.tensor`), else a copy. Kept for the next stack on the same
    arrays (:func:`lrstudy.data.datasets.load_cached` shares them between the trials of a
    process). Nothing writes them: the dataset's arrays stay as loaded."""
    if _ARRAYS and _ARRAYS[0][0] is dataset.x_train:
        return _ARRAYS[0][1]
    # each made from a tensor, which the variable takes as its value: made from the NumPy
    # array, TensorFlow would copy the whole set twice
    arrays = (tf.Variable(aligned.tensor(dataset.x_train), trainable=False),
              tf.Variable(aligned.tensor(dataset.y_train), trainable=False))
    _ARRAYS[:] = [(dataset.x_train, arrays)]
    return arrays


def stack_of(prepared: list, steps_per_execution: int, vectorize: bool = True):
    """The stack of the prepared trials (one budget, see :func:`lrstudy.training.fitting.fit_stack`):
    a :class:`lrstudy.training.vector_stack.VectorStack` where ``vectorize`` and
    :func:`lrstudy.training.vector_stack.unsupported` has no objection, else a compiled
    :class:`StackedModel`; None for one trial that does not vectorize (Keras's ``fit``
    trains it as it is). Builds the copies (metrics and optimizer state)."""
    from lrstudy.training import vector_stack as vstack

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
    (:func:`lrstudy.data.order.batch_indices` of their seeds, each copy's orders hashed as fed
    into its trial's :class:`~lrstudy.data.order.OrderDigest`). A generator: a
    :class:`~lrstudy.training.vector_stack.VectorStack` yields each epoch's index after its end; a
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
    if trials and trials[0].scenario.budget["split"] == splits.PER_SEED:
        by_seed: dict = {}
        for t in trials:
            by_seed.setdefault(t.seed, []).append(t)
        return [same[i:i + size] for same in by_seed.values()
                for i in range(0, len(same), size)]
    return [trials[i:i + size] for i in range(0, len(trials), size)]
