"""Schedule-free AdamW as its paper defines it, a Keras 3 optimizer evaluated at the average x.

Defazio et al. 2024, "The Road Less Scheduled" (arXiv:2405.15682), and its reference
implementation ``schedulefree.AdamWScheduleFree`` (facebookresearch/schedule_free 1.4), step
for step. Three sequences: ``z`` takes the Adam-normalised gradient steps, ``x`` is a weighted
average of the ``z``, and the gradient is taken at their interpolation
``y = (1 - beta_1) z + beta_1 x``. As in the reference, the model's variables hold ``y``
during training and ``z`` is a slot; ``x`` is never stored, it is recovered from the two:
``x = y + (1 - 1/beta_1) (z - y)`` (:meth:`AdamWScheduleFree.to_x`, the reference's
``eval()``) and back ``y = x + (1 - beta_1) (z - x)`` (:meth:`AdamWScheduleFree.to_y`, its
``train()``). The method's model is ``x``: the study evaluates there (validation each epoch,
the test set) and reports ``y`` beside it (the ``_at_y`` metrics).

One step ``k`` (counted from 0) at the peak learning rate ``lr``:

- ``lr_k = lr * min((k + 1) / warmup_steps, 1)`` (a linear warm-up; none for 0 steps);
- ``lr_max = max(lr_max, lr_k)``, ``weight = (k + 1) ** r * lr_max ** weight_lr_power``,
  ``weight_sum += weight``, ``ckp1 = weight / weight_sum``: the weight of this step's ``z``
  in the average ``x`` (``1 / (k + 1)`` without warm-up, ``r = 0``);
- ``v = beta_2 v + (1 - beta_2) g^2``, ``d = g / (sqrt(v / (1 - beta_2 ** (k + 1))) + eps)
  + weight_decay * y`` (the decay taken at ``y``, as the reference takes it);
- ``y <- y + ckp1 (z - y) + lr_k (beta_1 (1 - ckp1) - 1) d``, ``z <- z - lr_k d``.

The scalars run in float64 (the reference computes them as Python floats), the tensors in
the variables' dtype. ``lr_max`` and ``weight_sum`` take the shape of the learning rate: a
scalar, or with a vector of learning rates (a :class:`lrstudy.training.vector_stack.VectorStack` gives one
per copy, shaped ``[copies, 1]``) one each, so that each copy averages as it would alone.

Warm-up: the paper's experiments warm up over 5% of training (its Appendix G, the
"Schedule-Free warmup" of the hyper-parameter tables). The study writes it as a fraction,
``warmup_frac = 0.05``, which :func:`lrstudy.spec.resolve.optimizer_args` turns into
``warmup_steps`` once from the trial's total steps, as it resolves a schedule's fractions.
"""

from __future__ import annotations

import contextlib
import math
import numbers

import keras
from keras import ops

#: The fraction of training the paper warms up over (its Appendix G).
PAPER_WARMUP_FRAC = 0.05


def _real(name: str, value, low: float, high: float, *, open_low=False, open_high=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be a finite number. Received: "
                         f"{name}={value!r}")
    if (value < low or (open_low and value == low) or value > high
            or (open_high and value == high)):
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise ValueError(f"Argument `{name}` must be in {interval}. Received: {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="lrstudy")
class AdamWScheduleFree(keras.optimizers.Optimizer):
    """Schedule-free AdamW (see the module's docstring): the reference's
    ``AdamWScheduleFree`` with ``learning_rate`` its peak ``lr``, ``beta_1``, ``beta_2`` its
    ``betas``, ``epsilon`` its ``eps``, and its ``weight_decay``, ``warmup_steps``, ``r`` and
    ``weight_lr_power``, with the reference's defaults.

    The model's variables hold ``y`` while it trains (:attr:`at_x` False). :meth:`to_x` puts
    the average ``x`` in them for evaluation and :meth:`to_y` puts ``y`` back; Keras's ``fit``
    ends with :meth:`finalize_variable_values`, which leaves ``x`` in them (the trained
    model). Stepping while they hold ``x`` is wrong (the reference refuses it): call
    :meth:`to_y` first (:class:`EvaluateAtX` does it when training begins).
    """

    def __init__(self, learning_rate=0.0025, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0, name=None,
                 **kwargs):
        if kwargs.get("use_ema"):
            raise ValueError("Argument `use_ema` is not for AdamWScheduleFree: its average "
                             "is x (to_x). Received: use_ema=True")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = _real("beta_1", beta_1, 0.0, 1.0, open_low=True, open_high=True)
        self.beta_2 = _real("beta_2", beta_2, 0.0, 1.0, open_high=True)
        self.epsilon = _real("epsilon", epsilon, 0.0, math.inf)
        self.weight_decay = _real("weight_decay", weight_decay, 0.0, math.inf)
        if (isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral)
                or warmup_steps < 0):
            raise ValueError("Argument `warmup_steps` must be an integer >= 0. Received: "
                             f"warmup_steps={warmup_steps!r}")
        self.warmup_steps = int(warmup_steps)
        self.r = _real("r", r, -math.inf, math.inf)
        self.weight_lr_power = _real("weight_lr_power", weight_lr_power, 0.0, math.inf)
        self.at_x = False  # what the model's variables hold: y (False) or x (True)

    def _apply_weight_decay(self, variables):
        """Nothing: the decay is part of the step, taken at y (:meth:`update_step`), where
        Keras's would shrink the variables before it."""

    def build(self, var_list):
        """``z`` (each variable's slot, starting at the variable) and ``exp_avg_sq``, and
        ``lr_max`` and ``weight_sum`` in float64, shaped as the learning rate."""
        if self.built:
            return
        super().build(var_list)
        shape = tuple(ops.shape(self._get_current_learning_rate()))
        self._lr_max = self.add_variable(shape, initializer=keras.initializers.Constant(-1.0),
                                         dtype="float64", name="lr_max")
        self._weight_sum = self.add_variable(shape, initializer="zeros", dtype="float64",
                                             name="weight_sum")
        self._z, self._exp_avg_sq = self.add_optimizer_variables(var_list,
                                                                 ["z", "exp_avg_sq"])

    def _start(self, trainable_variables) -> None:
        """Each ``z`` from its variable, before the first step (the reference's state
        initialisation)."""
        for var in trainable_variables:
            self.assign(self._z[self._get_variable_index(var)], var)

    def _scalars(self, learning_rate):
        """This step's ``lr_k``, the new ``lr_max`` and ``weight_sum``, ``ckp1`` and the second
        moment's bias correction, in float64 (see the module's docstring)."""
        k1 = ops.cast(self.iterations, "float64") + 1.0
        lr = ops.cast(learning_rate, "float64")
        if self.warmup_steps > 0:
            lr = lr * ops.minimum(k1 / self.warmup_steps, 1.0)
        lr_max = ops.maximum(lr, self._lr_max)
        weight = ops.power(k1, self.r) * ops.power(lr_max, self.weight_lr_power)
        weight_sum = self._weight_sum + weight
        positive = weight_sum > 0
        ckp1 = ops.where(positive, weight / ops.where(positive, weight_sum, 1.0), 0.0)
        bias_correction2 = 1.0 - ops.power(ops.cast(self.beta_2, "float64"), k1)
        return lr, lr_max, weight_sum, ckp1, bias_correction2

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """Every variable's step (each computes the step's scalars from the same state), then
        the averaging state once."""
        # z starts at the weights of the first step, set in the step: Keras may build the
        # optimizer while it traces the train step, where an assignment in build() would run
        # at every step
        ops.cond(ops.equal(self.iterations, 0),
                 lambda: self._start(trainable_variables), lambda: None)
        _, lr_max, weight_sum, _, _ = self._scalars(learning_rate)
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        self.assign(self._lr_max, lr_max)
        self.assign(self._weight_sum, weight_sum)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr, _, _, ckp1, bias_correction2 = self._scalars(learning_rate)
        index = self._get_variable_index(variable)
        z, exp_avg_sq = self._z[index], self._exp_avg_sq[index]
        grad = ops.cast(gradient, dtype)
        beta_2 = ops.cast(self.beta_2, dtype)
        v = ops.add(ops.multiply(exp_avg_sq, beta_2), ops.multiply(ops.square(grad), 1 - beta_2))
        self.assign(exp_avg_sq, v)
        denom = ops.add(ops.sqrt(ops.divide(v, ops.cast(bias_correction2, dtype))),
                        ops.cast(self.epsilon, dtype))
        grad = ops.divide(grad, denom)
        if self.weight_decay and self._use_weight_decay(variable):
            grad = ops.add(grad, ops.multiply(variable, ops.cast(self.weight_decay, dtype)))
        y = ops.add(variable, ops.multiply(ops.subtract(z, variable), ops.cast(ckp1, dtype)))
        step = ops.cast(lr * (self.beta_1 * (1.0 - ckp1) - 1.0), dtype)
        self.assign(variable, ops.add(y, ops.multiply(grad, step)))
        self.assign(z, ops.subtract(z, ops.multiply(grad, ops.cast(lr, dtype))))

    # ---- x and y ----------------------------------------------------------------------------
    def average(self, variable):
        """The average x of ``variable`` (which holds y) as a tensor, the variable unchanged."""
        if self.at_x:
            raise ValueError(f"optimizer {self.name!r}: the variables hold x already")
        z = self._z[self._get_variable_index(variable)]
        value = ops.convert_to_tensor(variable)
        x = ops.add(value, ops.multiply(ops.subtract(z, value), 1.0 - 1.0 / self.beta_1))
        return ops.where(ops.equal(self.iterations, 0), value, x)  # no step yet: x is y

    def _lerp_variables(self, weight: float) -> None:
        for var in self._trainable_variables:
            z = self._z[self._get_variable_index(var)]
            var.assign(ops.add(var, ops.multiply(ops.subtract(z, var), weight)))

    def to_x(self) -> None:
        """Put the average x in the model's variables (the reference's ``eval()``); nothing if
        they hold it already or before the first step (x is y then)."""
        if self.built and not self.at_x and int(self.iterations) > 0:
            self._lerp_variables(1.0 - 1.0 / self.beta_1)
            self.at_x = True

    def to_y(self) -> None:
        """Put y back in the model's variables (the reference's ``train()``); nothing if they
        hold it already."""
        if self.at_x:
            self._lerp_variables(1.0 - self.beta_1)
        self.at_x = False

    def finalize_variable_values(self, var_list):
        """The end of Keras's ``fit``: the model keeps x, the method's result."""
        super().finalize_variable_values(var_list)
        self.to_x()

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                       "weight_decay": self.weight_decay, "warmup_steps": self.warmup_steps,
                       "r": self.r, "weight_lr_power": self.weight_lr_power})
        return config


def evaluates_at_x(optimizer) -> bool:
    """Whether ``optimizer`` is evaluated at an average its model's variables do not hold."""
    return isinstance(optimizer, AdamWScheduleFree)


@contextlib.contextmanager
def at_y(models):
    """The schedule-free ones of ``models`` (trained, their variables at x) hold y inside the
    block, x again after it."""
    swapped = [m.optimizer for m in models
               if evaluates_at_x(m.optimizer) and m.optimizer.at_x]
    for optimizer in swapped:
        optimizer.to_y()
    try:
        yield
    finally:
        for optimizer in swapped:
            optimizer.to_x()


def at_y_keys(logs: dict) -> dict:
    """``logs`` with each key suffixed ``_at_y``: ``val_loss`` -> ``val_loss_at_y``."""
    return {f"{key}_at_y": value for key, value in logs.items()}


class EvaluateAtX(keras.callbacks.Callback):
    """Keras's ``fit`` of a schedule-free model validates at x: y is swapped out for each
    validation (``on_test_begin``) and back after it (``on_test_end``). With
    ``validation`` (``(x, y)``, ``batch_size``) the model is first evaluated at y there too,
    its metrics added to the epoch's logs as ``val_<metric>_at_y``: put this callback before
    the logger. Training begins at y (after a ``fit`` that left x)."""

    def __init__(self, validation=None, batch_size: int | None = None):
        super().__init__()
        self.validation, self.batch_size = validation, batch_size
        self._at_y = None  # this epoch's validation at y, until the epoch's end
        self._swapped = False  # whether this validation swapped x in

    def on_train_begin(self, logs=None):
        self.model.optimizer.to_y()

    def on_test_begin(self, logs=None):
        optimizer = self.model.optimizer
        if optimizer.at_x:  # an evaluation outside training: nothing to swap
            return
        if self.validation is not None:
            x, y = self.validation
            results = self.model.evaluate(x, y, batch_size=self.batch_size, verbose=0,
                                          return_dict=True)
            self._at_y = at_y_keys({f"val_{k}": v for k, v in results.items()})
        optimizer.to_x()
        self._swapped = True

    def on_test_end(self, logs=None):
        if self._swapped:
            self.model.optimizer.to_y()
            self._swapped = False

    def on_epoch_end(self, epoch, logs=None):
        if self._at_y is not None and logs is not None:
            logs.update(self._at_y)
        self._at_y = None
