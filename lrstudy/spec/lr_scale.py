"""A scenario's learning-rate scale: its peak learning rate (the value a tuning grid varies),
the scenario scaled to another peak, and the log-spaced grid of peaks the competition tunes
over.

Every schedule is linear in its LR arguments, so scaling them scales the whole LR curve; the
peak is read off the resolved schedule (:func:`lrstudy.spec.resolve.build_schedule`) in closed
form, without TensorFlow. A scenario fed by the LR range test has no fixed peak and cannot be
scaled.
"""

from __future__ import annotations

import dataclasses
import math

from lrstudy import checks
from lrstudy.lr import optimizers
from lrstudy.lr.schedules import LR_ARGUMENTS, _factory
from lrstudy.spec.resolve import _CYCLICAL, FROM_FINDER, _total, build_schedule

__all__ = ["lr_grid", "peak_lr", "scaled", "significant"]


def significant(value: float) -> float:
    """``value`` rounded to 4 significant digits, as the ``[sweep]`` grid rounds its LRs."""
    return float(f"{value:.4g}")


def _refuse_finder(scenario, what: str) -> None:
    schedule = scenario.schedule if isinstance(scenario.schedule, dict) else {}
    if (scenario.finder is not None or FROM_FINDER in schedule.values()
            or scenario.learning_rate == FROM_FINDER):
        raise ValueError(f"Scenario {scenario.name!r} {what}: its learning rates come from the "
                         "LR range test (its `finder` table or 'from_finder' arguments)")


def _ramp(start: float, end: float, steps: float, t: float, shape=lambda p: p) -> float:
    """``start`` at ``t = 0`` to ``end`` at ``t >= steps`` (a linear or cosine ``shape``)."""
    w = shape(min(t, steps) / steps) if steps > 0 else 1.0
    return start * (1.0 - w) + end * w


def _cos(p: float) -> float:
    return (1.0 - math.cos(math.pi * p)) / 2.0


def _peak_of(name: str, a: dict, last: float) -> float:
    """The supremum of schedule ``name(**a)`` over its time ``[0, last]``, in closed form."""
    get = a.get
    if name in ("cosine", "exp_decay", "inverse_time", "time_based"):
        return a["initial"]  # non-increasing: their rates and `alpha` are checked >= 0
    if name == "constant":
        return a["value"]
    if name == "linear":
        return max(a["start"], _ramp(a["start"], a["end"], a["steps"], last))
    if name == "polynomial":
        p = min(last, a["steps"]) / a["steps"]
        end = a["end"]
        return max(a["initial"], (a["initial"] - end) * (1 - p) ** get("power", 1.0) + end)
    if name in ("warmup_cosine", "warmup_stable_decay"):  # the warm-up, then falls from `peak`
        peak, warmup = a["peak"], a["warmup"]
        out = max(a["initial"], _ramp(a["initial"], peak, warmup, last)) if warmup else peak
        if name == "warmup_stable_decay":  # ... or rises, to an `end` above `peak`
            decay = get("decay") or a["steps"] - warmup
            if last >= a["steps"] - decay:
                out = max(out, _ramp(peak, get("end", 0.0), decay, last - a["steps"] + decay))
        return out
    if name == "cosine_restarts":
        m_mul, alpha, t_mul = get("m_mul", 1.0), get("alpha", 0.0), get("t_mul", 2.0)
        if m_mul <= 1:
            return a["initial"]
        frac = last / a["first_decay_steps"]
        i = math.floor(frac if t_mul == 1 else math.log(1 - frac * (1 - t_mul)) / math.log(t_mul))
        return a["initial"] * ((1 - alpha) * m_mul ** i + alpha)  # the last restart begun
    if name in ("exponential", "step_decay"):
        rate, every = (a["drop"], a["every"]) if name == "step_decay" else (
            a["decay_rate"], a["decay_steps"])
        staircase = name == "step_decay" or get("staircase", False)
        exponent = math.floor(last / every) if staircase else last / every
        return a["initial"] * (rate ** exponent if rate > 1 else 1.0)
    if name == "piecewise":
        values, bounds = a["values"], a["boundaries"]
        return max(v for i, v in enumerate(values) if i == 0 or last > bounds[i - 1])
    if name in _CYCLICAL:  # the first rise is the highest: later amplitudes are scaled by <= 1
        rise = min(a["step_size"], last)
        if name == "exp_range" and a["gamma"] < 1:  # (t / step_size) gamma^t is largest here
            rise = min(rise, -1.0 / math.log(a["gamma"]))
        scale = a["gamma"] ** rise if name == "exp_range" else 1.0
        return a["base"] + (a["max_lr"] - a["base"]) * rise / a["step_size"] * scale
    if name == "one_cycle":
        top = a["max_lr"]
        first = top / get("div_factor", 25.0)
        up, shape = get("pct_start", 0.3) * a["steps"] - 1.0, _cos if get(
            "anneal", "cos") == "cos" else (lambda p: p)
        out = max(first, _ramp(first, top, up, last, shape))
        if last >= up:
            end = first / get("final_div_factor", 1e4)
            out = max(out, _ramp(top, end, a["steps"] - 1.0 - up, last - up, shape))
        return out
    return max(get("high", 0.95), get("low", 0.85))  # one_cycle_momentum: not an LR


def peak_lr(scenario) -> float:
    """The largest learning rate the scenario trains with: the value its tuning grid varies.

    A constant LR (a plateau rule only lowers it) is its ``learning_rate``; a schedule's is the
    maximum of its LR curve over training at its budget, ``t`` in ``[0, total - 1]``, in closed
    form from the schedule's arguments, without TensorFlow: the starting value of ``cosine``,
    ``exp_decay``, ``inverse_time``, ``time_based`` (and of ``exponential`` and ``step_decay``
    with a rate <= 1), ``max(start, value at the last t)`` of a ramp (``linear``,
    ``polynomial``), the warm-up's end (``peak``) or where training stops it, the largest piece
    of ``piecewise`` that training reaches, the last restart's start of ``cosine_restarts``,
    the first rise of the cyclical policies (``max_lr``; for ``exp_range`` where
    ``(t / step_size) gamma ** t`` is largest), ``max_lr`` of ``one_cycle``. It equals the
    maximum of ``build_schedule(scenario).curve(...)`` to float32 round-off where the peak
    falls on a step; where it falls between two steps (one-cycle's ``pct_start * steps - 1``, a
    fractional half-cycle), the curve's largest step lies below it by less than one step's
    change. A scenario fed by the LR range test has no fixed peak: ``ValueError``.
    """
    _refuse_finder(scenario, "has no fixed peak learning rate")
    if scenario.schedule is None:
        return optimizers.check_learning_rate(scenario.learning_rate)
    built = build_schedule(scenario)
    total = _total(built.unit, scenario.steps_per_epoch, scenario.budget["epochs"])
    args = {k: v for k, v in built.args.items() if k != "time_scale"}
    return float(_peak_of(built.name, args, (total - 1) * built.args.get("time_scale", 1.0)))


def scaled(scenario, factor: float):
    """The scenario with every learning-rate-valued quantity multiplied by ``factor``, each
    rounded to 4 significant digits (so that equal grid points of two scenarios are equal
    configs): its ``learning_rate``, the schedule's :data:`~lrstudy.lr.schedules.LR_ARGUMENTS`
    (``value``, ``start``, ``end``, ``initial``, ``peak``, ``base``, ``max_lr``, each of
    ``values``) and the plateau rule's ``min_lr``. Durations, fractions, rates (``decay_rate``,
    ``gamma``, ``k``), ratios (``alpha``, ``div_factor``) and momenta are kept. Every schedule
    is linear in its LR arguments, so the LR curve is ``factor`` times the scenario's, exactly
    but for the rounding. ``dataclasses.replace`` of the scenario: a new one, same name.
    """
    factor = checks.positive("factor", factor)
    _refuse_finder(scenario, "cannot be scaled")

    def times(key, value):
        if isinstance(value, (list, tuple)):
            return [times(key, v) for v in value]
        return significant(checks.real(key, value) * factor)

    changes = {}
    if scenario.learning_rate is not None:
        changes["learning_rate"] = times("learning_rate", scenario.learning_rate)
    if scenario.schedule is not None:
        if not isinstance(scenario.schedule, dict):
            raise checks.fail("schedule", "a table", scenario.schedule)
        _factory(scenario.schedule.get("name"))
        changes["schedule"] = {k: times(k, v) if k in LR_ARGUMENTS else v
                               for k, v in scenario.schedule.items()}
    if isinstance(scenario.plateau, dict) and "min_lr" in scenario.plateau:
        changes["plateau"] = {**scenario.plateau,
                              "min_lr": times("min_lr", scenario.plateau["min_lr"])}
    return dataclasses.replace(scenario, **changes)


def lr_grid(center: float, points: int, decades: float) -> list[float]:
    """``points`` log-spaced learning rates over ``decades`` decades, centred in log space on
    ``center``, each rounded to 4 significant digits.

    >>> lr_grid(0.001, 5, 2)
    [0.0001, 0.0003162, 0.001, 0.003162, 0.01]
    """
    center = checks.positive("center", center)
    points = checks.positive_int("points", points)
    decades = checks.positive("decades", decades)
    if points == 1:
        return [significant(center)]
    return [significant(center * 10.0 ** (decades * (i / (points - 1) - 0.5)))
            for i in range(points)]
