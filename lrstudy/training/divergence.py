"""When a run has diverged: non-finite or blown-up losses, chance accuracy, a loss that
stays above its start.
"""

from __future__ import annotations

import math

import numpy as np  # noqa: E402

from lrstudy.lr.range_test import smooth

# Divergence (see divergence_reason). Training stops at once when a step's loss is NaN or
# infinite, or exceeds this many times the loss of the first step: with ReLU networks a
# blown-up run often escapes float overflow by killing its units, then wanders at a finite
# but absurd loss.
DIVERGENCE_FACTOR = 1e4


# Judged at the end of training, without stopping it: accuracy within this much of 1/classes
# (train and validation) over the last half of the epochs ...
CHANCE_TOLERANCE = 0.02


# ... or the smoothed training loss above this many times the first step's loss over the
# last half of the steps. A run stuck at chance sits near its initial loss (log(classes)
# for a net that starts near uniform): that is the chance rule's case. Above 3x the net is
# confidently wrong for half of training, which no learning run does; the margin covers a
# first batch's loss that is low by luck and the short spikes of cyclical peaks and warm-ups,
# which the smoothing and "over the whole last half" absorb as well.
LOSS_ABOVE_INITIAL_FACTOR = 3.0


SMOOTHING_BETA = 0.98  # the LR range test's (lrstudy.lr.range_test.smooth)


DIVERGENCE_REASONS = ("nonfinite", "blow_up", "chance", "loss_above_initial")


def _last_half(n: int) -> int:
    """How many of ``n`` epochs or steps are its last half: ``ceil(n / 2)``, at least 1."""
    return max(1, math.ceil(n / 2))


def stopping_reason(losses, first_loss: float | None) -> tuple[int, str] | None:
    """The first step (index into ``losses``) that stops training, and why, or None:
    ``"nonfinite"``: its loss is NaN or infinite; ``"blow_up"``: above
    :data:`DIVERGENCE_FACTOR` times ``first_loss`` (the first step's loss; None: no bound)."""
    losses = np.asarray(losses, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        nonfinite = ~np.isfinite(losses)
        bad = nonfinite | (losses > DIVERGENCE_FACTOR * (first_loss or np.inf))
    if not bad.any():
        return None
    at = int(np.argmax(bad))
    return at, "nonfinite" if nonfinite[at] else "blow_up"


def at_chance(epoch_logs, num_classes: int | None,
              tolerance: float = CHANCE_TOLERANCE) -> bool:
    """Whether ``accuracy`` and ``val_accuracy`` (where logged) of the last half of the epochs
    all lie within ``tolerance`` of ``1 / num_classes``."""
    if not epoch_logs or not num_classes or num_classes < 2:
        return False
    chance = 1.0 / num_classes
    for logs in epoch_logs[-_last_half(len(epoch_logs)):]:
        values = [logs[k] for k in ("accuracy", "val_accuracy") if logs.get(k) is not None]
        if not values or not all(abs(float(v) - chance) <= tolerance + 1e-9 for v in values):
            return False  # a NaN accuracy is not "at chance": the non-finite rule's case
    return True


def loss_stays_above_initial(losses, factor: float = LOSS_ABOVE_INITIAL_FACTOR,
                             beta: float = SMOOTHING_BETA) -> bool:
    """Whether the smoothed loss stays above ``factor`` times the first step's loss over the
    last half of the steps. Smoothed: the bias-corrected EMA of :func:`lrstudy.lr.range_test.smooth`,
    started afresh at the last half, so that a spike the run recovered from earlier (a first
    step at a large LR) cannot hold it up there: at beta 0.98 the EMA remembers about 50
    steps, as long as the whole of a short trial."""
    losses = np.asarray(losses, dtype=np.float64)
    if not losses.size or not np.isfinite(losses).all() or losses[0] <= 0:
        return False
    smoothed = smooth(losses[-_last_half(len(losses)):], beta)
    return bool((smoothed > factor * losses[0]).all())


def divergence_reason(epoch_logs, losses, num_classes: int | None) -> str:
    """Why a trial has diverged, or "" when it has not.

    ``epoch_logs``: one dict of Keras logs per epoch (``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``); ``losses``: the loss of every step, in order. The first rule that holds
    names the reason (:data:`DIVERGENCE_REASONS`):

    - ``nonfinite``: a step's loss, or an epoch's ``loss`` or ``val_loss``, is NaN or infinite;
    - ``blow_up``: a step's loss exceeds :data:`DIVERGENCE_FACTOR` times the first step's
      (these two stop training at once, see :class:`EpochLogger`);
    - ``chance``: the accuracies are stuck at chance (:func:`at_chance`);
    - ``loss_above_initial``: the smoothed loss stays high (:func:`loss_stays_above_initial`).
    """
    losses = np.asarray(losses, dtype=np.float64)
    finite = losses[np.isfinite(losses)]
    stop = stopping_reason(losses, float(finite[0]) if finite.size else None)
    if stop is not None:
        return stop[1]
    if any(not math.isfinite(float(logs.get(k, 0.0))) for logs in epoch_logs
           for k in ("loss", "val_loss")):
        return "nonfinite"
    if at_chance(epoch_logs, num_classes):
        return "chance"
    if loss_stays_above_initial(losses):
        return "loss_above_initial"
    return ""
