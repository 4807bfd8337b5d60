"""Data drawn from a seeded generator, for workloads other than images: a regression with a
known noise floor (``friedman1``) and a token-sequence task that attention solves
(``sequence``).

Each is drawn once, whole: a pool of :data:`POOL` examples (the training and validation sets
are carved from it by :func:`lrstudy.data.splits.split_indices`) and a fixed test set of
:data:`TEST` examples drawn after it. The draws use NumPy's legacy ``RandomState``, whose
streams NumPy keeps frozen across versions (NEP 19; ``sklearn.datasets.make_friedman1`` draws
from one too), so the arrays, and the fingerprint the runs log, are the same on any machine.

>>> (x, y), (x_test, y_test) = friedman1()
>>> x.shape, y.shape, x_test.shape, str(y.dtype)
((10000, 10), (10000,), (2000, 10), 'float32')
>>> (x, y), _ = sequence()
>>> x.shape, int(y.max()) + 1
((10000, 16, 16), 16)
"""

from __future__ import annotations

import functools

import numpy as np

POOL = 10_000
TEST = 2_000

FRIEDMAN_SEED = 1991  # the year of Friedman's paper
FRIEDMAN_FEATURES = 10  # five that matter, five of noise
FRIEDMAN_NOISE = 1.0

SEQUENCE_SEED = 2017  # the year of "Attention is all you need"
SEQUENCE_LENGTH = 16
SEQUENCE_VOCAB = 16  # also the number of classes: the label is a token
# the pointer is a token, so every position after the first must be one
assert SEQUENCE_LENGTH <= SEQUENCE_VOCAB


@functools.cache
def friedman1() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Friedman's regression problem #1 (``sklearn.datasets.make_friedman1``), standardized.

    ``x ~ U[0, 1]^10`` and ``y = 10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5 + e``,
    ``e ~ N(0, FRIEDMAN_NOISE^2)``; ``x6 .. x10`` do not enter ``y``. The targets are then
    standardized with the pool's mean and standard deviation (about 14.5 and 5.0), the test
    set with the same two numbers: a network's output starts near 0 whatever the LR, so a
    small LR is not penalized for the distance to the targets' mean alone, and the RMSE
    reads in standard deviations of ``y``. Its floor, the RMSE of the true function, is
    :func:`friedman1_noise_floor` (about 0.2).

    Why Friedman #1 rather than scikit-learn's bundled diabetes data: diabetes has 442 rows,
    so its test set would be about 90 rows, whose RMSE varies between seeds more than LR
    strategies differ, and a linear model already fits it about as well as anything; Friedman
    #1 has any size, a known noise floor, and a nonlinear part (the sine of a product) that a
    network has to learn, which is where the LR shows.
    """
    x, y = _friedman1_raw()
    mean, std = friedman1_scale()
    y = (y - mean) / std
    x, y = x.astype(np.float32), y.astype(np.float32)
    return (x[:POOL], y[:POOL]), (x[POOL:], y[POOL:])


@functools.cache
def _friedman1_raw() -> tuple[np.ndarray, np.ndarray]:
    """The pool and then the test set, as ``make_friedman1`` draws them (float64)."""
    from sklearn.datasets import make_friedman1

    return make_friedman1(n_samples=POOL + TEST, n_features=FRIEDMAN_FEATURES,
                          noise=FRIEDMAN_NOISE, random_state=FRIEDMAN_SEED)


def friedman1_scale() -> tuple[float, float]:
    """The mean and standard deviation the targets are standardized with: the pool's."""
    y_pool = _friedman1_raw()[1][:POOL]
    return float(y_pool.mean()), float(y_pool.std())


def friedman_function(x: np.ndarray) -> np.ndarray:
    """Friedman #1 without its noise, in the original units (before standardizing)."""
    x = np.asarray(x, dtype=np.float64)
    return (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2
            + 10 * x[:, 3] + 5 * x[:, 4])


def friedman1_noise_floor() -> float:
    """The RMSE of the true function on the standardized targets: the noise's standard
    deviation over the pool's (no model can expect to do better on the test set)."""
    return FRIEDMAN_NOISE / friedman1_scale()[1]


@functools.cache
def sequence() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A pointer task on token sequences: the label is the token the first token points to.

    Each sequence has :data:`SEQUENCE_LENGTH` tokens from a vocabulary of
    :data:`SEQUENCE_VOCAB`. The first is a pointer ``p``, uniform in ``1 .. length - 1``; the
    others are uniform tokens; the label is the token at position ``p``, one of
    ``SEQUENCE_VOCAB`` classes (chance: 1/16). The task is exact (a model can reach 100%),
    and it is one of looking up a position named by content, which one attention layer does
    directly (the first position's query matches the key of position ``p``) and a model that
    mixes positions by fixed weights has to approximate pointer by pointer.

    ``x`` holds the tokens one-hot, ``(n, length, vocab)`` float32 (a Dense layer without bias
    on it is a token embedding, and the vocabulary is the input's last dimension); ``y`` the
    labels, int32.
    """
    rs = np.random.RandomState(SEQUENCE_SEED)
    n = POOL + TEST
    tokens = rs.randint(0, SEQUENCE_VOCAB, size=(n, SEQUENCE_LENGTH))
    tokens[:, 0] = rs.randint(1, SEQUENCE_LENGTH, size=n)
    labels = tokens[np.arange(n), tokens[:, 0]].astype(np.int32)
    x = np.eye(SEQUENCE_VOCAB, dtype=np.float32)[tokens]
    return (x[:POOL], labels[:POOL]), (x[POOL:], labels[POOL:])


def tokens(x: np.ndarray) -> np.ndarray:
    """The token ids of one-hot sequences ``x`` (as :func:`sequence` gives them)."""
    return np.argmax(x, axis=-1)
