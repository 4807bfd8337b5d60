"""Optimizers by name; their names and arguments are data, checked without TensorFlow.

``make("sgd", 0.01, momentum=0.9)`` is ``keras.optimizers.SGD(learning_rate=0.01,
momentum=0.9)``. The learning rate may be a number or a ``LearningRateSchedule``. For the
one-cycle policy a per-step momentum function can be given: SGD's momentum (or Adam's
``beta_1``) then follows it inside the compiled step.

:data:`OPTIMIZERS` lists each optimizer's Keras class and the keyword arguments it takes
besides ``learning_rate`` (a test keeps it equal to Keras's own signatures), so a study file
naming an unknown optimizer or argument is refused before Keras is imported.

>>> check("adam", {"beta_1": 0.8})
>>> check("adam", {"momentum": 0.9})
Traceback (most recent call last):
...
ValueError: optimizer 'adam' has no argument 'momentum'; allowed: beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum, ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps
"""

from __future__ import annotations

import functools
import math
import numbers

_COMMON = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "use_ema",
           "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor",
           "gradient_accumulation_steps")
_ADAM = ("beta_1", "beta_2", "epsilon")

#: name -> (Keras class, or the dotted path of one of lrstudy's, its keyword arguments
#: besides ``learning_rate`` and ``name``)
OPTIMIZERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sgd": ("SGD", ("momentum", "nesterov", *_COMMON)),
    "adam": ("Adam", (*_ADAM, "amsgrad", *_COMMON)),
    "adamw": ("AdamW", ("weight_decay", *_ADAM, "amsgrad", *_COMMON[1:])),
    "adamax": ("Adamax", (*_ADAM, *_COMMON)),
    "nadam": ("Nadam", (*_ADAM, *_COMMON)),
    "adagrad": ("Adagrad", ("initial_accumulator_value", "epsilon", *_COMMON)),
    "adadelta": ("Adadelta", ("rho", "epsilon", *_COMMON)),
    "rmsprop": ("RMSprop", ("rho", "momentum", "epsilon", "centered", *_COMMON)),
    "schedule_free_adamw": ("ScheduleFreeAdamW", (*_ADAM, "warmup_steps", *_COMMON)),
    # the paper's, evaluated at its average (lrstudy.lr.schedule_free); `warmup_frac` is a
    # fraction of training that lrstudy.spec.resolve.optimizer_args turns into `warmup_steps`
    "schedule_free_adamw_paper": ("lrstudy.lr.schedule_free.AdamWScheduleFree", (
        *_ADAM, "weight_decay", "warmup_steps", "warmup_frac", "r", "weight_lr_power")),
    # learning-rate-free Adam (lrstudy.lr.prodigy): `learning_rate` multiplies its estimated
    # step size d (1.0, the reference's default)
    "prodigy": ("lrstudy.lr.prodigy.Prodigy", (
        *_ADAM, "beta_3", "weight_decay", "decouple", "use_bias_correction",
        "safeguard_warmup", "d0", "d_coef", "growth_rate")),
}
#: An argument a study writes as a fraction of training -> the argument of optimizer steps it
#: becomes (lrstudy.spec.resolve.optimizer_args), before the optimizer is made.
FRACTIONS = {"warmup_frac": "warmup_steps"}
FLAGS = ("nesterov", "amsgrad", "centered", "use_ema", "decouple", "use_bias_correction",
         "safeguard_warmup")
CYCLED_MOMENTUM = ("sgd", "adam")  # the optimizers whose momentum one-cycle can cycle


def check_learning_rate(value, what: str = "learning_rate") -> float:
    """A learning rate is a finite number > 0 (TOML's ``nan`` and ``inf`` included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Argument `{what}` must be a number. Received: {what}={value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"Argument `{what}` must be finite and > 0. Received: {what}={value!r}")
    return float(value)


def check(name, kwargs: dict | None = None) -> None:
    """Validate an optimizer name and its keyword arguments without building it."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    if kwargs is None:
        return
    if not isinstance(kwargs, dict):
        raise ValueError(f"optimizer {name!r}: its arguments must be a table, got {kwargs!r}")
    allowed = OPTIMIZERS[name][1]
    for key, value in kwargs.items():
        if key not in allowed:
            raise ValueError(
                f"optimizer {name!r} has no argument {key!r}; allowed: {', '.join(allowed)}")
        if key in FLAGS:
            if not isinstance(value, bool):
                raise ValueError(f"optimizer {name!r}: argument {key!r} must be true or "
                                 f"false, got {value!r}")
        elif (isinstance(value, bool) or not isinstance(value, numbers.Real)
              or not math.isfinite(value)):
            raise ValueError(f"optimizer {name!r}: argument {key!r} must be a finite number, "
                             f"got {value!r}")


@functools.cache
def _cycled_classes() -> dict:
    """The optimizers with a cycled momentum, defined on first use (they subclass Keras's)."""
    import keras
    from keras import ops

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
                step = ops.subtract(ops.multiply(m, momentum),
                                    ops.multiply(gradient, learning_rate))
            self.assign_add(variable, step)

    class CycledBetaAdam(keras.optimizers.Adam):
        """Adam whose ``beta_1`` follows ``momentum_fn(iteration)`` (fastai's one-cycle)."""

        def __init__(self, momentum_fn, **kwargs):
            self.momentum_fn = momentum_fn
            super().__init__(**kwargs)

        @property
        def beta_1(self):
            return self.momentum_fn(self.iterations)

        @beta_1.setter
        def beta_1(self, value):  # Adam.__init__ assigns it; the schedule wins
            self._beta_1_init = value

    return {"sgd": CycledMomentumSGD, "adam": CycledBetaAdam}


def make(name: str, learning_rate, momentum_fn=None, **kwargs):
    """Optimizer ``name`` at ``learning_rate`` (a number or a schedule)."""
    import keras

    check(name, kwargs)
    if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        learning_rate = check_learning_rate(learning_rate)
    if momentum_fn is not None:
        if name not in CYCLED_MOMENTUM:
            raise ValueError(f"cycled momentum needs optimizer 'sgd' or 'adam', not {name!r}")
        return _cycled_classes()[name](momentum_fn, learning_rate=learning_rate, **kwargs)
    fractions = [key for key in kwargs if key in FRACTIONS]
    if fractions:
        raise ValueError(f"optimizer {name!r}: argument {fractions[0]!r} is a fraction of "
                         "training; resolve it into steps first (lrstudy.spec.resolve.optimizer_args)")
    return _class(name)(learning_rate=learning_rate, **kwargs)


def _class(name: str):
    """The optimizer class of ``name``: Keras's, or one of lrstudy's by its dotted path."""
    import importlib

    import keras

    path = OPTIMIZERS[name][0]
    if "." not in path:
        return getattr(keras.optimizers, path)
    module, _, cls = path.rpartition(".")
    return getattr(importlib.import_module(module), cls)
