"""Reproducibility controls of a trial: every random generator seeded at once, and
TensorFlow's op determinism switched on for one block only.
"""

from __future__ import annotations

import contextlib


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras (``keras.utils.set_random_seed``)."""
    from lrstudy import tfquiet

    tfquiet.import_tensorflow("keras").utils.set_random_seed(int(seed))


@contextlib.contextmanager
def op_determinism(enabled: bool = True):
    """TensorFlow's op determinism within the block only (as it was before, after).

    Keras refuses XLA (``jit_compile``) for models compiled while it is on, so it must not
    leak into the fits that follow, e.g. after an LR range test in the same process.
    """
    if not enabled:
        yield
        return
    from lrstudy import tfquiet

    tfquiet.import_tensorflow()
    from tensorflow.python.framework import config as tf_config

    was_on = tf_config.is_op_determinism_enabled()
    tf_config.enable_op_determinism()
    try:
        yield
    finally:
        if not was_on:
            tf_config.disable_op_determinism()
