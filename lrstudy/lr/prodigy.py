"""Prodigy, a learning-rate-free Adam, as its paper defines it: a Keras 3 optimizer.

Mishchenko & Defazio 2024, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner"
(ICML 2024, arXiv:2306.06101), and its reference implementation ``prodigyopt.Prodigy``
(PyTorch), step for step, with its defaults. Prodigy is Adam whose step size ``d`` is
estimated as it trains, from how far the weights have moved from where they started along
the gradients: ``learning_rate`` is a multiplier of that estimate (1.0, the reference's
default, unless training is unstable).

One step, with the reference's names (``dlr`` and the bias correction from the old ``d``):

- ``dlr = d * lr * bias_correction``, the correction ``sqrt(1 - beta_2 ** (k + 1)) /
  (1 - beta_1 ** (k + 1))`` with ``use_bias_correction``, else 1;
- for each variable ``p`` (gradient ``g``, plus ``weight_decay * p`` when the decay is
  coupled, ``decouple=False``), its start ``p0``:
  ``numerator += (d / d0) * dlr * <g, p0 - p>``,
  ``m = beta_1 m + d (1 - beta_1) g``, ``v = beta_2 v + d^2 (1 - beta_2) g^2``,
  ``s = beta_3 s + (d / d0) * (d if safeguard_warmup else dlr) * g``,
  ``denominator += |s|_1``;
- over all variables at once: ``d_numerator = beta_3 d_numerator + numerator``,
  ``d_hat = d_coef * d_numerator / denominator``; ``d = max(d, d_hat)`` while ``d`` is
  still ``d0``; ``d_max = max(d_max, d_hat)``, ``d = min(d_max, d * growth_rate)``;
- for each variable, with the new ``d``: ``p <- p (1 - weight_decay * dlr)`` when the decay
  is decoupled, then ``p <- p - dlr * m / (sqrt(v) + d * eps)`` (with ``beta_1 = 0``:
  ``p <- p - dlr * d * g / (sqrt(v) + d * eps)``).

As in the reference, a step at a learning rate of 0, or whose ``denominator`` is 0 (no
gradient yet), changes neither ``d``, ``d_max``, ``d_numerator``, the step count ``k`` nor
the weights (at a learning rate of 0 not the moments either).

``d``, ``d_max``, ``d_numerator`` and ``k`` are global: the sums run over every variable of
the step, so the step is one function over all of them (:meth:`Prodigy._backend_update_step`,
which Keras's ``apply`` calls once per step inside the compiled train step) rather than
Keras's per-variable ``update_step``. They run in float64 (the reference keeps them as Python
floats), the tensors and their sums in the variables' dtype, as the reference's are. They take
the shape of the learning rate: a scalar, or with a vector of learning rates (a
:class:`lrstudy.training.vector_stack.VectorStack` gives one per copy, shaped ``[copies, 1]``, and each of its
variables is ``[copies, size]``) one each, each copy's sums over its own row, so that each
copy estimates its ``d`` as it would alone.

What the reference offers that this does not: ``slice_p`` > 1 (the statistics on every p-th
entry, an approximation; here every entry, its default 1) and ``fsdp_in_use`` (sharded
parameters).
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
from keras import ops


def _real(name: str, value, low: float, high: float, *, open_low=False, open_high=False,
          infinite=False):
    """``value`` as a float in the interval, else a ValueError naming it; ``infinite``: +inf
    is allowed."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value)
            or (math.isinf(value) and not (infinite and value > 0))):
        what = "a number" if infinite else "a finite number"
        raise ValueError(f"Argument `{name}` must be {what}. Received: {name}={value!r}")
    if (value < low or (open_low and value == low) or value > high
            or (open_high and value == high)):
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise ValueError(f"Argument `{name}` must be in {interval}. Received: {name}={value!r}")
    return float(value)


def _f64(x):
    """``x`` as a float64 tensor; a Python number converted at full precision (Keras's
    ``ops.cast`` and ``ops.where`` take it through float32 first)."""
    if isinstance(x, numbers.Real):
        return ops.convert_to_tensor(float(x), dtype="float64")
    return ops.cast(x, "float64")


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"Argument `{name}` must be True or False. Received: {name}={value!r}")
    return value


@keras.saving.register_keras_serializable(package="lrstudy")
class Prodigy(keras.optimizers.Optimizer):
    """Prodigy (see the module's docstring): the reference's ``Prodigy`` with
    ``learning_rate`` its ``lr``, ``beta_1``, ``beta_2`` its ``betas``, ``beta_3`` its
    ``beta3`` (None: ``sqrt(beta_2)``), ``epsilon`` its ``eps``, and its ``weight_decay``,
    ``decouple``, ``use_bias_correction``, ``safeguard_warmup``, ``d0``, ``d_coef`` and
    ``growth_rate``, with the reference's defaults.

    The estimate is :attr:`d` (with :attr:`d_max`, :attr:`d_numerator` and the reference's
    step count :attr:`k`), float64 variables of the optimizer."""

    def __init__(self, learning_rate=1.0, beta_1=0.9, beta_2=0.999, beta_3=None, epsilon=1e-8,
                 weight_decay=0.0, decouple=True, use_bias_correction=False,
                 safeguard_warmup=False, d0=1e-6, d_coef=1.0, growth_rate=math.inf, name=None,
                 **kwargs):
        if isinstance(learning_rate, (numbers.Real, bool)):
            # the reference's `lr > 0`; a schedule may reach 0 (a step at 0 changes nothing)
            _real("learning_rate", learning_rate, 0.0, math.inf, open_low=True)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = _real("beta_1", beta_1, 0.0, 1.0, open_high=True)
        self.beta_2 = _real("beta_2", beta_2, 0.0, 1.0, open_high=True)
        self.beta_3 = (None if beta_3 is None
                       else _real("beta_3", beta_3, 0.0, 1.0, open_high=True))
        self.epsilon = _real("epsilon", epsilon, 0.0, math.inf, open_low=True)
        self.weight_decay = _real("weight_decay", weight_decay, 0.0, math.inf)
        self.decouple = _flag("decouple", decouple)
        self.use_bias_correction = _flag("use_bias_correction", use_bias_correction)
        self.safeguard_warmup = _flag("safeguard_warmup", safeguard_warmup)
        self.d0 = _real("d0", d0, 0.0, math.inf, open_low=True)
        self.d_coef = _real("d_coef", d_coef, 0.0, math.inf, open_low=True)
        self.growth_rate = _real("growth_rate", growth_rate, 0.0, math.inf, open_low=True,
                                 infinite=True)

    def _apply_weight_decay(self, variables):
        """Nothing: the decay is part of the step (:meth:`_backend_update_step`), coupled or
        decoupled as the reference applies it, where Keras's would shrink the variables by
        ``weight_decay * learning_rate`` before it."""

    def build(self, var_list):
        """The global ``d``, ``d_max``, ``d_numerator`` and ``k`` (float64, shaped as the
        learning rate), then each variable's slots: ``p0`` (the variable at the first step),
        ``s``, ``exp_avg`` (with ``beta_1`` > 0) and ``exp_avg_sq``."""
        if self.built:
            return
        super().build(var_list)
        shape = tuple(ops.shape(self._get_current_learning_rate()))

        def scalar(name, value):
            # filled in float64: Keras's Constant rounds through float32, and d0 must be
            # exact (d grows past d_hat only while it equals d0)
            return self.add_variable(shape, dtype="float64", name=name,
                                     initializer=lambda shape, dtype: np.full(shape, value,
                                                                              "float64"))

        self.d = scalar("d", self.d0)
        self.d_max = scalar("d_max", self.d0)
        self.d_numerator = scalar("d_numerator", 0.0)
        self.k = scalar("k", 0.0)
        self._p0, self._s = self.add_optimizer_variables(var_list, ["p0", "s"])
        self._exp_avg = (self.add_optimizer_variables(var_list, "exp_avg")
                         if self.beta_1 > 0 else [None] * len(var_list))
        self._exp_avg_sq = self.add_optimizer_variables(var_list, "exp_avg_sq")

    def _start(self, trainable_variables) -> None:
        """Each variable's ``p0`` from its value (before the first step)."""
        for var in trainable_variables:
            self.assign(self._p0[self._get_variable_index(var)], var)

    def _beta_3(self) -> float:
        return math.sqrt(self.beta_2) if self.beta_3 is None else self.beta_3

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """One step of every variable with a gradient (see the module's docstring): the
        moments and the sums with the old ``d``, then the new ``d``, then the weights."""
        lr = _f64(learning_rate)
        # a vector of learning rates [copies, 1]: each variable is [copies, size], and each
        # copy's sums run over its row
        per_copy = len(lr.shape) == 2

        def total(x):
            x = ops.sum(x, axis=1, keepdims=True) if per_copy else ops.sum(x)
            return _f64(x)

        beta_1, beta_2, beta_3 = self.beta_1, self.beta_2, self._beta_3()
        d, d0 = ops.convert_to_tensor(self.d), self.d0
        k1 = ops.convert_to_tensor(self.k) + 1.0
        if self.use_bias_correction:
            bias_correction = (ops.sqrt(1.0 - ops.power(_f64(beta_2), k1))
                               / (1.0 - ops.power(_f64(beta_1), k1)))
        else:
            bias_correction = 1.0
        dlr = d * lr * bias_correction
        active = lr > 0.0  # the reference's `group_lr > 0`: at 0 the step does nothing

        def live(value, idle):
            """``value`` at a positive learning rate, else ``idle`` (a moment kept as is)."""
            return ops.where(active, _f64(value), _f64(idle))

        # p0, the weights at the first step (the reference's state initialisation), set in
        # the step: Keras may build the optimizer while it traces the train step, where an
        # assignment in build() would run at every step
        ops.cond(ops.equal(self.iterations, 0),
                 lambda: self._start(trainable_variables), lambda: None)

        coupled = self.weight_decay != 0 and not self.decouple
        decoupled = self.weight_decay != 0 and self.decouple
        numerator = ops.zeros_like(lr)
        denominator = ops.zeros_like(lr)
        moments = []
        for grad, var in zip(grads, trainable_variables):
            dtype = var.dtype
            index = self._get_variable_index(var)
            p = ops.convert_to_tensor(var)
            grad = ops.cast(grad, dtype)
            if coupled and self._use_weight_decay(var):
                grad = ops.add(grad, ops.multiply(p, ops.cast(_f64(self.weight_decay), dtype)))
            numerator = numerator + live(
                (d / d0) * dlr * total(ops.multiply(grad, ops.subtract(self._p0[index], p))),
                0.0)
            exp_avg = None
            if beta_1 > 0:
                exp_avg = ops.add(
                    ops.multiply(self._exp_avg[index], ops.cast(live(beta_1, 1.0), dtype)),
                    ops.multiply(grad, ops.cast(live(d * (1.0 - beta_1), 0.0), dtype)))
                self.assign(self._exp_avg[index], exp_avg)
            exp_avg_sq = ops.add(
                ops.multiply(self._exp_avg_sq[index], ops.cast(live(beta_2, 1.0), dtype)),
                ops.multiply(ops.multiply(grad, grad),
                             ops.cast(live(d * d * (1.0 - beta_2), 0.0), dtype)))
            self.assign(self._exp_avg_sq[index], exp_avg_sq)
            s_rate = (d / d0) * (d if self.safeguard_warmup else dlr)
            s = ops.add(ops.multiply(self._s[index], ops.cast(live(beta_3, 1.0), dtype)),
                        ops.multiply(grad, ops.cast(live(s_rate, 0.0), dtype)))
            self.assign(self._s[index], s)
            denominator = denominator + live(total(ops.abs(s)), 0.0)
            moments.append((var, p, grad, exp_avg, exp_avg_sq))

        # the reference returns here, before d or any weight changes, when the sum is 0
        skip = ops.logical_or(ops.logical_not(active), ops.equal(denominator, 0.0))
        d_numerator = self.d_numerator * beta_3 + numerator
        d_hat = self.d_coef * d_numerator / ops.where(skip, 1.0, denominator)
        new_d = ops.where(ops.equal(d, _f64(d0)), ops.maximum(d, d_hat), d)
        d_max = ops.maximum(self.d_max, d_hat)
        new_d = ops.minimum(d_max, new_d * self.growth_rate)
        new_d = ops.where(skip, d, new_d)
        step = ops.where(skip, 0.0, dlr)  # a skipped step adds 0 to every weight

        for var, p, grad, exp_avg, exp_avg_sq in moments:
            dtype = var.dtype
            denom = ops.add(ops.sqrt(exp_avg_sq), ops.cast(new_d * self.epsilon, dtype))
            if decoupled and self._use_weight_decay(var):
                p = ops.add(p, ops.multiply(p, ops.cast(-self.weight_decay * step, dtype)))
            if exp_avg is not None:
                update = ops.multiply(ops.divide(exp_avg, denom), ops.cast(-step, dtype))
            else:
                update = ops.multiply(ops.divide(grad, denom), ops.cast(-step * new_d, dtype))
            self.assign(var, ops.add(p, update))

        self.assign(self.d, new_d)
        self.assign(self.d_max, ops.where(skip, self.d_max, d_max))
        self.assign(self.d_numerator, ops.where(skip, self.d_numerator, d_numerator))
        self.assign(self.k, ops.where(skip, self.k, k1))

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "beta_3": self.beta_3,
                       "epsilon": self.epsilon, "weight_decay": self.weight_decay,
                       "decouple": self.decouple,
                       "use_bias_correction": self.use_bias_correction,
                       "safeguard_warmup": self.safeguard_warmup, "d0": self.d0,
                       "d_coef": self.d_coef, "growth_rate": self.growth_rate})
        return config
