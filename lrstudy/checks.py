"""Argument checks in Keras's style, shared by the schedules and the study-spec rules.

Each check returns the value (as a float, where it is a number) or raises a one-line
``ValueError`` naming the argument and the value it received:

>>> positive("decay_steps", 0)
Traceback (most recent call last):
...
ValueError: Argument `decay_steps` must be > 0. Received: decay_steps=0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable


def fail(name: str, requirement: str, value) -> ValueError:
    return ValueError(f"Argument `{name}` must be {requirement}. Received: {name}={value!r}")


def unknown_argument(owner: str, key: str, value, known) -> ValueError:
    return ValueError(f"{owner} has no argument `{key}` (received {key}={value!r}); "
                      f"its arguments: {', '.join(known)}")


def real(name: str, value) -> float:
    """``value`` as a finite float; bools, strings, NaN and infinities are rejected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise fail(name, "a finite number", value)
    return float(value)


def checked(name: str, value, ok: Callable[[float], bool], requirement: str) -> float:
    number = real(name, value)
    if not ok(number):
        raise fail(name, requirement, value)  # as it was written, not as a float
    return number


def at_least(name: str, value, low: float) -> float:
    return checked(name, value, lambda v: v >= low, f">= {low:g}")


def positive(name: str, value) -> float:
    return checked(name, value, lambda v: v > 0, "> 0")


def lr(name: str, value) -> float:
    """A learning rate (or momentum): finite and >= 0."""
    return at_least(name, value, 0.0)


def in_closed(name: str, value, low: float, high: float) -> float:
    return checked(name, value, lambda v: low <= v <= high, f"in [{low:g}, {high:g}]")


def in_open(name: str, value, low: float, high: float) -> float:
    return checked(name, value, lambda v: low < v < high, f"in ({low:g}, {high:g})")


def positive_int(name: str, value) -> int:
    value = positive(name, value)
    if value != int(value):
        raise fail(name, "a positive integer", value)
    return int(value)


def flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise fail(name, "a bool", value)
    return value


STACK_MODES = ("auto", "off")


def stack(value) -> int | str:
    """A stack size (``lrstudy run --stack``, the scenario notebook's ``stack``): ``"auto"``,
    ``"off"`` or a positive integer (given as text or a number), as ``"auto"``, ``"off"`` or
    an int."""
    text = str(value).strip().lower()
    if isinstance(value, bool) or not (text in STACK_MODES or text.isdigit() and int(text) >= 1):
        raise fail("stack", "auto, off or a positive integer", value)
    return text if text in STACK_MODES else int(text)
