"""Learning-rate schedules as small pure functions of the step, composed; one Keras adapter.

Every schedule is made by a factory that checks its arguments up front, in plain Python (no
TensorFlow, no Keras), and returns a function ``fn(t)`` of ``t``, a step or an epoch counted
from 0. The functions use ``keras.ops``, imported when first *called*, so one function works on
a Python int, on a NumPy array of steps (``np.asarray(fn(np.arange(n)))`` for a plot) and on a
symbolic int64 step inside a compiled (XLA) train step, where it runs once, while tracing. ``t``
is cast to float32 once; the result is a float32 tensor.

Ramps and decays between two values are one primitive, :func:`_interpolate`, with a polynomial
(linear is power 1) or cosine shape; the exponential decays are :func:`exponential`. One
combinator, :func:`join`, glues schedules end to end; warm-up + cosine and one-cycle are built
on it; :func:`rescale` stretches one in time. Durations (``steps``, ``decay_steps``, ...) count
the schedule's unit; :mod:`lrstudy.spec.resolve` turns a study's fractions of training into them, or
keeps a tutorial's own constants and stretches its curve over another budget (``time_scale``
of :func:`make`). Every schedule is linear in its learning-rate arguments
(:data:`LR_ARGUMENTS`): multiplying them by ``c`` multiplies the curve by ``c``. Keras sees a
:class:`KerasSchedule` (a serializable ``LearningRateSchedule``, defined on first access).

>>> float(linear(0.0, 1.0, 4)(2))
0.5
>>> [round(float(v), 4) for v in step_decay(0.5, 0.8, 10)(np.array([0, 9, 10, 25]))]
[0.5, 0.5, 0.4, 0.32]
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Sequence

import numpy as np  # noqa: F401 (the docstring examples use it)

from lrstudy import checks
from lrstudy.tfquiet import LazyModule

__all__ = ["LR_ARGUMENTS", "SCHEDULES", "KerasSchedule", "constant", "cosine", "cosine_restarts",
           "exp_decay", "exp_range", "exponential", "inverse_time", "join", "linear", "make",
           "one_cycle", "one_cycle_momentum", "piecewise", "polynomial", "rescale", "step_decay",
           "time_based", "triangular", "triangular2", "warmup_cosine", "warmup_stable_decay"]

Schedule = Callable[[object], object]
_DTYPE = "float32"


# imported on first use: a schedule looks its operations up when called (in a compiled step
# once, while tracing); the factories and their checks never do
ops = LazyModule("keras.ops")
tf = LazyModule("tensorflow")  # keras.ops has no lgamma
keras = LazyModule("keras")


def _t(t):  # the step as a float32 tensor: the one cast of every schedule
    return ops.cast(t, _DTYPE)


# --------------------------------------------------------------------------------------------
# The combinator


def join(fns: Sequence[Schedule], boundaries: Sequence[float]) -> Schedule:
    """Glue schedules end to end (optax ``join_schedules``).

    ``fns[0]`` is active for ``t < boundaries[0]``; ``fns[i]`` from ``boundaries[i-1]``
    (inclusive) on, evaluated at ``t - boundaries[i-1]``: each piece counts from zero at its
    own boundary.

    >>> up_down = join([linear(0.0, 1.0, 2), linear(1.0, 0.0, 2)], [2])
    >>> [float(v) for v in up_down(np.arange(6))]
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    fns = list(fns)
    boundaries = [checks.at_least("boundaries", b, 0.0) for b in boundaries]
    if not fns or not all(callable(f) for f in fns):
        raise checks.fail("fns", "a non-empty list of schedules", fns)
    if len(fns) != len(boundaries) + 1:
        raise ValueError("Argument `fns` must have one more element than `boundaries`. "
                         f"Received: len(fns)={len(fns)}, len(boundaries)={len(boundaries)}")
    if any(b > a for a, b in zip(boundaries[1:], boundaries[:-1])):
        raise checks.fail("boundaries", "non-decreasing", boundaries)

    def schedule(t):
        t = _t(t)
        out = fns[0](t)
        for boundary, fn in zip(boundaries, fns[1:]):
            out = ops.where(t < boundary, out, fn(t - boundary))
        return out

    return schedule


def rescale(fn: Schedule, time_scale: float) -> Schedule:
    """``fn`` evaluated at ``t * time_scale``: the same curve, stretched in time
    (``time_scale < 1``) or compressed. ``t * time_scale`` is formed in float64 and rounded
    once to float32.

    >>> [float(v) for v in rescale(linear(0.0, 1.0, 4), 0.5)(np.array([0, 4, 8]))]
    [0.0, 0.5, 1.0]
    """
    time_scale = checks.positive("time_scale", time_scale)

    def schedule(t):
        return fn(ops.cast(ops.cast(_t(t), "float64") * time_scale, _DTYPE))

    return schedule


# --------------------------------------------------------------------------------------------
# One interpolation between two values, two shapes


def _interpolate(start: float, end: float, steps: float, shape) -> Schedule:
    """From ``start`` at ``t = 0`` to ``end`` at ``t >= steps``: ``start * (1 - w) + end * w``,
    where ``(1 - w, w) = shape(p)`` and ``p = min(t, steps) / steps``.

    A shape returns both weights, each in a form that keeps its digits where it is small: ``1 -
    w`` computed from ``w`` would lose the end of a decay (a power-2 polynomial's last steps
    would be 2e-6 off Keras's, relatively). The weights are exactly ``(1, 0)`` at ``p = 0`` and
    ``(0, 1)`` at ``p = 1`` in float32, so both ends are hit exactly."""

    def schedule(t):
        # p in float64, then rounded once: a graph or XLA turns t / steps into t * (1 / steps),
        # which in float32 is an ulp off for some t (and 1 - p is then fused into one rounding)
        p = ops.minimum(ops.cast(_t(t), "float64"), steps) / steps
        keep, weight = shape(ops.cast(p, _DTYPE))
        return start * keep + end * weight

    return schedule


def _polynomial_shape(power: float):
    """``1 - w = (1 - p) ** power`` (Keras ``PolynomialDecay``'s form) and
    ``w = 1 - (1 - p) ** power``, evaluated as ``-expm1(power * log1p(-p))`` so that it keeps
    its digits near ``p = 0``; for ``power = 1`` (linear) simply ``(1 - p, p)``."""
    if power == 1.0:
        return lambda p: (1.0 - p, p)
    return lambda p: (ops.power(1.0 - p, power), -ops.expm1(power * ops.log1p(-p)))


def _cosine_shape(p):
    """``1 - w = (1 + cos(pi p)) / 2`` (Keras ``CosineDecay``'s form) and
    ``w = (1 - cos(pi p)) / 2``; ``cos(float32(pi))`` rounds to -1, so ``p = 1`` gives exactly
    ``(0, 1)``."""
    c = ops.cos(math.pi * p)
    return 0.5 * (1.0 + c), 0.5 * (1.0 - c)


_ANNEALS = {"cos": _cosine_shape, "linear": _polynomial_shape(1.0)}


# --------------------------------------------------------------------------------------------
# Fixed, warm-up and decay


def constant(value: float) -> Schedule:
    """``lr(t) = value``."""
    value = checks.lr("value", value)

    def schedule(t):
        return ops.full_like(_t(t), value)

    return schedule


def linear(start: float, end: float, steps: float) -> Schedule:
    """``lr(t) = start + (end - start) * min(t, steps) / steps``: a ramp, then ``end``.

    The warm-up tutorial's ``0.005 + epoch * (0.01 - 0.005) / (5 - 1)`` is
    ``linear(0.005, 0.01, 4)`` per epoch. :func:`polynomial` of power 1, evaluated as
    ``start * (1 - p) + end * p``: exact at both ends, unlike ``start + (end - start) * p``.
    """
    start, end = checks.lr("start", start), checks.lr("end", end)
    steps = checks.positive("steps", steps)
    return polynomial(start, end, steps, power=1.0)


def polynomial(initial: float, end: float, steps: float, power: float = 1.0) -> Schedule:
    """Keras ``PolynomialDecay`` (``cycle=False``).

    ``lr(t) = (initial - end) * (1 - min(t, steps) / steps) ** power + end``.
    The decay tutorial's linear decay ``0.5 * (1 - epoch / 100)`` is
    ``polynomial(0.5, 0.0, 100)``.
    """
    initial, end = checks.lr("initial", initial), checks.lr("end", end)
    steps, power = checks.positive("steps", steps), checks.positive("power", power)
    return _interpolate(initial, end, steps, _polynomial_shape(power))


def cosine(initial: float, steps: float, alpha: float = 0.0) -> Schedule:
    """Keras ``CosineDecay`` without warm-up.

    ``lr(t) = initial * ((1 - alpha) * (1 + cos(pi * min(t, steps) / steps)) / 2 + alpha)``.
    """
    initial = checks.lr("initial", initial)
    steps = checks.positive("steps", steps)
    alpha = checks.in_closed("alpha", alpha, 0.0, 1.0)
    return _interpolate(initial, alpha * initial, steps, _cosine_shape)


def warmup_cosine(initial: float, peak: float, warmup: float, steps: float,
                  alpha: float = 0.0) -> Schedule:
    """Linear warm-up from ``initial`` to ``peak`` over ``warmup``, then cosine decay of
    ``peak`` over the remaining ``steps - warmup`` (down to ``alpha * peak``).

    ``join([linear(initial, peak, warmup), cosine(peak, steps - warmup, alpha)], [warmup])``,
    equal to Keras ``CosineDecay(initial, steps - warmup, alpha, warmup_target=peak,
    warmup_steps=warmup)``. ``steps`` is the total, warm-up included.
    """
    warmup = checks.at_least("warmup", warmup, 0.0)
    steps = checks.real("steps", steps)
    if steps <= warmup:
        raise ValueError(f"Argument `steps` must be > `warmup`. "
                         f"Received: steps={steps!r}, warmup={warmup!r}")
    decay = cosine(peak, steps - warmup, alpha)
    if warmup == 0:
        checks.lr("initial", initial)
        return decay
    return join([linear(initial, peak, warmup), decay], [warmup])


def warmup_stable_decay(initial: float, peak: float, warmup: float, steps: float,
                        decay: float | None = None, end: float = 0.0) -> Schedule:
    """Linear warm-up from ``initial`` to ``peak`` over ``warmup``, ``peak`` held, then linear
    decay to ``end`` over the last ``decay`` steps (WSD); without ``decay``, no stable phase:
    warm-up, then linear decay to ``end`` ("linear to zero").

    >>> [float(v) for v in warmup_stable_decay(0.0, 1.0, 2, 8, 4)(np.arange(9))]
    [0.0, 0.5, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    initial, warmup = checks.lr("initial", initial), checks.at_least("warmup", warmup, 0.0)
    steps = checks.checked("steps", steps, lambda v: v > warmup, "> `warmup`")
    decay = checks.checked("decay", steps - warmup if decay is None else decay,
                     lambda v: 0 < v <= steps - warmup, "in (0, `steps` - `warmup`]")
    return join([linear(initial, peak, warmup) if warmup else constant(peak), constant(peak),
                 linear(peak, end, decay)], [warmup, steps - decay])


def cosine_restarts(initial: float, first_decay_steps: float, t_mul: float = 2.0,
                    m_mul: float = 1.0, alpha: float = 0.0) -> Schedule:
    """Keras ``CosineDecayRestarts`` (SGDR, Loshchilov & Hutter).

    Period ``i`` lasts ``first_decay_steps * t_mul ** i`` and starts at ``initial * m_mul ** i``;
    within a period at fraction ``f``: ``lr = initial * ((1 - alpha) * m_mul ** i *
    (1 + cos(pi * f)) / 2 + alpha)``. ``t_mul`` must be >= 1 (shrinking periods end after a
    finite number of steps, after which Keras returns NaN).
    """
    initial = checks.lr("initial", initial)
    first = checks.positive("first_decay_steps", first_decay_steps)
    t_mul = checks.at_least("t_mul", t_mul, 1.0)
    m_mul = checks.at_least("m_mul", m_mul, 0.0)
    alpha = checks.in_closed("alpha", alpha, 0.0, 1.0)

    def schedule(t):
        frac = _t(t) / first
        if t_mul == 1.0:
            i = ops.floor(frac)
            frac = frac - i
        else:
            i = ops.floor(ops.log(1.0 - frac * (1.0 - t_mul)) / math.log(t_mul))
            done = (1.0 - ops.power(t_mul, i)) / (1.0 - t_mul)
            frac = (frac - done) / ops.power(t_mul, i)
        decayed = ops.power(m_mul, i) * _cosine_shape(frac)[0]
        return initial * ((1.0 - alpha) * decayed + alpha)

    return schedule


def _exponent(decay_steps: float, staircase: bool):
    """The exponent of Keras's decays, ``t / decay_steps``, floored when ``staircase``."""
    decay_steps = checks.positive("decay_steps", decay_steps)
    staircase = checks.flag("staircase", staircase)

    def exponent(t):
        p = _t(t) / decay_steps
        return ops.floor(p) if staircase else p

    return exponent


def exponential(initial: float, decay_rate: float, decay_steps: float,
                staircase: bool = False) -> Schedule:
    """Keras ``ExponentialDecay``: ``lr(t) = initial * decay_rate ** (t / decay_steps)``, the
    exponent floored when ``staircase``."""
    initial = checks.lr("initial", initial)
    decay_rate = checks.positive("decay_rate", decay_rate)
    exponent = _exponent(decay_steps, staircase)

    def schedule(t):
        return initial * ops.power(decay_rate, exponent(t))

    return schedule


def exp_decay(initial: float, k: float) -> Schedule:
    """``lr(t) = initial * exp(-k * t)`` (the decay tutorial: ``0.5 * exp(-0.1 * epoch)``):
    :func:`exponential` halving every ``ln 2 / k`` steps (the decay rate 0.5 is exact in float32,
    where ``exp(-k)`` raised to the power ``t`` would carry its rounding ``t`` times)."""
    initial = checks.lr("initial", initial)
    k = checks.at_least("k", k, 0.0)
    half_life = math.log(2.0) / k if k > 0 else math.inf
    return exponential(initial, 0.5, half_life) if half_life < math.inf else constant(initial)


def step_decay(initial: float, drop: float, every: float) -> Schedule:
    """``lr(t) = initial * drop ** floor(t / every)`` (the decay tutorial:
    ``0.5 * 0.8 ** floor(epoch / 10)``): :func:`exponential` with ``staircase``."""
    initial = checks.lr("initial", initial)
    drop, every = checks.positive("drop", drop), checks.positive("every", every)
    return exponential(initial, drop, every, staircase=True)


def inverse_time(initial: float, decay_rate: float, decay_steps: float = 1,
                 staircase: bool = False) -> Schedule:
    """Keras ``InverseTimeDecay``: ``lr(t) = initial / (1 + decay_rate * t / decay_steps)``,
    ``t / decay_steps`` floored when ``staircase``.

    Per step, ``inverse_time(0.1, 0.01)`` is the decay tutorial's trap (Keras 2's ``decay=``
    argument): after one epoch of 250 steps the LR is already ``0.1 / 3.5 = 0.0286``.
    """
    initial = checks.lr("initial", initial)
    decay_rate = checks.at_least("decay_rate", decay_rate, 0.0)
    exponent = _exponent(decay_steps, staircase)

    def schedule(t):
        return initial / (1.0 + decay_rate * exponent(t))

    return schedule


def time_based(initial: float, decay: float) -> Schedule:
    """The decay tutorial's recursive rule ``lr_new = lr / (1 + decay * epoch)``, applied at
    each epoch to the current LR, starting from ``initial`` at epoch 0.

    Closed form: ``lr(t) = initial / prod_{k=1..t} (1 + decay * k)``, with
    ``prod_{k=1..t} (1 + d k) = d ** t * Gamma(t + 1 + 1/d) / Gamma(1 + 1/d)`` evaluated
    through ``lgamma`` in float64 (the two log-gammas nearly cancel), then cast to float32.

    >>> round(float(time_based(0.5, 0.005)(2)) / (0.5 / 1.005 / 1.01), 6)
    1.0
    """
    initial = checks.lr("initial", initial)
    decay = checks.at_least("decay", decay, 0.0)
    if decay == 0:
        return constant(initial)
    inv = 1.0 / decay
    log_decay, lgamma_start = math.log(decay), math.lgamma(1.0 + inv)

    def schedule(t):
        t = ops.cast(_t(t), "float64")
        log_prod = t * log_decay + tf.math.lgamma(t + (1.0 + inv)) - lgamma_start
        return ops.cast(initial * ops.exp(-log_prod), _DTYPE)

    return schedule


def piecewise(boundaries: Sequence[float], values: Sequence[float]) -> Schedule:
    """Keras ``PiecewiseConstantDecay``: ``values[0]`` for ``t <= boundaries[0]``,
    ``values[i]`` for ``boundaries[i-1] < t <= boundaries[i]``, ``values[-1]`` after the last
    boundary (boundaries belong to the piece before them).

    >>> fn = piecewise([1000, 2000, 3000], [0.3e-3, 1e-3, 0.5e-3, 0.1e-3])
    >>> [round(float(v), 6) for v in fn(np.array([1000, 1001, 3001]))]
    [0.0003, 0.001, 0.0001]
    """
    for name, given in (("boundaries", boundaries), ("values", values)):
        if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
            raise checks.fail(name, "a list of numbers", given)
    bounds = [checks.at_least("boundaries", b, 0.0) for b in boundaries]
    vals = [checks.lr("values", v) for v in values]
    if not bounds:
        raise checks.fail("boundaries", "a non-empty list", list(boundaries))
    if len(vals) != len(bounds) + 1:
        raise ValueError("Argument `values` must have one more element than `boundaries`. "
                         f"Received: values={list(values)!r}, boundaries={list(boundaries)!r}")
    if any(b <= a for a, b in zip(bounds, bounds[1:])):
        raise checks.fail("boundaries", "strictly increasing", list(boundaries))

    def schedule(t):
        t = _t(t)
        out = ops.full_like(t, vals[-1])
        for boundary, value in zip(reversed(bounds), reversed(vals[:-1])):
            out = ops.where(t <= boundary, value, out)
        return out

    return schedule


# --------------------------------------------------------------------------------------------
# Cyclical (Smith 2017) and one-cycle (Smith & Topin 2018)


def _cyclical(base: float, max_lr: float, step_size: float, scale) -> Schedule:
    """Smith's triangle: ``cycle = floor(1 + t / (2 step_size))``,
    ``x = |t / step_size - 2 cycle + 1|``,
    ``lr = base + (max_lr - base) * max(0, 1 - x) * scale(cycle, t)``.

    ``step_size`` (the half-cycle) need not be whole: the phase ``t / step_size`` is computed in
    float64, so that a step at the end of a whole cycle gives ``base`` exactly (resolve's
    ``cycles`` ends the last cycle on the last step)."""
    base, max_lr = checks.lr("base", base), checks.lr("max_lr", max_lr)
    step_size = checks.positive("step_size", step_size)
    if max_lr < base:
        raise ValueError(f"Argument `max_lr` must be >= `base`. "
                         f"Received: max_lr={max_lr!r}, base={base!r}")

    def schedule(t):
        t = _t(t)
        phase = ops.cast(t, "float64") / step_size
        cycle = ops.floor(1.0 + phase / 2.0)
        up = ops.cast(ops.maximum(0.0, 1.0 - ops.abs(phase - 2.0 * cycle + 1.0)), _DTYPE)
        return base + (max_lr - base) * up * scale(ops.cast(cycle, _DTYPE), t)

    return schedule


def triangular(base: float, max_lr: float, step_size: float) -> Schedule:
    """Smith (2017) triangular policy: from ``base`` up to ``max_lr`` in ``step_size`` steps
    and back down, period ``2 * step_size``.

    >>> [round(float(v), 4) for v in triangular(0.001, 0.01, 4)(np.array([0, 2, 4, 6, 8]))]
    [0.001, 0.0055, 0.01, 0.0055, 0.001]
    """
    return _cyclical(base, max_lr, step_size, lambda cycle, t: 1.0)


def triangular2(base: float, max_lr: float, step_size: float) -> Schedule:
    """Smith (2017) ``triangular2``: the triangle with its amplitude halved each cycle,
    ``scale = 1 / 2 ** (cycle - 1)``."""
    return _cyclical(base, max_lr, step_size, lambda cycle, t: ops.power(0.5, cycle - 1.0))


def exp_range(base: float, max_lr: float, step_size: float, gamma: float) -> Schedule:
    """Smith (2017) ``exp_range``: the triangle with its amplitude scaled by ``gamma ** t``,
    ``gamma`` in (0, 1]."""
    gamma = checks.checked("gamma", gamma, lambda v: 0 < v <= 1, "in (0, 1]")
    return _cyclical(base, max_lr, step_size, lambda cycle, t: ops.power(gamma, t))


def _one_cycle(first: float, peak: float, last: float, steps, pct_start, anneal) -> Schedule:
    """``first`` to ``peak`` at step ``pct_start * steps - 1``, then to ``last`` at step
    ``steps - 1`` (PyTorch's ``OneCycleLR`` phases), both annealed with the shape ``anneal``."""
    steps = checks.positive("steps", steps)
    pct_start = checks.checked("pct_start", pct_start, lambda v: 0 < v < 1, "in (0, 1)")
    if anneal not in _ANNEALS:
        raise checks.fail("anneal", f"one of {tuple(_ANNEALS)}", anneal)
    up = pct_start * steps - 1.0
    if up <= 0:
        raise ValueError(
            "Argument `pct_start` * `steps` must be > 1 (the rising phase needs more than one "
            f"step). Received: pct_start={pct_start!r}, steps={steps!r}")
    shape = _ANNEALS[anneal]
    rise = _interpolate(first, peak, up, shape)
    return join([rise, _interpolate(peak, last, steps - 1.0 - up, shape)], [up])


def one_cycle(max_lr: float, steps: float, pct_start: float = 0.3, div_factor: float = 25.0,
              final_div_factor: float = 1e4, anneal: str = "cos") -> Schedule:
    """One-cycle policy (Smith & Topin; fastai; PyTorch ``OneCycleLR``).

    From ``initial = max_lr / div_factor`` up to ``max_lr``, reached at step
    ``pct_start * steps - 1``, then down to ``initial / final_div_factor``, reached at the last
    step ``steps - 1``; ``anneal`` is ``"cos"`` or ``"linear"``.

    >>> fn = one_cycle(0.1, 100)
    >>> [round(float(v), 7) for v in fn(np.array([0, 29, 99]))]
    [0.004, 0.1, 4e-07]
    """
    max_lr = checks.lr("max_lr", max_lr)
    div_factor = checks.positive("div_factor", div_factor)
    final_div_factor = checks.positive("final_div_factor", final_div_factor)
    initial = max_lr / div_factor
    return _one_cycle(initial, max_lr, initial / final_div_factor, steps, pct_start, anneal)


def one_cycle_momentum(steps: float, pct_start: float = 0.3, high: float = 0.95,
                       low: float = 0.85, anneal: str = "cos") -> Schedule:
    """The momentum (or Adam's ``beta_1``) of the one-cycle policy, cycled inversely to the
    LR of ``one_cycle(max_lr, steps, pct_start, anneal=anneal)``: ``high -> low`` while the LR
    rises, ``low -> high`` while it falls."""
    high = checks.in_closed("high", high, 0.0, 1.0)
    low = checks.in_closed("low", low, 0.0, 1.0)
    if low > high:
        raise ValueError(f"Argument `low` must be <= `high`. Received: low={low!r}, high={high!r}")
    return _one_cycle(high, low, high, steps, pct_start, anneal)


# --------------------------------------------------------------------------------------------
# Registry


SCHEDULES: dict[str, Callable[..., Schedule]] = {f.__name__: f for f in (
    constant, linear, polynomial, cosine, warmup_cosine, warmup_stable_decay, cosine_restarts,
    exponential, exp_decay, inverse_time, time_based, step_decay, piecewise, triangular,
    triangular2, exp_range, one_cycle, one_cycle_momentum)}

LR_ARGUMENTS = ("value", "start", "end", "initial", "peak", "base", "max_lr", "values")
"""The arguments that are learning rates, by the same name in every factory (``values`` a list
of them); ``one_cycle_momentum`` has none (it is a momentum). Durations, fractions and rates
(``decay_rate``, ``gamma``, ``k``, ``alpha``, ``div_factor`` ...) are not: every schedule is
linear in these, so scaling them all by ``c`` scales the curve by ``c`` (a test checks each)."""


def _factory(name) -> Callable[..., Schedule]:
    if name not in SCHEDULES:
        raise ValueError(f"Unknown schedule: {name!r}. "
                         f"Known schedules: {', '.join(sorted(SCHEDULES))}")
    return SCHEDULES[name]


def _check_arguments(name: str, factory: Callable, kwargs: dict) -> None:
    """Unknown or missing arguments as a ValueError (not the TypeError of a bad call)."""
    params = inspect.signature(factory).parameters
    for key, value in kwargs.items():
        if key not in params:
            raise checks.unknown_argument(f"Schedule {name!r}", key, value, params)
    missing = [p for p, v in params.items() if v.default is v.empty and p not in kwargs]
    if missing:
        raise ValueError(f"Schedule {name!r} is missing the argument(s): "
                         f"{', '.join(f'`{m}`' for m in missing)}")


def make(name: str, time_scale: float = 1.0, **kwargs) -> Schedule:
    """The schedule ``SCHEDULES[name](**kwargs)``, with unknown names and unknown or missing
    arguments reported as ``ValueError``; with ``time_scale``, evaluated at ``t * time_scale``
    (:func:`rescale`: a tutorial's schedule, its constants unchanged, over another budget).

    >>> float(make("exp_decay", initial=0.5, k=0.0)(7))
    0.5
    >>> round(float(make("step_decay", initial=0.5, drop=0.8, every=10, time_scale=12.5)(4)), 4)
    0.1638
    """
    factory = _factory(name)
    _check_arguments(name, factory, kwargs)
    fn = factory(**kwargs)
    return fn if checks.positive("time_scale", time_scale) == 1.0 else rescale(fn, time_scale)


# --------------------------------------------------------------------------------------------
# Keras


def _define_keras_schedule() -> type:
    """Define and register :class:`KerasSchedule` (it subclasses a Keras class)."""

    @keras.saving.register_keras_serializable(package="lrstudy")
    class KerasSchedule(keras.optimizers.schedules.LearningRateSchedule):
        """A registry schedule as a serializable Keras ``LearningRateSchedule``:
        ``KerasSchedule("cosine", initial=0.1, steps=1000)`` evaluates ``make(name, **kwargs)``
        on the optimizer's iteration (the step being taken, counted from 0). ``kwargs`` are
        plain numbers, lists and strings; ``get_config()`` is ``{"name": name, **kwargs}``."""

        def __init__(self, name: str, **kwargs):
            super().__init__()
            self._fn = make(name, **kwargs)
            self.name = name
            self.kwargs = dict(kwargs)

        def __call__(self, step):
            return self._fn(step)

        def get_config(self) -> dict:  # the inherited from_config is cls(**config)
            return {"name": self.name, **self.kwargs}

        def __repr__(self) -> str:
            args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
            return f"KerasSchedule({self.name!r}, {args})"

    KerasSchedule.__qualname__ = "KerasSchedule"  # as if defined at module level
    globals()["KerasSchedule"] = KerasSchedule  # later look-ups skip __getattr__
    return KerasSchedule


def __getattr__(name: str):
    """``KerasSchedule``, defined on first access (PEP 562): only then is Keras imported. A
    saved model holding one loads once it is defined: access it (or import Keras first)."""
    if name == "KerasSchedule":
        return _define_keras_schedule()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if "keras" in sys.modules:  # Keras is loaded anyway: define it now, as a saved model expects
    _define_keras_schedule()
