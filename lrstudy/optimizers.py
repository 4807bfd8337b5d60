"""Optimizers by name, with keyword arguments checked against Keras's own signatures.

``make("sgd", 0.01, momentum=0.9)`` is ``keras.optimizers.SGD(learning_rate=0.01,
momentum=0.9)``. The learning rate may be a number or a ``LearningRateSchedule``. For the
one-cycle policy a per-step momentum function can be given: SGD's momentum (or Adam's
``beta_1``) then follows it inside the compiled step.
"""

from __future__ import annotations

import inspect
import math

import keras
from keras import ops

OPTIMIZERS = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "adamax": keras.optimizers.Adamax,
    "nadam": keras.optimizers.Nadam,
    "adagrad": keras.optimizers.Adagrad,
    "adadelta": keras.optimizers.Adadelta,
    "rmsprop": keras.optimizers.RMSprop,
}


def check_learning_rate(value, what: str = "learning_rate") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"Argument `{what}` must be a number. Received: {what}={value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"Argument `{what}` must be finite and > 0. Received: {what}={value}")
    return float(value)


def check(name: str, kwargs: dict | None = None) -> None:
    """Validate an optimizer name and its keyword arguments without building it."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    params = inspect.signature(OPTIMIZERS[name].__init__).parameters
    for key, value in (kwargs or {}).items():
        if key not in params or key in ("self", "learning_rate", "kwargs"):
            allowed = [p for p in params if p not in ("self", "learning_rate", "kwargs", "name")]
            raise ValueError(
                f"optimizer {name!r} has no argument {key!r}; allowed: {', '.join(allowed)}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"optimizer {name!r}: argument {key!r} must be finite, got {value}")


class CycledMomentumSGD(keras.optimizers.SGD):
    """SGD whose momentum follows ``momentum_fn(iteration)`` (one-cycle's inverse cycle)."""

    def __init__(self, momentum_fn, **kwargs):
        kwargs.setdefault("momentum", 0.9)  # non-zero: build() makes the momentum slots
        super().__init__(**kwargs)
        self.momentum_fn = momentum_fn

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        momentum = ops.cast(self.momentum_fn(self.iterations), variable.dtype)
        m = self.momentums[self._get_variable_index(variable)]
        step = ops.subtract(ops.multiply(m, momentum), ops.multiply(gradient, learning_rate))
        self.assign(m, step)
        if self.nesterov:
            step = ops.subtract(ops.multiply(m, momentum), ops.multiply(gradient, learning_rate))
        self.assign_add(variable, step)


class CycledBetaAdam(keras.optimizers.Adam):
    """Adam whose ``beta_1`` follows ``momentum_fn(iteration)`` (fastai's one-cycle for Adam)."""

    def __init__(self, momentum_fn, **kwargs):
        self.momentum_fn = momentum_fn
        super().__init__(**kwargs)

    @property
    def beta_1(self):
        return self.momentum_fn(self.iterations)

    @beta_1.setter
    def beta_1(self, value):  # Adam.__init__ assigns it; the schedule wins
        self._beta_1_init = value


def make(name: str, learning_rate, momentum_fn=None, **kwargs):
    """Optimizer ``name`` at ``learning_rate`` (a number or a schedule)."""
    check(name, kwargs)
    if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        learning_rate = check_learning_rate(learning_rate)
    if momentum_fn is not None:
        if name == "sgd":
            return CycledMomentumSGD(momentum_fn, learning_rate=learning_rate, **kwargs)
        if name == "adam":
            return CycledBetaAdam(momentum_fn, learning_rate=learning_rate, **kwargs)
        raise ValueError(f"cycled momentum needs optimizer 'sgd' or 'adam', not {name!r}")
    return OPTIMIZERS[name](learning_rate=learning_rate, **kwargs)
