"""How a dataset's training pool is split into validation and training sets.

The validation set is carved from the pool with a seed (a fixed one,
:data:`DEFAULT_SPLIT_SEED`, or with a budget's ``split = "per-seed"`` the trial's), before the
training subset, so it does not change with ``train_size``::

    perm = default_rng(split_seed).permutation(n_pool)
    val = perm[:val_size]                      # val_size = round(val_fraction * n_pool)
    train = perm[val_size:val_size + train_size]

or, for the decay tutorial's reproduction, drawn as that tutorial drew its subset
(:func:`sample_split`). :func:`lrstudy.data.datasets.load` takes the arrays at these indices.

>>> val, train = split_indices(10, val_size=2, seed=0)
>>> len(val), len(train), sorted([*val, *train]) == list(range(10))
(2, 8, True)
"""

from __future__ import annotations

import numbers
import operator
import random

import numpy as np

#: How the validation and training sets are drawn from the pool (see :func:`split_indices`
#: and :func:`sample_split`).
SPLITS = ("seeded", "random.sample")
#: A budget's ``split``: one of :data:`SPLITS`, drawn at :data:`DEFAULT_SPLIT_SEED`, or
#: ``per-seed``, the seeded draw at each trial's own seed (so seeds differ in data too).
PER_SEED = "per-seed"
BUDGET_SPLITS = SPLITS + (PER_SEED,)
DEFAULT_SPLIT_SEED = 9125
DEFAULT_VAL_FRACTION = 1 / 6  # 10,000 of the 60,000 training images


def split_indices(
    n: int,
    *,
    train_size: int | None = None,
    val_size: int | None = None,
    val_fraction: float | None = None,
    seed: int = DEFAULT_SPLIT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """(validation, training) indices into a pool of ``n`` examples.

    ``perm = default_rng(seed).permutation(n)``; validation is ``perm[:v]`` with
    ``v = val_size`` or ``round(val_fraction * n)`` (default ``round(n / 6)``), training is
    ``perm[v:v + train_size]`` (default: all the rest). The validation set therefore does not
    depend on ``train_size``, and a smaller training set is a prefix of a larger one.
    """
    v, t = sizes(n, train_size=train_size, val_size=val_size, val_fraction=val_fraction)
    perm = np.random.default_rng(check_seed(seed)).permutation(n)
    return perm[:v], perm[v : v + t]


def sample_split(
    n: int, *, train_size: int | None = None, val_size: int = 0, seed: int = DEFAULT_SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(validation, training) indices drawn the way the decay tutorial drew its subset.

    ``random.seed(seed); idx = random.sample(range(n), train_size + val_size)``, then Keras's
    ``validation_split``: the *last* ``val_size`` of the drawn indices are the validation set,
    the first ``train_size`` the training set (in the drawn order). ``random.Random(seed)``
    is the generator ``random.seed`` seeds, so the global state is left alone.
    """
    v, t = sizes(n, train_size=train_size, val_size=val_size)
    idx = np.asarray(random.Random(check_seed(seed)).sample(range(n), t + v), dtype=np.int64)
    return idx[t:], idx[:t]


def sizes(
    n: int, *, train_size=None, val_size=None, val_fraction=None
) -> tuple[int, int]:
    """(validation size, training size) for a pool of ``n``, validated: ValueError of one
    line for sizes the pool cannot give."""
    if val_size is not None and val_fraction is not None:
        raise ValueError(
            "Pass either `val_size` or `val_fraction`, not both. "
            f"Received: val_size={val_size!r}, val_fraction={val_fraction!r}"
        )
    if val_size is not None:
        v = _as_int("val_size", val_size)
        if not 0 <= v < n:
            raise ValueError(
                f"Argument `val_size` must be >= 0 and < {n} (the training pool, leaving at "
                f"least one example to train on; 0: no validation set). "
                f"Received: val_size={val_size!r}"
            )
    else:
        fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, numbers.Real)
            or not 0 < fraction < 1
        ):
            raise ValueError(
                f"Argument `val_fraction` must be in (0, 1). Received: val_fraction={fraction!r}"
            )
        v = round(fraction * n)
        if not 0 < v < n:
            raise ValueError(
                f"Argument `val_fraction` leaves {v} of the {n} pool examples for validation, "
                f"must leave between 1 and {n - 1}. Received: val_fraction={fraction!r}"
            )
    if train_size is None:
        return v, n - v
    t = _as_int("train_size", train_size)
    if not 0 < t <= n - v:
        raise ValueError(
            f"Argument `train_size` must be > 0 and <= {n - v} (the {n} pool examples minus {v} "
            f"for validation). Received: train_size={train_size!r}"
        )
    return v, t


def _as_int(argument: str, value) -> int:
    message = f"Argument `{argument}` must be an integer. Received: {argument}={value!r}"
    if isinstance(value, bool):
        raise ValueError(message)
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(message) from None


def check_seed(seed) -> int:
    s = _as_int("split_seed", seed)
    if s < 0:
        raise ValueError(f"Argument `split_seed` must be >= 0. Received: split_seed={seed!r}")
    return s


def check_split(split) -> str:
    if split not in SPLITS:
        raise ValueError(f"Argument `split` must be one of {', '.join(map(repr, SPLITS))}. "
                         f"Received: split={split!r}")
    return split




def draw(split: str) -> str:
    """How a budget's ``split`` (:data:`BUDGET_SPLITS`) is drawn: one of :data:`SPLITS`."""
    return "seeded" if split == PER_SEED else split
