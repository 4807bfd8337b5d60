"""The order of the training examples, and the pipelines that feed it to a trial.

Each epoch a trial sees its examples in a new order, a function of its seed: a permutation
drawn in one op (:func:`batch_indices`). A trial alone gets batches of examples
(:func:`train_dataset`); a stack gets, in one pipeline, the batches of indices of all its
copies, each its trial's (:mod:`lrstudy.stack` gathers them in its compiled step). Given
an :class:`OrderDigest` per seed, a pipeline hashes each epoch's order on the host as it cuts
its batches from it: the digest of the orders a trial was fed, over all its epochs, is what
the verdict's pairing check compares across strategies (param ``batch_order_sha``).
"""

from __future__ import annotations

import hashlib

from lrstudy import tfquiet
from lrstudy.data import aligned
from lrstudy.data import datasets as data

tf = tfquiet.import_tensorflow()
import numpy as np  # noqa: E402


class OrderDigest:
    """The SHA-256 of the orders a pipeline fed one trial, epoch after epoch: each epoch's
    permutation of the training examples (int64) is hashed on the host when the pipeline cuts
    that epoch's batches from it (:func:`batch_indices`), once per epoch. An epoch whose
    batches are never asked for (Keras's ``fit`` opens the dataset once more than it reads
    it, see :meth:`lrstudy.training.vector_stack.VectorStack.epochs`) draws no order and adds nothing."""

    def __init__(self):
        self._sha = hashlib.sha256()
        self.epochs = 0  # how many epochs' orders were hashed

    def observe(self, order: np.ndarray) -> np.ndarray:
        """Hash ``order`` (one epoch's) and hand it back: the pipeline's batches are cut
        from what this returns, so what is hashed is what is fed."""
        self._sha.update(np.ascontiguousarray(order, dtype=np.int64).tobytes())
        self.epochs += 1
        return order

    def hexdigest(self) -> str:
        """The digest so far, 16 hex digits (param ``batch_order_sha``). No order observed is
        an error: the trial's pipeline was built without this digest."""
        if not self.epochs:
            raise RuntimeError("no epoch's order was observed: the pipeline that fed the "
                               "trial was built without its OrderDigest")
        return self._sha.copy().hexdigest()[:16]


def epoch_order(n: int, key, seed: int):
    """One epoch's order of ``n`` examples for ``seed``: a permutation drawn in one op from
    ``seed`` and the epoch's ``key`` (a graph function, traced once per pipeline)."""
    return tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int64), seed=tf.stack([key, tf.constant(seed, tf.int64)]))


def _observed(order, digest: OrderDigest):
    """``order`` passed through ``digest`` on the host (``numpy_function``): the batches that
    follow are cut from its output."""
    out = tf.numpy_function(digest.observe, [order], tf.int64, stateful=True)
    return tf.ensure_shape(out, order.shape)


def batch_indices(n: int, batch_size: int, seeds, pad: bool = False,
                  digests=None) -> tf.data.Dataset:
    """The batches of indices into ``n`` training examples for each of ``seeds``: one element
    per step, a tuple with one ``(indices, count)`` per seed (``count``: how many of the
    indices are real, int32). Keras iterates the dataset anew each epoch, and each iteration
    gives each seed a new order: a permutation of ``range(n)`` drawn in one op
    (``stateless_shuffle``) from the seed and a key that TensorFlow's seeded random stream
    (``Dataset.random``, global seed set to the seed) renews per iteration. Seed ``s`` gets
    the same orders whichever seeds it is listed with, so a stack's copies see the orders of
    their trials one by one. ``pad``: an epoch's last, smaller batch is padded to
    ``batch_size`` with index 0 (its count says how many are real; see
    :class:`lrstudy.training.keras_stack.StackedModel`). ``digests``: an :class:`OrderDigest` per seed (or
    None), which hashes each epoch's order of its seed as the batches are cut from it.

    Drawing the whole order in one op is what makes a stack's pipeline cheap: the element-wise
    ``Dataset.shuffle`` it replaces cost about 50 ms per trial-epoch of 50,000 examples on
    the 2-core machine, a core's share of a stacked epoch at six copies. Copies of one seed
    share its draw."""
    seeds = [int(s) for s in seeds]
    if digests is not None and len(digests) != len(seeds):
        raise ValueError(f"{len(digests)} order digests for {len(seeds)} seeds")
    full, rest = divmod(n, batch_size)
    distinct = list(dict.fromkeys(seeds))  # a tuning's grid points share their seeds
    keys = []
    for seed in distinct:  # each key stream under its own seed (set_seed: as seed_everything)
        tf.random.set_seed(seed)
        keys.append(tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1))

    def orders(*epoch_keys):
        drawn = {seed: epoch_order(n, key, seed) for key, seed in zip(epoch_keys, distinct)}
        perms = [drawn[seed] for seed in seeds]
        if digests is not None:
            perms = [_observed(p, d) for p, d in zip(perms, digests)]
        if rest and pad:
            counts = tf.constant([batch_size] * full + [rest], tf.int32)
            return tf.data.Dataset.from_tensor_slices(tuple(
                (tf.reshape(tf.pad(p, [[0, batch_size - rest]]), [full + 1, batch_size]), counts)
                for p in perms))
        steps = tf.data.Dataset.from_tensor_slices(tuple(
            (tf.reshape(p[:full * batch_size], [full, batch_size]),
             tf.fill([full], tf.constant(batch_size, tf.int32))) for p in perms))
        if rest:
            steps = steps.concatenate(tf.data.Dataset.from_tensors(tuple(
                (p[full * batch_size:], tf.constant(rest, tf.int32)) for p in perms)))
        return steps

    return (tf.data.Dataset.zip(tuple(keys)).flat_map(orders)
            .apply(_steps(full + bool(rest))).prefetch(tf.data.AUTOTUNE))


def _steps(count: int):
    """Tell Keras how many batches an epoch has (a ``flat_map`` hides it): without it, it
    warns at the end of the first epoch that the input "ran out of data"."""
    return tf.data.experimental.assert_cardinality(count)


def train_dataset(ds: data.Dataset, batch_size: int, seed: int,
                  digest: OrderDigest | None = None) -> tf.data.Dataset:
    """A seeded pipeline over the in-memory arrays, in a new order each epoch: the order of
    :func:`batch_indices` (as a stack's copy gets it), the arrays gathered in that order once
    an epoch and cut into batches (no per-example or per-batch function: half the CPU time
    of a per-batch gather at batch 32). ``digest`` hashes each epoch's order (see
    :class:`OrderDigest`)."""
    x, y = aligned.tensor(ds.x_train), aligned.tensor(ds.y_train)  # the dataset's memory
    full, rest = divmod(len(ds.x_train), batch_size)

    def batches(epoch):
        order = epoch[0]
        xs, ys = tf.gather(x, order), tf.gather(y, order)
        steps = tf.data.Dataset.from_tensor_slices((
            tf.reshape(xs[:full * batch_size], [full, batch_size, *ds.x_train.shape[1:]]),
            tf.reshape(ys[:full * batch_size], [full, batch_size, *ds.y_train.shape[1:]])))
        if rest:
            steps = steps.concatenate(tf.data.Dataset.from_tensors(
                (xs[full * batch_size:], ys[full * batch_size:])))
        return steps

    orders = batch_indices(len(ds.x_train), len(ds.x_train), [seed],
                           digests=None if digest is None else [digest])
    return (orders.flat_map(batches)
            .apply(_steps(full + bool(rest))).prefetch(tf.data.AUTOTUNE))
