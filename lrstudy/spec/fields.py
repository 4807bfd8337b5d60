"""One-line checks of a study file's values: every error a :class:`SpecError` naming the file,
the key and the reason, never a traceback."""

from __future__ import annotations

import difflib

#: Upper bounds of what a study may ask for: beyond them it is a typo, not a study.
LIMITS = {"seeds": 1000, "epochs": 100_000, "batch_size": 1_000_000, "log_every": 1_000_000,
          "steps_per_execution": 1_000_000, "points": 1000}


class SpecError(ValueError):
    """A study or scenario that cannot run, named with its file and key."""


def suggest(name: str, known) -> str:
    """``'name'``, followed by ``(did you mean 'x'?)`` when a known name is close to it
    (difflib's ratio): an error names one likely fix, not every name there is."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)


def unknown(where: str, keys, allowed) -> None:
    extra = sorted(set(keys) - set(allowed))
    if extra:
        raise SpecError(f"{where}: unknown key {extra[0]!r}; allowed: {', '.join(sorted(allowed))}")


def table(where: str, value, what: str = "a table") -> dict:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: must be {what}, got {show(value)}")
    return value


def string(where: str, key: str, value) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{where}: key {key!r} must be a string, got {show(value)}")
    return value


def show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def count(where: str, key: str, value, low: int = 1) -> int:
    """An integer in [low, LIMITS[key]]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where}: {key} must be an integer, got {show(value)}")
    high = LIMITS.get(key)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" + (f" and <= {high:,}" if high is not None else "")
        raise SpecError(f"{where}: {key} must be {bound}, got {value:,}")
    return value
