"""The suggestion rules of the LR range test: a learning rate read off its loss curve.

Every rule has one signature, ``rule(lrs, losses) -> float | None``, where ``losses`` is the
smoothed, finite curve (:func:`lrstudy.lr.range_test.smooth`, the part of the sweep the
rules see), and is chosen by name in :data:`RULES`. ``valley``, ``minimum`` and ``slide`` are
fastai's rules, with its index arithmetic; ``steepest`` is the steepest descent against the
log of the LR.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["MIN_POINTS", "RULES", "minimum", "slide", "steepest", "suggest", "valley"]

MIN_POINTS = 5
"""Fewer finite points than this and a rule answers ``None`` instead of guessing."""


def _curve(lrs, losses) -> tuple[np.ndarray, np.ndarray] | None:
    """The curve as float arrays, or ``None`` when it is too short for a rule."""
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    if lrs.shape != losses.shape or lrs.ndim != 1:
        raise ValueError(
            "Arguments `lrs` and `losses` must be 1-D arrays of the same length. "
            f"Received: lrs.shape={lrs.shape}, losses.shape={losses.shape}"
        )
    if len(lrs) < MIN_POINTS:
        return None
    return lrs, losses


def steepest(lrs, losses) -> float | None:
    """LR at the most negative slope of the loss against ``log10(lr)``.

    ``slope = np.gradient(losses, log10(lrs))`` (central differences); the answer is
    ``lrs[argmin(slope)]``. The slope is taken against the log of the LR, the axis the sweep
    is uniform in: against the LR itself the largest LRs would always look steepest.
    """
    curve = _curve(lrs, losses)
    if curve is None:
        return None
    lrs, losses = curve
    slope = np.gradient(losses, np.log10(lrs))
    return float(lrs[int(np.argmin(slope))])


def minimum(lrs, losses) -> float | None:
    """One tenth of the LR at the lowest loss: ``lrs[argmin(losses)] / 10`` (fastai)."""
    curve = _curve(lrs, losses)
    if curve is None:
        return None
    lrs, losses = curve
    return float(lrs[int(np.argmin(losses))] / 10.0)


def valley(lrs, losses) -> float | None:
    """LR in the middle of the longest valley of decreasing loss (fastai's default rule).

    The valley is the longest strictly decreasing subsequence of ``losses``: with
    ``lds[i] = 1 + max(lds[j] for j < i if losses[j] > losses[i])`` (1 if there is none), it
    ends at ``end = argmax(lds)`` (the first one) and starts at ``start = end - lds[end]``.
    With ``L = end - start`` the answer is ``lrs[start + int(L / 3) + int(L / 6)]``.

    This is fastai's index arithmetic (``fastai.callback.schedule.valley``), kept so that the
    two libraries suggest the same LR on the same curve. It lands about half-way down the
    valley (``L/3 + L/6 = L/2``), the "middle of the sharpest downward slope" of fastai's
    guide, although the rule is sometimes described as "2/3 of the way down".
    """
    curve = _curve(lrs, losses)
    if curve is None:
        return None
    lrs, losses = curve
    lds = np.ones(len(losses), dtype=np.int64)
    for i in range(1, len(losses)):
        higher_before = losses[:i] > losses[i]
        if higher_before.any():
            lds[i] = 1 + lds[:i][higher_before].max()
    end = int(np.argmax(lds))
    start = end - int(lds[end])
    length = end - start
    index = start + int(length / 3) + int(length / 6)
    return float(lrs[index])


def slide(
    lrs, losses, lr_diff: int = 15, thresh: float = 0.005, adjust_value: float = 1.0
) -> float | None:
    """fastai's interval slide rule.

    With ``g = np.gradient(losses)`` (per step, not per LR), walk a pair of indices
    ``(r, l = r - lr_diff)`` from the right end of the curve to the left while
    ``|g[r] - g[l]| > thresh``; the answer is ``lrs[l] * adjust_value`` for the last pair
    that still differed (the first pair when none does). It needs at least ``lr_diff + 1``
    points. ``thresh`` is in loss units per step, so the rule depends on the scale of the loss.
    """
    curve = _curve(lrs, losses)
    if curve is None or len(curve[0]) < lr_diff + 1:
        return None
    lrs, losses = curve
    grad = np.gradient(losses)
    right, left = -1, -1 - lr_diff
    local_min_lr = lrs[left]
    while left >= -len(losses) and abs(grad[right] - grad[left]) > thresh:
        local_min_lr = lrs[left]
        right -= 1
        left -= 1
    return float(local_min_lr * adjust_value)


RULES: dict[str, Callable[[np.ndarray, np.ndarray], float | None]] = {
    "valley": valley,
    "steepest": steepest,
    "minimum": minimum,
    "slide": slide,
}
"""Suggestion rules by name; each maps ``(lrs, smoothed_losses)`` to an LR or ``None``."""


def suggest(lrs, losses) -> dict[str, float | None]:
    """Every rule of :data:`RULES` applied to one (smoothed, finite) curve."""
    return {name: rule(lrs, losses) for name, rule in RULES.items()}
