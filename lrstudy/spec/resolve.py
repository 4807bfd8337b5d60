"""A scenario resolved against its budget: fractions and per-total constants into counts, the
schedule it trains with, its plateau and finder arguments (its peak LR and the scenario scaled
to another peak: :mod:`lrstudy.spec.lr_scale`).

A study writes durations as fractions of training and some constants per total. In a schedule
or plateau table, ``<x>_frac = f`` becomes ``<x> = round(f * total)`` (at least 1 for a positive
fraction) and, in a schedule table, ``<x>_per_total = c`` becomes ``<x> = c / total``, where
``total`` is what the table counts: the optimizer steps of training (schedule unit "step"),
or its epochs (unit "epoch", and the plateau rule). Arguments written ``"from_finder"`` take
the LR range test's bounds.

Shapes across budgets, the rule: a schedule's curve at any budget is its tutorial's curve
rescaled in time. Two ways to write it, both exact fractions of training:

- ``tutorial_total = N``: the schedule's arguments are the tutorial's own constants, for a
  training of ``N`` units (its epochs, or steps); the schedule is evaluated at
  ``t * N / total`` (``time_scale``, :func:`lrstudy.lr.schedules.rescale`), so every period,
  boundary and decay constant keeps its fraction of training, unrounded. ``_frac`` and
  ``_per_total`` arguments of such a table resolve against ``N``.
- ``cycles = c`` (triangular, triangular2, exp_range): ``c`` whole cycles over training, the
  half-cycle ``step_size = (total - 1) / (2 c)`` as an exact float, so that the last step
  (``total - 1``) ends the last cycle, at ``base`` (as one-cycle ends on its last step).

``<x>_frac`` is kept where rounding to a whole unit moves a shape by at most half a step (the
per-step warm-ups and one-cycle). Per schedule, in the catalogue: ``linear`` (per epoch),
``polynomial``, ``time_based``, ``exp_decay``, ``step_decay`` and ``inverse_time`` (per epoch:
the decay tutorial's formulas, kept per epoch) and ``piecewise``, ``inverse_time``,
``exponential`` (per step: Keras's schedules) take ``tutorial_total``; ``triangular`` and
``triangular2`` take ``cycles``, ``exp_range`` both (its ``gamma`` is per tutorial step);
``cosine``, ``warmup_cosine``, ``warmup_stable_decay`` and ``one_cycle`` take fractions of the
steps. The catalogue says the same per scenario; ``tests/test_shapes.py`` checks each.

All of this is data and checks, without TensorFlow: Keras is imported only to make a Keras
object (:meth:`Built.keras_schedule`, :meth:`Built.epoch_callback`, :func:`plateau_callback`).
A scenario is passed in and read by its attributes (``schedule``, ``plateau``,
``finder``, ``learning_rate``, ``budget``, ``steps_per_epoch``): :mod:`lrstudy.spec.study`
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

from lrstudy import checks
from lrstudy.lr import optimizers, schedules
from lrstudy.lr.schedules import _factory, make
from lrstudy.tfquiet import LazyModule

if TYPE_CHECKING:
    from lrstudy.lr.schedules import KerasSchedule, Schedule

keras = LazyModule("keras")  # imported by the Keras adapters only

__all__ = [
    "FINDER_DEFAULTS", "FROM_FINDER", "PLATEAU_KEYS", "REDUCE_LR_ON_PLATEAU", "UNITS", "Built",
    "build", "build_schedule", "check", "finder_args", "optimizer_args", "plateau_args",
    "plateau_callback", "resolve_frac", "resolve_per_total",
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

PLATEAU_KEYS = (*(k for k in REDUCE_LR_ON_PLATEAU if k != "verbose"), "patience_frac",
                "cooldown_frac")
"""A study's plateau table: ReduceLROnPlateau's arguments but ``verbose`` (the trial's output
is the runner's), and ``patience_frac`` and ``cooldown_frac``, fractions of the epochs."""

_MOMENTUM_KEYS = ("cycle_momentum", "momentum_high", "momentum_low")
_CYCLICAL = ("triangular", "triangular2", "exp_range")  # the schedules `cycles` applies to


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


def _total(unit: str, steps_per_epoch: int, epochs: int) -> int:
    return steps_per_epoch * epochs if unit == "step" else epochs


def build(spec: dict, *, steps_per_epoch: int, epochs: int) -> Built:
    """A study's schedule table (``{"name": ..., "unit": ..., **args}``) as a :class:`Built`.

    ``unit`` defaults to "step". ``<x>_per_total`` and ``<x>_frac`` arguments resolve against
    ``steps_per_epoch * epochs`` (unit "step") or ``epochs`` (unit "epoch"), or against
    ``tutorial_total`` when given, which also sets ``time_scale = tutorial_total / total``;
    ``cycles`` sets the half-cycle ``step_size`` (see the module's docstring). For
    ``one_cycle``, ``cycle_momentum = true`` adds ``momentum``: ``one_cycle_momentum`` with the
    same ``steps``, ``pct_start``, ``anneal`` and ``time_scale`` (``momentum_high``,
    ``momentum_low`` optional). Every problem is a one-line ``ValueError`` naming the schedule,
    the argument and the value.

    >>> build({"name": "step_decay", "unit": "epoch", "initial": 0.5, "drop": 0.8, "every": 10,
    ...        "tutorial_total": 100}, steps_per_epoch=391, epochs=8).args["time_scale"]
    12.5
    >>> build({"name": "triangular", "base": 0.001, "max_lr": 0.01, "cycles": 2},
    ...       steps_per_epoch=391, epochs=8).args["step_size"]
    781.75
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
        cycles = spec.pop("cycles", None) if name in _CYCLICAL else None
        total = _total(unit, steps_per_epoch, epochs)
        axis = total
        if "tutorial_total" in spec:
            axis = checks.positive_int("tutorial_total", spec.pop("tutorial_total"))
            if "time_scale" in spec:
                raise ValueError("Arguments `tutorial_total` and `time_scale` are exclusive. "
                                 f"Received: tutorial_total={axis!r}, "
                                 f"time_scale={spec['time_scale']!r}")
        args = resolve_frac(resolve_per_total(spec, axis), axis)
        if axis != total:
            args["time_scale"] = axis / total
        if cycles is not None:
            args["step_size"] = _half_cycle(cycles, total, args)
        fn = make(name, **args)
        momentum = _momentum(args, unit, **extra)
    except ValueError as err:
        raise ValueError(f"Schedule {name!r}: {err}") from None
    return Built(unit=unit, fn=fn, name=name, args=args, momentum=momentum)


def _half_cycle(cycles, total: int, args: dict) -> float:
    """``step_size`` for ``cycles`` whole cycles ending on the last step, in the schedule's own
    time (``t * time_scale``, rounded to float32 as the schedule rounds it)."""
    cycles = checks.positive_int("cycles", cycles)
    if "step_size" in args:
        raise ValueError(f"Arguments `cycles` and `step_size` are exclusive. "
                         f"Received: cycles={cycles!r}, step_size={args['step_size']!r}")
    if total < 2:
        raise ValueError(f"Argument `cycles` needs at least 2 steps of training. "
                         f"Received: cycles={cycles!r} over {total} step")
    last = float(np.float32((total - 1) * args.get("time_scale", 1.0)))
    return last / (2 * cycles)


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
    shared = ("steps", "pct_start", "anneal", "time_scale")
    return make("one_cycle_momentum", **{k: v for k, v in bounds.items() if v is not None},
                **{k: args[k] for k in shared if k in args})


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
    from lrstudy.lr.suggestion_rules import RULES

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


def optimizer_args(scenario) -> dict:
    """The scenario's ``optimizer_args`` for its optimizer: each fraction of training
    (:data:`lrstudy.lr.optimizers.FRACTIONS`) resolved into optimizer steps, ``round(f * total)``
    of the trial's ``steps_per_epoch * epochs`` (at least 1 for a positive fraction), as a
    schedule's ``_frac`` arguments resolve; ``warmup_frac = 0.05`` over 2,000 steps is
    ``warmup_steps = 100``. The other arguments are copied unchanged."""
    args = dict(scenario.optimizer_args)
    total = scenario.steps_per_epoch * scenario.budget["epochs"]
    for frac, steps in optimizers.FRACTIONS.items():
        if frac not in args:
            continue
        if steps in args:
            raise ValueError(f"Arguments `{frac}` and `{steps}` are exclusive. "
                             f"Received: {frac}={args[frac]!r}, {steps}={args[steps]!r}")
        args[steps] = _count(frac, args.pop(frac), checks.positive_int("total", total))
    return args


def check(scenario) -> Built | None:
    """Everything of the scenario this module resolves, checked: its fixed learning rate, its
    optimizer's fractions of training, its schedule (returned, built against the budget), its
    plateau rule and finder arguments."""
    if scenario.learning_rate == FROM_FINDER:
        if scenario.finder is None:
            raise ValueError("Argument `learning_rate` = 'from_finder' needs a `finder` table "
                             "(the LR range test that gives it)")
    elif scenario.learning_rate is not None:
        optimizers.check_learning_rate(scenario.learning_rate)
    if isinstance(scenario.optimizer_args, dict):  # a table: its own check names any other
        optimizer_args(scenario)
    built = build_schedule(scenario)
    if scenario.plateau is not None:
        plateau_args(scenario)
    if scenario.finder is not None:
        finder_args(scenario)
    return built
