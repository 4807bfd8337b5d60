"""The order of the training examples, and the pipelines that feed it to a trial.

Each epoch a trial sees its examples in a new order, a function of its seed: a permutation
drawn in one op (:func:`batch_indices`). A trial alone gets batches of examples
(:func:`train_dataset`); a stack gets, in one pipeline, the batches of indices of all its
copies, each its trial's (:mod:`lrstudy.stack` gathers them in its compiled step). The
digest of the first epoch's order (:func:`batch_order_digest`) is what the verdict's pairing
check compares across strategies.
"""

from __future__ import annotations

import hashlib

from lrstudy import data, tfquiet

tf = tfquiet.import_tensorflow()
import numpy as np  # noqa: E402


def batch_indices(n: int, batch_size: int, seeds, pad: bool = False) -> tf.data.Dataset:
    """The batches of indices into ``n`` training examples for each of ``seeds``: one element
    per step, a tuple with one ``(indices, count)`` per seed (``count``: how many of the
    indices are real, int32). Keras iterates the dataset anew each epoch, and each iteration
    gives each seed a new order: a permutation of ``range(n)`` drawn in one op
    (``stateless_shuffle``) from the seed and a key that TensorFlow's seeded random stream
    (``Dataset.random``, global seed set to the seed) renews per iteration. Seed ``s`` gets
    the same orders whichever seeds it is listed with, so a stack's copies see the orders of
    their trials one by one. ``pad``: an epoch's last, smaller batch is padded to
    ``batch_size`` with index 0 (its count says how many are real; see
    :class:`lrstudy.stack.StackedModel`).

    Drawing the whole order in one op is what makes a stack's pipeline cheap: the element-wise
    ``Dataset.shuffle`` it replaces cost about 50 ms per trial-epoch of 50,000 examples on
    the 2-core machine, a core's share of a stacked epoch at six copies."""
    seeds = [int(s) for s in seeds]
    full, rest = divmod(n, batch_size)
    keys = []
    for seed in seeds:  # each key stream under its own seed (set_seed: as seed_everything)
        tf.random.set_seed(seed)
        keys.append(tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1))

    def orders(*epoch_keys):
        perms = [tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([key, tf.constant(seed, tf.int64)]))
            for key, seed in zip(epoch_keys, seeds)]
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


def train_dataset(ds: data.Dataset, batch_size: int, seed: int) -> tf.data.Dataset:
    """A seeded pipeline over the in-memory arrays, in a new order each epoch: the order of
    :func:`batch_indices` (as a stack's copy gets it), the arrays gathered in that order once
    an epoch and cut into batches (no per-example or per-batch function: half the CPU time
    of a per-batch gather at batch 32)."""
    x, y = tf.constant(ds.x_train), tf.constant(ds.y_train)
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

    return (batch_indices(len(ds.x_train), len(ds.x_train), [seed]).flat_map(batches)
            .apply(_steps(full + bool(rest))).prefetch(tf.data.AUTOTUNE))


def batch_order_digest(n: int, seed: int) -> str:
    """A short SHA-256 of the first epoch's order of the ``n`` training examples that
    :func:`batch_indices` gives ``seed`` (its own pipeline: the training pipeline's epochs are
    untouched)."""
    (first, _), = batch_indices(n, n, [seed]).take(1).get_single_element()
    return hashlib.sha256(first.numpy().astype(np.int64).tobytes()).hexdigest()[:16]
