"""Data that scikit-learn ships with itself: ``digits``, read from its own files (offline).

>>> (x, y), (x_test, y_test) = digits()
>>> x.shape, x_test.shape, int(y.max()) + 1, float(x.max())
((1437, 8, 8), (360, 8, 8), 10, 1.0)
"""

from __future__ import annotations

import functools

import numpy as np

DIGITS_IMAGES = 1797
DIGITS_TEST = 360  # a fifth of the images
DIGITS_TEST_SEED = 1998  # the year of the UCI "optical recognition of handwritten digits" data


@functools.cache
def digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``): 1,797
    images of 8x8 pixels, each pixel a count 0 .. 16 (of a 4x4 block of a 32x32 bitmap),
    scaled to [0, 1] as float32, and their labels 0 .. 9 (int32).

    The test set is :data:`DIGITS_TEST` images drawn by a permutation at
    :data:`DIGITS_TEST_SEED` (NumPy's legacy ``RandomState``, whose stream NumPy keeps
    frozen), the same whatever the training split; the other 1,437 are the pool the
    training and validation sets are carved from. A small task on which a small network
    reaches well over 90% within seconds, and where a bad LR still shows.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    perm = np.random.RandomState(DIGITS_TEST_SEED).permutation(len(y))
    test, pool = perm[:DIGITS_TEST], perm[DIGITS_TEST:]
    return (x[pool], y[pool]), (x[test], y[test])
