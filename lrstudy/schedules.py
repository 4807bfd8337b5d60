"""Learning-rate schedules as small pure functions of the step, composed; one Keras adapter.

Every schedule is made by a factory that checks its arguments up front and returns a function
``fn(t)`` of ``t``, a step or an epoch counted from 0. The bodies use ``keras.ops``, so one
function works on a Python int, on a NumPy array of steps (``np.asarray(fn(np.arange(n)))``
for a plot) and on a symbolic int64 step inside a compiled (XLA) train step. ``t`` is cast to
float32 once; the result is a float32 tensor.

One combinator, :func:`join`, glues schedules end to end; warm-up + cosine and one-cycle are
written on top of it. Durations (``steps``, ``decay_steps``, ``step_size``, ...) are counts of
the schedule's unit. Arguments of a study spec named ``<x>_frac`` are fractions of training,
turned into counts once by :func:`resolve`.

The study uses :func:`build` (a spec dict to a :class:`Built`); Keras sees a
:class:`KerasSchedule`, a serializable ``LearningRateSchedule`` holding the factory name and
its plain arguments.

>>> float(linear(0.0, 1.0, 4)(2))
0.5
>>> [round(float(v), 4) for v in step_decay(0.5, 0.8, 10)(np.array([0, 9, 10, 25]))]
[0.5, 0.5, 0.4, 0.32]
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

__all__ = [
    "SCHEDULES",
    "Built",
    "KerasSchedule",
    "build",
    "constant",
    "cosine",
    "cosine_restarts",
    "exp_decay",
    "exp_range",
    "exponential",
    "inverse_time",
    "join",
    "linear",
    "make",
    "one_cycle",
    "one_cycle_momentum",
    "piecewise",
    "plateau_callback",
    "polynomial",
    "resolve",
    "step_decay",
    "time_based",
    "triangular",
    "triangular2",
    "warmup_cosine",
]

Schedule = Callable[[object], object]

_DTYPE = "float32"
_ANNEALS = ("cos", "linear")


# --------------------------------------------------------------------------------------------
# Argument checks: Keras style, "Argument `x` must be ... Received: x=..."


def _fail(name: str, requirement: str, value) -> ValueError:
    return ValueError(f"Argument `{name}` must be {requirement}. Received: {name}={value!r}")


def _real(name: str, value) -> float:
    """`value` as a finite float; bools, strings, NaN and infinities are rejected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(name, "a finite number", value)
    if not math.isfinite(value):
        raise _fail(name, "a finite number", value)
    return float(value)


def _at_least(name: str, value, low: float) -> float:
    value = _real(name, value)
    if value < low:
        raise _fail(name, f">= {low:g}", value)
    return value


def _positive(name: str, value) -> float:
    value = _real(name, value)
    if value <= 0:
        raise _fail(name, "> 0", value)
    return value


def _lr(name: str, value) -> float:
    """A learning rate (or momentum): finite and >= 0."""
    return _at_least(name, value, 0.0)


def _in_closed(name: str, value, low: float, high: float) -> float:
    value = _real(name, value)
    if not low <= value <= high:
        raise _fail(name, f"in [{low:g}, {high:g}]", value)
    return value


def _in_open(name: str, value, low: float, high: float) -> float:
    value = _real(name, value)
    if not low < value < high:
        raise _fail(name, f"in ({low:g}, {high:g})", value)
    return value


def _positive_int(name: str, value) -> int:
    value = _positive(name, value)
    if value != int(value):
        raise _fail(name, "a positive integer", value)
    return int(value)


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, "a bool", value)
    return value


def _t(t):
    """The step as a float32 tensor (the one cast of every schedule)."""
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
    boundaries = [_at_least("boundaries", b, 0.0) for b in boundaries]
    if not fns or not all(callable(f) for f in fns):
        raise _fail("fns", "a non-empty list of schedules", fns)
    if len(fns) != len(boundaries) + 1:
        raise ValueError(
            "Argument `fns` must have one more element than `boundaries`. "
            f"Received: len(fns)={len(fns)}, len(boundaries)={len(boundaries)}"
        )
    if any(b > a for a, b in zip(boundaries[1:], boundaries[:-1])):
        raise _fail("boundaries", "non-decreasing", boundaries)

    def schedule(t):
        t = _t(t)
        out = fns[0](t)
        for boundary, fn in zip(boundaries, fns[1:]):
            out = ops.where(t < boundary, out, fn(t - boundary))
        return out

    return schedule


# --------------------------------------------------------------------------------------------
# Fixed, warm-up and decay


def constant(value: float) -> Schedule:
    """``lr(t) = value``."""
    value = _lr("value", value)

    def schedule(t):
        return ops.full_like(_t(t), value)

    return schedule


def linear(start: float, end: float, steps: float) -> Schedule:
    """``lr(t) = start + (end - start) * min(t, steps) / steps``: a ramp, then ``end``.

    The warm-up tutorial's ``0.005 + epoch * (0.01 - 0.005) / (5 - 1)`` is
    ``linear(0.005, 0.01, 4)`` per epoch.
    """
    start, end = _lr("start", start), _lr("end", end)
    steps = _positive("steps", steps)

    def schedule(t):
        p = ops.minimum(_t(t), steps) / steps
        return start * (1.0 - p) + end * p  # exact at both ends, unlike start + (end - start) p

    return schedule


def polynomial(initial: float, end: float, steps: float, power: float = 1.0) -> Schedule:
    """Keras ``PolynomialDecay`` (``cycle=False``).

    ``lr(t) = (initial - end) * (1 - min(t, steps) / steps) ** power + end``.
    The decay tutorial's linear decay ``0.5 * (1 - epoch / 100)`` is
    ``polynomial(0.5, 0.0, 100)``.
    """
    initial, end = _lr("initial", initial), _lr("end", end)
    steps, power = _positive("steps", steps), _positive("power", power)

    def schedule(t):
        p = ops.minimum(_t(t), steps) / steps
        return (initial - end) * ops.power(1.0 - p, power) + end

    return schedule


def cosine(initial: float, steps: float, alpha: float = 0.0) -> Schedule:
    """Keras ``CosineDecay`` without warm-up.

    ``lr(t) = initial * ((1 - alpha) * (1 + cos(pi * min(t, steps) / steps)) / 2 + alpha)``.
    """
    initial = _lr("initial", initial)
    steps = _positive("steps", steps)
    alpha = _in_closed("alpha", alpha, 0.0, 1.0)

    def schedule(t):
        p = ops.minimum(_t(t), steps) / steps
        decayed = 0.5 * (1.0 + ops.cos(math.pi * p))
        return initial * ((1.0 - alpha) * decayed + alpha)

    return schedule


def warmup_cosine(
    initial: float, peak: float, warmup: float, steps: float, alpha: float = 0.0
) -> Schedule:
    """Linear warm-up from ``initial`` to ``peak`` over ``warmup``, then cosine decay of
    ``peak`` over the remaining ``steps - warmup`` (down to ``alpha * peak``).

    ``join([linear(initial, peak, warmup), cosine(peak, steps - warmup, alpha)], [warmup])``,
    equal to Keras ``CosineDecay(initial, steps - warmup, alpha, warmup_target=peak,
    warmup_steps=warmup)``. ``steps`` is the total, warm-up included.
    """
    warmup = _at_least("warmup", warmup, 0.0)
    steps = _real("steps", steps)
    if steps <= warmup:
        raise ValueError(
            f"Argument `steps` must be > `warmup`. Received: steps={steps!r}, warmup={warmup!r}"
        )
    decay = cosine(peak, steps - warmup, alpha)
    if warmup == 0:
        _lr("initial", initial)
        return decay
    return join([linear(initial, peak, warmup), decay], [warmup])


def cosine_restarts(
    initial: float,
    first_decay_steps: float,
    t_mul: float = 2.0,
    m_mul: float = 1.0,
    alpha: float = 0.0,
) -> Schedule:
    """Keras ``CosineDecayRestarts`` (SGDR, Loshchilov & Hutter).

    Period ``i`` lasts ``first_decay_steps * t_mul ** i`` and starts at ``initial * m_mul ** i``;
    within a period at fraction ``f``: ``lr = initial * ((1 - alpha) * m_mul ** i *
    (1 + cos(pi * f)) / 2 + alpha)``. ``t_mul`` must be >= 1 (shrinking periods end after a
    finite number of steps, after which Keras returns NaN).
    """
    initial = _lr("initial", initial)
    first = _positive("first_decay_steps", first_decay_steps)
    t_mul = _at_least("t_mul", t_mul, 1.0)
    m_mul = _at_least("m_mul", m_mul, 0.0)
    alpha = _in_closed("alpha", alpha, 0.0, 1.0)

    def schedule(t):
        frac = _t(t) / first
        if t_mul == 1.0:
            i = ops.floor(frac)
            frac = frac - i
        else:
            i = ops.floor(ops.log(1.0 - frac * (1.0 - t_mul)) / math.log(t_mul))
            done = (1.0 - ops.power(t_mul, i)) / (1.0 - t_mul)
            frac = (frac - done) / ops.power(t_mul, i)
        decayed = 0.5 * ops.power(m_mul, i) * (1.0 + ops.cos(math.pi * frac))
        return initial * ((1.0 - alpha) * decayed + alpha)

    return schedule


def exponential(
    initial: float, decay_rate: float, decay_steps: float, staircase: bool = False
) -> Schedule:
    """Keras ``ExponentialDecay``: ``lr(t) = initial * decay_rate ** (t / decay_steps)``,
    the exponent floored when ``staircase``."""
    initial = _lr("initial", initial)
    decay_rate = _positive("decay_rate", decay_rate)
    decay_steps = _positive("decay_steps", decay_steps)
    staircase = _flag("staircase", staircase)

    def schedule(t):
        p = _t(t) / decay_steps
        if staircase:
            p = ops.floor(p)
        return initial * ops.power(decay_rate, p)

    return schedule


def exp_decay(initial: float, k: float) -> Schedule:
    """``lr(t) = initial * exp(-k * t)`` (the decay tutorial: ``0.5 * exp(-0.1 * epoch)``)."""
    initial = _lr("initial", initial)
    k = _at_least("k", k, 0.0)

    def schedule(t):
        return initial * ops.exp(-k * _t(t))

    return schedule


def inverse_time(
    initial: float, decay_rate: float, decay_steps: float = 1, staircase: bool = False
) -> Schedule:
    """Keras ``InverseTimeDecay``: ``lr(t) = initial / (1 + decay_rate * t / decay_steps)``,
    ``t / decay_steps`` floored when ``staircase``.

    Per step, ``inverse_time(0.1, 0.01)`` is the decay tutorial's trap (Keras 2's ``decay=``
    argument): after one epoch of 250 steps the LR is already ``0.1 / 3.5 = 0.0286``.
    """
    initial = _lr("initial", initial)
    decay_rate = _at_least("decay_rate", decay_rate, 0.0)
    decay_steps = _positive("decay_steps", decay_steps)
    staircase = _flag("staircase", staircase)

    def schedule(t):
        p = _t(t) / decay_steps
        if staircase:
            p = ops.floor(p)
        return initial / (1.0 + decay_rate * p)

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
    initial = _lr("initial", initial)
    decay = _at_least("decay", decay, 0.0)
    if decay == 0:
        return constant(initial)
    inv = 1.0 / decay
    log_decay, lgamma_start = math.log(decay), math.lgamma(1.0 + inv)

    def schedule(t):
        t = ops.cast(_t(t), "float64")
        log_prod = t * log_decay + tf.math.lgamma(t + (1.0 + inv)) - lgamma_start
        return ops.cast(initial * ops.exp(-log_prod), _DTYPE)

    return schedule


def step_decay(initial: float, drop: float, every: float) -> Schedule:
    """``lr(t) = initial * drop ** floor(t / every)`` (the decay tutorial:
    ``0.5 * 0.8 ** floor(epoch / 10)``)."""
    initial = _lr("initial", initial)
    drop = _positive("drop", drop)
    every = _positive("every", every)

    def schedule(t):
        return initial * ops.power(drop, ops.floor(_t(t) / every))

    return schedule


def piecewise(boundaries: Sequence[float], values: Sequence[float]) -> Schedule:
    """Keras ``PiecewiseConstantDecay``: ``values[0]`` for ``t <= boundaries[0]``,
    ``values[i]`` for ``boundaries[i-1] < t <= boundaries[i]``, ``values[-1]`` after the last
    boundary (boundaries belong to the piece before them).

    >>> fn = piecewise([1000, 2000, 3000], [0.3e-3, 1e-3, 0.5e-3, 0.1e-3])
    >>> [round(float(v), 6) for v in fn(np.array([1000, 1001, 3001]))]
    [0.0003, 0.001, 0.0001]
    """
    if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence):
        raise _fail("boundaries", "a list of numbers", boundaries)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise _fail("values", "a list of numbers", values)
    bounds = [_at_least("boundaries", b, 0.0) for b in boundaries]
    vals = [_lr("values", v) for v in values]
    if not bounds:
        raise _fail("boundaries", "a non-empty list", list(boundaries))
    if len(vals) != len(bounds) + 1:
        raise ValueError(
            "Argument `values` must have one more element than `boundaries`. "
            f"Received: values={list(values)!r}, boundaries={list(boundaries)!r}"
        )
    if any(b <= a for a, b in zip(bounds, bounds[1:])):
        raise _fail("boundaries", "strictly increasing", list(boundaries))

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
    ``lr = base + (max_lr - base) * max(0, 1 - x) * scale(cycle, t)``."""
    base, max_lr = _lr("base", base), _lr("max_lr", max_lr)
    step_size = _positive("step_size", step_size)
    if max_lr < base:
        raise ValueError(
            f"Argument `max_lr` must be >= `base`. Received: max_lr={max_lr!r}, base={base!r}"
        )

    def schedule(t):
        t = _t(t)
        cycle = ops.floor(1.0 + t / (2.0 * step_size))
        x = ops.abs(t / step_size - 2.0 * cycle + 1.0)
        return base + (max_lr - base) * ops.maximum(0.0, 1.0 - x) * scale(cycle, t)

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
    gamma = _real("gamma", gamma)
    if not 0 < gamma <= 1:
        raise _fail("gamma", "in (0, 1]", gamma)
    return _cyclical(base, max_lr, step_size, lambda cycle, t: ops.power(gamma, t))


def _cos_anneal(start: float, end: float, steps: float) -> Schedule:
    """``end + (start - end) * (1 + cos(pi * p)) / 2``, ``p = min(t, steps) / steps``,
    written ``end + (start - end) * cos(pi * p / 2) ** 2`` so that ``end`` is hit exactly
    (in float32 ``1 + cos(pi)`` is not 0)."""

    def schedule(t):
        p = ops.minimum(_t(t), steps) / steps
        return end + (start - end) * ops.square(ops.cos((0.5 * math.pi) * p))

    return schedule


def _anneal(kind: str, start: float, end: float, steps: float) -> Schedule:
    return _cos_anneal(start, end, steps) if kind == "cos" else linear(start, end, steps)


def _one_cycle_phases(steps, pct_start, anneal) -> tuple[float, float, str]:
    """The two phase lengths of PyTorch's ``OneCycleLR``: the peak is at step
    ``pct_start * steps - 1`` and the end value at the last step, ``steps - 1``."""
    steps = _positive("steps", steps)
    pct_start = _in_open("pct_start", pct_start, 0.0, 1.0)
    if anneal not in _ANNEALS:
        raise _fail("anneal", f"one of {_ANNEALS}", anneal)
    up = pct_start * steps - 1.0
    if up <= 0:
        raise ValueError(
            "Argument `pct_start` * `steps` must be > 1 (the rising phase needs more than one "
            f"step). Received: pct_start={pct_start!r}, steps={steps!r}"
        )
    return up, steps - 1.0 - up, anneal


def one_cycle(
    max_lr: float,
    steps: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    anneal: str = "cos",
) -> Schedule:
    """One-cycle policy (Smith & Topin; fastai; PyTorch ``OneCycleLR``).

    From ``initial = max_lr / div_factor`` up to ``max_lr``, reached at step
    ``pct_start * steps - 1``, then down to ``initial / final_div_factor``, reached at the last
    step ``steps - 1``; ``anneal`` is ``"cos"`` or ``"linear"``. Two annealing pieces joined at
    the peak.

    >>> fn = one_cycle(0.1, 100)
    >>> [round(float(v), 7) for v in fn(np.array([0, 29, 99]))]
    [0.004, 0.1, 4e-07]
    """
    max_lr = _lr("max_lr", max_lr)
    div_factor = _positive("div_factor", div_factor)
    final_div_factor = _positive("final_div_factor", final_div_factor)
    up, down, anneal = _one_cycle_phases(steps, pct_start, anneal)
    initial = max_lr / div_factor
    final = initial / final_div_factor
    return join([_anneal(anneal, initial, max_lr, up), _anneal(anneal, max_lr, final, down)], [up])


def one_cycle_momentum(
    steps: float,
    pct_start: float = 0.3,
    high: float = 0.95,
    low: float = 0.85,
    anneal: str = "cos",
) -> Schedule:
    """The momentum (or Adam's ``beta_1``) of the one-cycle policy, cycled inversely to the
    LR of ``one_cycle(max_lr, steps, pct_start, anneal=anneal)``: ``high -> low`` while the LR
    rises, ``low -> high`` while it falls."""
    high = _in_closed("high", high, 0.0, 1.0)
    low = _in_closed("low", low, 0.0, 1.0)
    if low > high:
        raise ValueError(
            f"Argument `low` must be <= `high`. Received: low={low!r}, high={high!r}"
        )
    up, down, anneal = _one_cycle_phases(steps, pct_start, anneal)
    return join([_anneal(anneal, high, low, up), _anneal(anneal, low, high, down)], [up])


# --------------------------------------------------------------------------------------------
# Registry, fractions of training


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "linear": linear,
    "polynomial": polynomial,
    "cosine": cosine,
    "warmup_cosine": warmup_cosine,
    "cosine_restarts": cosine_restarts,
    "exponential": exponential,
    "exp_decay": exp_decay,
    "inverse_time": inverse_time,
    "time_based": time_based,
    "step_decay": step_decay,
    "piecewise": piecewise,
    "triangular": triangular,
    "triangular2": triangular2,
    "exp_range": exp_range,
    "one_cycle": one_cycle,
    "one_cycle_momentum": one_cycle_momentum,
}


def _factory(name) -> Callable[..., Schedule]:
    if name not in SCHEDULES:
        raise ValueError(
            f"Unknown schedule: {name!r}. Known schedules: {', '.join(sorted(SCHEDULES))}"
        )
    return SCHEDULES[name]


def _check_arguments(name: str, factory: Callable, kwargs: dict) -> None:
    """Unknown or missing arguments as a ValueError (not the TypeError of a bad call)."""
    params = inspect.signature(factory).parameters
    for key, value in kwargs.items():
        if key not in params:
            raise ValueError(
                f"Schedule {name!r} has no argument `{key}` (received {key}={value!r}); "
                f"its arguments: {', '.join(params)}"
            )
    missing = [p for p, v in params.items() if v.default is v.empty and p not in kwargs]
    if missing:
        raise ValueError(
            f"Schedule {name!r} is missing the argument(s): {', '.join(f'`{m}`' for m in missing)}"
        )


def make(name: str, **kwargs) -> Schedule:
    """The schedule ``SCHEDULES[name](**kwargs)``, with unknown names and unknown or missing
    arguments reported as ``ValueError``.

    >>> float(make("exp_decay", initial=0.5, k=0.0)(7))
    0.5
    """
    factory = _factory(name)
    _check_arguments(name, factory, kwargs)
    return factory(**kwargs)


def _count(key: str, frac, total: int) -> int:
    if isinstance(frac, bool) or not isinstance(frac, numbers.Real) or not 0 <= frac <= 1:
        raise _fail(key, "in [0, 1]", frac)
    # a positive fraction never rounds to nothing: a short budget keeps at least one unit
    return max(1, round(frac * total)) if frac > 0 else 0


def resolve(args: dict, total: int) -> dict:
    """Turn every ``<x>_frac`` argument (a fraction of training, or a list of them) into
    ``<x> = round(frac * total)`` (at least 1 for a positive fraction); other arguments are
    copied unchanged.

    >>> resolve({"initial": 0.1, "warmup_frac": 0.1, "boundaries_frac": [0.25, 0.5]}, 1000)
    {'initial': 0.1, 'warmup': 100, 'boundaries': [250, 500]}
    """
    if isinstance(total, bool) or not isinstance(total, numbers.Integral) or total <= 0:
        raise _fail("total", "a positive integer", total)
    out = {}
    for key, value in args.items():
        if not key.endswith("_frac"):
            out[key] = value
            continue
        base = key[: -len("_frac")]
        if base in args:
            raise ValueError(
                f"Arguments `{key}` and `{base}` are exclusive. "
                f"Received: {key}={value!r}, {base}={args[base]!r}"
            )
        if isinstance(value, (list, tuple)):
            out[base] = [_count(key, v, total) for v in value]
        else:
            out[base] = _count(key, value, total)
    return out


# --------------------------------------------------------------------------------------------
# Keras


@keras.saving.register_keras_serializable(package="lrstudy")
class KerasSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A registry schedule as a serializable Keras ``LearningRateSchedule``.

    ``KerasSchedule("warmup_cosine", initial=1e-4, peak=0.01, warmup=100, steps=1000)``
    evaluates ``make(name, **kwargs)`` on the optimizer's iteration (the step being taken,
    counted from 0). ``kwargs`` are resolved, plain numbers, lists and strings;
    ``get_config()`` is ``{"name": name, **kwargs}``.
    """

    def __init__(self, name: str, **kwargs):
        super().__init__()
        self._fn = make(name, **kwargs)
        self.name = name
        self.kwargs = dict(kwargs)

    def __call__(self, step):
        return self._fn(step)

    def get_config(self) -> dict:
        return {"name": self.name, **self.kwargs}

    @classmethod
    def from_config(cls, config: dict) -> KerasSchedule:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"KerasSchedule({self.name!r}, {args})"


_UNITS = ("step", "epoch")
_MOMENTUM_KEYS = ("cycle_momentum", "momentum_high", "momentum_low")


@dataclasses.dataclass(frozen=True)
class Built:
    """A schedule of the study, resolved against its budget (see :func:`build`)."""

    unit: str  # "step" or "epoch"
    fn: Schedule  # fn(t) in that unit
    name: str
    args: dict  # the factory's resolved arguments, logged as params `schedule.<arg>`
    momentum: Schedule | None = None  # per-step momentum / beta_1, one_cycle only

    def keras_schedule(self) -> KerasSchedule:
        """The optimizer's ``learning_rate`` (unit "step" only)."""
        if self.unit != "step":
            raise ValueError(
                f"Schedule {self.name!r} has unit {self.unit!r}: a Keras schedule needs unit "
                "'step'; use epoch_callback()"
            )
        return KerasSchedule(self.name, **self.args)

    def epoch_callback(self) -> keras.callbacks.LearningRateScheduler:
        """A callback setting the optimizer's LR to ``fn(epoch)`` at each epoch begin (unit
        "epoch" only; the optimizer needs a plain float learning rate)."""
        if self.unit != "epoch":
            raise ValueError(
                f"Schedule {self.name!r} has unit {self.unit!r}: an epoch callback needs unit "
                "'epoch'; use keras_schedule()"
            )
        fn = self.fn
        return keras.callbacks.LearningRateScheduler(lambda epoch, lr: float(fn(epoch)))

    def curve(self, steps_per_epoch: int, epochs: int) -> np.ndarray:
        """The LR at each optimizer step of training, float32, ``steps_per_epoch * epochs``
        long (an epoch schedule is held for the steps of its epoch)."""
        steps_per_epoch = _positive_int("steps_per_epoch", steps_per_epoch)
        epochs = _positive_int("epochs", epochs)
        if self.unit == "step":
            return np.asarray(self.fn(np.arange(steps_per_epoch * epochs)), dtype=np.float32)
        per_epoch = np.asarray(self.fn(np.arange(epochs)), dtype=np.float32)
        return np.repeat(per_epoch, steps_per_epoch)


def build(spec: dict, *, steps_per_epoch: int, epochs: int) -> Built:
    """A study's schedule table (``{"name": ..., "unit": ..., **args}``) as a :class:`Built`.

    ``unit`` defaults to "step". ``<x>_frac`` arguments resolve against
    ``steps_per_epoch * epochs`` (unit "step") or ``epochs`` (unit "epoch"). For
    ``one_cycle``, ``cycle_momentum = true`` adds ``momentum``: ``one_cycle_momentum`` with the
    same ``steps``, ``pct_start`` and ``anneal`` (``momentum_high``, ``momentum_low`` optional).
    Every problem is a one-line ``ValueError`` naming the schedule, the argument and the value.

    >>> b = build({"name": "warmup_cosine", "initial": 1e-4, "peak": 0.01,
    ...            "warmup_frac": 0.1, "steps_frac": 1.0}, steps_per_epoch=10, epochs=5)
    >>> b.unit, b.args["warmup"], b.args["steps"], round(float(b.fn(5)), 6)
    ('step', 5, 50, 0.01)
    """
    spec = dict(spec)
    name = spec.pop("name", None)
    _factory(name)
    try:
        steps_per_epoch = _positive_int("steps_per_epoch", steps_per_epoch)
        epochs = _positive_int("epochs", epochs)
        unit = spec.pop("unit", "step")
        if unit not in _UNITS:
            raise _fail("unit", f"one of {_UNITS}", unit)
        extra = {k: spec.pop(k) for k in _MOMENTUM_KEYS if k in spec and name == "one_cycle"}
        args = resolve(spec, steps_per_epoch * epochs if unit == "step" else epochs)
        fn = make(name, **args)
        momentum = _momentum(args, unit, **extra)
    except ValueError as err:
        raise ValueError(f"Schedule {name!r}: {err}") from None
    return Built(unit=unit, fn=fn, name=name, args=args, momentum=momentum)


def _momentum(args, unit, cycle_momentum=False, momentum_high=None, momentum_low=None):
    if not _flag("cycle_momentum", cycle_momentum):
        if momentum_high is not None or momentum_low is not None:
            raise ValueError(
                "Arguments `momentum_high` and `momentum_low` need cycle_momentum=true. "
                f"Received: momentum_high={momentum_high!r}, momentum_low={momentum_low!r}"
            )
        return None
    bounds = {"high": momentum_high, "low": momentum_low}
    if unit != "step":
        raise ValueError(
            f"Argument `cycle_momentum` needs unit 'step' (momentum is set per step). "
            f"Received: unit={unit!r}"
        )
    keys = ("steps", "pct_start", "anneal")
    return one_cycle_momentum(
        **{k: v for k, v in bounds.items() if v is not None},
        **{k: args[k] for k in keys if k in args},
    )


def plateau_callback(optimizer, **kwargs) -> keras.callbacks.ReduceLROnPlateau:
    """``keras.callbacks.ReduceLROnPlateau(**kwargs)``, refused up front when the optimizer's
    learning rate is a ``LearningRateSchedule`` (Keras would raise a TypeError at the first
    plateau, deep inside training)."""
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        label = getattr(schedule, "name", None) or type(schedule).__name__
        raise ValueError(
            "ReduceLROnPlateau needs a plain learning rate, but the optimizer's learning rate "
            f"is a schedule ({label}); use a per-epoch schedule or drop the plateau rule"
        )
    params = inspect.signature(keras.callbacks.ReduceLROnPlateau).parameters
    for key, value in kwargs.items():
        if key not in params:
            raise ValueError(
                f"ReduceLROnPlateau has no argument `{key}` (received {key}={value!r}); "
                f"its arguments: {', '.join(params)}"
            )
    if "factor" in kwargs:
        _in_open("factor", kwargs["factor"], 0.0, 1.0)
    if "patience" in kwargs:
        _at_least("patience", kwargs["patience"], 0.0)
    if "min_lr" in kwargs:
        _lr("min_lr", kwargs["min_lr"])
    return keras.callbacks.ReduceLROnPlateau(**kwargs)
