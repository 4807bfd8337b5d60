"""A scenario resolved against its budget: fractions and per-total constants into counts, the
schedule it trains with, its plateau and finder arguments.

A study writes durations as fractions of training and some constants per total. In a schedule
or plateau table, ``<x>_frac = f`` becomes ``<x> = round(f * total)`` (at least 1 for a positive
fraction) and, in a schedule table, ``<x>_per_total = c`` becomes ``<x> = c / total``, where
``total`` is what the table counts: the optimizer steps of training (schedule unit "step"),
or its epochs (unit "epoch", and the plateau rule). Arguments written ``"from_finder"`` take
the LR range test's bounds.

All of this is data and checks, without TensorFlow: Keras is imported only to make a Keras
object (:meth:`Built.keras_schedule`, :meth:`Built.epoch_callback`, :func:`plateau_callback`).
A scenario is passed in and read by its attributes (``schedule``, ``plateau``,
``finder``, ``learning_rate``, ``budget``, ``steps_per_epoch``): :mod:`lrstudy.scenarios`
imports this module, never the other way round.

>>> b = build({"name": "warmup_cosine", "initial": 1e-4, "peak": 0.01,
...            "warmup_frac": 0.1, "steps_frac": 1.0}, steps_per_epoch=10, epochs=5)
>>> b.unit, b.args["warmup"], b.args["steps"], round(float(b.fn(5)), 6)
('step', 5, 50, 0.01)
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from lrstudy import checks, optimizers, schedules
from lrstudy.schedules import _factory, make, one_cycle_momentum
from lrstudy.tfquiet import LazyModule

if TYPE_CHECKING:
    from lrstudy.schedules import KerasSchedule, Schedule

keras = LazyModule("keras")  # imported by the Keras adapters only

__all__ = [
    "FINDER_DEFAULTS", "FROM_FINDER", "PLATEAU_KEYS", "REDUCE_LR_ON_PLATEAU", "UNITS", "Built",
    "build", "build_schedule", "check", "finder_args", "plateau_args", "plateau_callback",
    "resolve_frac", "resolve_per_total",
]

UNITS = ("step", "epoch")
FROM_FINDER = "from_finder"
PLACEHOLDER_BOUNDS = (1e-3, 1e-2)
"""The finder's (lower, upper) bounds while validating, before any range test has run."""

FINDER_DEFAULTS = {"start_lr": 1e-7, "end_lr": 10.0, "num_it": 100, "rule": "valley"}
"""The LR range test's arguments unless a scenario's ``finder`` table or ``find-lr`` says
otherwise (``notebooks/lr_range_test.ipynb`` repeats them as its parameters; a test keeps them
equal)."""

REDUCE_LR_ON_PLATEAU = ("monitor", "factor", "patience", "verbose", "mode", "min_delta",
                        "cooldown", "min_lr")
"""The keyword arguments of ``keras.callbacks.ReduceLROnPlateau`` (a test keeps them equal to
its signature), so that a plateau rule is checked without Keras."""

PLATEAU_KEYS = (*(k for k in REDUCE_LR_ON_PLATEAU if k != "verbose"), "patience_frac")
"""A study's plateau table: ReduceLROnPlateau's arguments but ``verbose`` (the trial's output
is the runner's), and ``patience_frac``, a fraction of the epochs."""

_MOMENTUM_KEYS = ("cycle_momentum", "momentum_high", "momentum_low")


# --------------------------------------------------------------------------------------------
# Fractions and per-total constants


def _resolve_suffix(args: dict, suffix: str, convert: Callable[[str, object], object]) -> dict:
    """Every ``<x><suffix>`` argument as ``<x> = convert(key, value)``; ``<x>`` itself must not
    be given too. Other arguments are copied unchanged, in order."""
    out = {}
    for key, value in args.items():
        if not key.endswith(suffix):
            out[key] = value
            continue
        base = key[: -len(suffix)]
        if base in args:
            raise ValueError(f"Arguments `{key}` and `{base}` are exclusive. "
                             f"Received: {key}={value!r}, {base}={args[base]!r}")
        out[base] = convert(key, value)
    return out


def _count(key: str, frac, total: int) -> int:
    if isinstance(frac, bool) or not isinstance(frac, numbers.Real) or not 0 <= frac <= 1:
        raise checks.fail(key, "in [0, 1]", frac)
    # a positive fraction never rounds to nothing: a short budget keeps at least one unit
    return max(1, round(frac * total)) if frac > 0 else 0


def resolve_frac(args: dict, total: int) -> dict:
    """Turn every ``<x>_frac`` argument (a fraction of training, or a list of them) into
    ``<x> = round(frac * total)`` (at least 1 for a positive fraction).

    >>> resolve_frac({"initial": 0.1, "warmup_frac": 0.1, "boundaries_frac": [0.25, 0.5]}, 1000)
    {'initial': 0.1, 'warmup': 100, 'boundaries': [250, 500]}
    """
    total = checks.positive_int("total", total)

    def counts(key, value):
        if isinstance(value, (list, tuple)):
            return [_count(key, v, total) for v in value]
        return _count(key, value, total)

    return _resolve_suffix(args, "_frac", counts)


def resolve_per_total(args: dict, total: int) -> dict:
    """Turn every ``<x>_per_total = c`` into ``<x> = c / total``: the decay tutorial's
    ``decay = 0.5 / epochs`` is ``decay_per_total = 0.5`` over 100 epochs.

    >>> resolve_per_total({"initial": 0.5, "decay_per_total": 0.5}, 100)
    {'initial': 0.5, 'decay': 0.005}
    """
    total = checks.positive_int("total", total)
    return _resolve_suffix(args, "_per_total", lambda key, value: checks.real(key, value) / total)


# --------------------------------------------------------------------------------------------
# The schedule


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
                "'step'; use epoch_callback()")
        return schedules.KerasSchedule(self.name, **self.args)

    def epoch_callback(self) -> keras.callbacks.LearningRateScheduler:
        """A callback setting the optimizer's LR to ``fn(epoch)`` at each epoch begin (unit
        "epoch" only; the optimizer needs a plain float learning rate)."""
        if self.unit != "epoch":
            raise ValueError(
                f"Schedule {self.name!r} has unit {self.unit!r}: an epoch callback needs unit "
                "'epoch'; use keras_schedule()")
        fn = self.fn
        return keras.callbacks.LearningRateScheduler(lambda epoch, lr: float(fn(epoch)))

    def curve(self, steps_per_epoch: int, epochs: int) -> np.ndarray:
        """The LR at each optimizer step of training, float32, ``steps_per_epoch * epochs``
        long (an epoch schedule is held for the steps of its epoch)."""
        steps_per_epoch = checks.positive_int("steps_per_epoch", steps_per_epoch)
        epochs = checks.positive_int("epochs", epochs)
        if self.unit == "step":
            return np.asarray(self.fn(np.arange(steps_per_epoch * epochs)), dtype=np.float32)
        per_epoch = np.asarray(self.fn(np.arange(epochs)), dtype=np.float32)
        return np.repeat(per_epoch, steps_per_epoch)


def build(spec: dict, *, steps_per_epoch: int, epochs: int) -> Built:
    """A study's schedule table (``{"name": ..., "unit": ..., **args}``) as a :class:`Built`.

    ``unit`` defaults to "step". ``<x>_per_total`` and ``<x>_frac`` arguments resolve against
    ``steps_per_epoch * epochs`` (unit "step") or ``epochs`` (unit "epoch"). For
    ``one_cycle``, ``cycle_momentum = true`` adds ``momentum``: ``one_cycle_momentum`` with the
    same ``steps``, ``pct_start`` and ``anneal`` (``momentum_high``, ``momentum_low`` optional).
    Every problem is a one-line ``ValueError`` naming the schedule, the argument and the value.
    """
    spec = dict(spec)
    name = spec.pop("name", None)
    _factory(name)
    try:
        steps_per_epoch = checks.positive_int("steps_per_epoch", steps_per_epoch)
        epochs = checks.positive_int("epochs", epochs)
        unit = spec.pop("unit", "step")
        if unit not in UNITS:
            raise checks.fail("unit", f"one of {UNITS}", unit)
        extra = {k: spec.pop(k) for k in _MOMENTUM_KEYS if k in spec and name == "one_cycle"}
        total = steps_per_epoch * epochs if unit == "step" else epochs
        args = resolve_frac(resolve_per_total(spec, total), total)
        fn = make(name, **args)
        momentum = _momentum(args, unit, **extra)
    except ValueError as err:
        raise ValueError(f"Schedule {name!r}: {err}") from None
    return Built(unit=unit, fn=fn, name=name, args=args, momentum=momentum)


def _momentum(args, unit, cycle_momentum=False, momentum_high=None, momentum_low=None):
    if not checks.flag("cycle_momentum", cycle_momentum):
        if momentum_high is not None or momentum_low is not None:
            raise ValueError(
                "Arguments `momentum_high` and `momentum_low` need cycle_momentum=true. "
                f"Received: momentum_high={momentum_high!r}, momentum_low={momentum_low!r}")
        return None
    if unit != "step":
        raise ValueError("Argument `cycle_momentum` needs unit 'step' (momentum is set per "
                         f"step). Received: unit={unit!r}")
    bounds = {"high": momentum_high, "low": momentum_low}
    return one_cycle_momentum(**{k: v for k, v in bounds.items() if v is not None},
                              **{k: args[k] for k in ("steps", "pct_start", "anneal") if k in args})


def build_schedule(scenario, finder_bounds: tuple[float, float] | None = None):
    """The scenario's :class:`Built`, or None for a fixed learning rate.

    Arguments written ``"from_finder"`` take the LR range test's ``finder_bounds``: ``base``
    the lower, every other argument (``max_lr``) the upper; :data:`PLACEHOLDER_BOUNDS` while
    validating, before a test has run.
    """
    if scenario.schedule is None:
        return None
    if not isinstance(scenario.schedule, dict):
        raise checks.fail("schedule", "a table", scenario.schedule)
    low, high = finder_bounds if finder_bounds is not None else PLACEHOLDER_BOUNDS
    spec = {key: (low if key == "base" else high) if value == FROM_FINDER else value
            for key, value in scenario.schedule.items()}
    return build(spec, steps_per_epoch=scenario.steps_per_epoch,
                 epochs=scenario.budget["epochs"])


# --------------------------------------------------------------------------------------------
# Plateau rule and LR range test


def _check_plateau(kwargs: dict) -> dict:
    """ReduceLROnPlateau's keyword arguments checked as data: known names, ``factor`` in
    (0, 1), ``patience`` and ``min_lr`` >= 0."""
    for key, value in kwargs.items():
        if key not in REDUCE_LR_ON_PLATEAU:
            raise checks.unknown_argument("ReduceLROnPlateau", key, value, REDUCE_LR_ON_PLATEAU)
    if "factor" in kwargs:
        checks.in_open("factor", kwargs["factor"], 0.0, 1.0)
    for key in ("patience", "min_lr"):
        if key in kwargs:
            checks.at_least(key, kwargs[key], 0.0)
    return kwargs


def plateau_args(scenario) -> dict:
    """The scenario's ReduceLROnPlateau keyword arguments, ``patience_frac`` resolved into
    ``patience`` epochs; refused with a per-step schedule (the callback sets a plain LR)."""
    table = scenario.plateau
    if not isinstance(table, dict):
        raise checks.fail("plateau", "a table", table)
    for key, value in table.items():
        if key not in PLATEAU_KEYS:
            raise checks.unknown_argument("plateau", key, value, PLATEAU_KEYS)
    if scenario.schedule is not None and scenario.schedule.get("unit", "step") == "step":
        raise ValueError("ReduceLROnPlateau needs a plain learning rate, but the scenario has a "
                         "per-step schedule")
    return _check_plateau(resolve_frac(table, scenario.budget["epochs"]))


def plateau_callback(optimizer, **kwargs) -> keras.callbacks.ReduceLROnPlateau:
    """``keras.callbacks.ReduceLROnPlateau(**kwargs)``, refused up front when the optimizer's
    learning rate is a ``LearningRateSchedule`` (Keras would raise a TypeError at the first
    plateau, deep inside training)."""
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        label = getattr(schedule, "name", None) or type(schedule).__name__
        raise ValueError(
            "ReduceLROnPlateau needs a plain learning rate, but the optimizer's learning rate "
            f"is a schedule ({label}); use a per-epoch schedule or drop the plateau rule")
    return keras.callbacks.ReduceLROnPlateau(**_check_plateau(kwargs))


def finder_args(scenario) -> dict:
    """The LR range test's arguments for a scenario: its ``finder`` table over
    :data:`FINDER_DEFAULTS`, names and rule checked."""
    from lrstudy.finder import RULES

    table = scenario.finder if scenario.finder is not None else {}
    if not isinstance(table, dict):
        raise checks.fail("finder", "a table", table)
    for key, value in table.items():
        if key not in FINDER_DEFAULTS:
            raise checks.unknown_argument("finder", key, value, FINDER_DEFAULTS)
    args = {**FINDER_DEFAULTS, **table}
    if args["rule"] not in RULES:
        raise checks.fail("rule", f"one of {tuple(RULES)}", args["rule"])
    return args


def check(scenario) -> Built | None:
    """Everything of the scenario this module resolves, checked: its fixed learning rate, its
    schedule (returned, built against the budget), its plateau rule and finder arguments."""
    if scenario.learning_rate is not None:
        optimizers.check_learning_rate(scenario.learning_rate)
    built = build_schedule(scenario)
    if scenario.plateau is not None:
        plateau_args(scenario)
    if scenario.finder is not None:
        finder_args(scenario)
    return built
