"""The verdict's error rates by simulation: 2,000 synthetic studies of 11 strategies (one the
reference), per-seed test accuracy = 0.88 + a seed effect every strategy shares (the paired
design) + independent noise, SD about 0.5 points per strategy, correlation about 0.4 between
strategies sharing a seed. No training: the statistics of :mod:`lrstudy.report.simultaneous`,
:mod:`lrstudy.report.sequential` and :mod:`lrstudy.report.best_group`, vectorized over studies.

* A/A (every strategy the same): the share of studies with any better/worse call is at most 5%,
  for the fixed design (10 seeds) and the group-sequential one (looks at 10, 15, 20, 25, 30
  seeds, stopping once every comparison is decided), and every study's intervals cover the
  true differences (0) together in at least 95% of studies.
* One strategy planted 1 point above the others: the best group holds it in at least 95% of
  studies; the power to call it better is printed and bounded below.
"""

from __future__ import annotations

import numpy as np
import pytest

from lrstudy.report import best_group, sequential, simultaneous

STUDIES = 2_000
STRATEGIES = 11  # the reference (column 0) and 10 compared with it
SEED_SD = 0.003  # the shared seed effect
NOISE_SD = 0.004  # each strategy's own noise: SD 0.5 points per strategy, correlation 0.36
MARGIN = 0.003
ALPHA = 0.05
LOOKS = (10, 15, 20, 25, 30)
K = STRATEGIES - 1


def studies(seed: int, seeds: int, planted: float = 0.0) -> np.ndarray:
    """studies x seeds x strategies of test accuracy; strategy 1 gets ``planted``."""
    rng = np.random.default_rng(seed)
    x = (0.88 + rng.normal(0, SEED_SD, (STUDIES, seeds, 1))
         + rng.normal(0, NOISE_SD, (STUDIES, seeds, STRATEGIES)))
    x[:, :, 1] += planted
    return x


def intervals(x: np.ndarray, n: int, critical: float) -> tuple[np.ndarray, np.ndarray]:
    """The simultaneous intervals of the first ``n`` seeds' differences to column 0."""
    d = x[:, :n, 1:] - x[:, :n, :1]
    mean = d.mean(axis=1)
    half = critical * d.std(axis=1, ddof=1) / np.sqrt(n)
    return mean - half, mean + half


def test_the_fixed_design_calls_almost_never_wrongly_and_covers():
    x = studies(1, LOOKS[0])
    critical = sequential.critical_t(sequential.Design(), LOOKS[0], ALPHA / K)
    # the module's own interval for one comparison is the vectorized one here
    one = simultaneous.interval(x[0, :, 3] - x[0, :, 0], ALPHA, K)
    low, high = intervals(x, LOOKS[0], critical)
    assert (one["low"], one["high"]) == pytest.approx((low[0, 2], high[0, 2]))
    calls = simultaneous.calls(low, high, MARGIN)
    false = np.isin(calls, ("better", "worse")).any(axis=1).mean()
    covered = ((low < 0) & (high > 0)).all(axis=1).mean()
    equivalent = (calls == "equivalent").mean()
    print(f"fixed A/A: false-call rate {false:.4f}, coverage {covered:.4f}, "
          f"equivalent calls {equivalent:.3f}")
    assert false <= ALPHA
    assert covered >= 1 - ALPHA
    assert equivalent > 0  # the margin decides some: the procedure is not just "undecided"


@pytest.mark.parametrize("margin", [MARGIN, 0.008])
def test_the_sequential_design_keeps_the_error_across_looks(margin):
    """Looks at 10 .. 30 seeds; a study stops at the first look where no comparison is
    undecided (at the 0.3-point margin almost none can stop before 30 seeds; at 0.8 points
    most do). A false better/worse call at any look up to the stop counts."""
    x = studies(2, LOOKS[-1])
    design = sequential.Design(sequential.SEQUENTIAL, LOOKS[-1], 5, LOOKS)
    running = np.ones(STUDIES, bool)
    false = np.zeros(STUDIES, bool)
    covered = np.ones(STUDIES, bool)
    stopped_at = np.full(STUDIES, LOOKS[-1])
    for n in LOOKS:
        critical = sequential.critical_t(design, n, ALPHA / K)
        low, high = intervals(x, n, critical)
        calls = simultaneous.calls(low, high, margin)
        false |= running & np.isin(calls, ("better", "worse")).any(axis=1)
        covered &= ~running | ((low < 0) & (high > 0)).all(axis=1)
        done = running & ~(calls == "undecided").any(axis=1)
        stopped_at[done] = n
        running &= ~done
    print(f"sequential A/A, margin {100 * margin:.1f} points: false-call rate "
          f"{false.mean():.4f}, coverage {covered.mean():.4f}, stopped by look: {dict(zip(*np.unique(stopped_at, return_counts=True)))}")
    assert false.mean() <= ALPHA
    assert covered.mean() >= 1 - ALPHA
    # the boundary is a real group-sequential one: wider than the fixed design's at the first
    # look, near it at the last
    first = sequential.critical_t(design, LOOKS[0], ALPHA / K)
    last = sequential.critical_t(design, LOOKS[-1], ALPHA / K)
    fixed = sequential.critical_t(sequential.Design(), LOOKS[-1], ALPHA / K)
    assert first > 1.5 * sequential.critical_t(sequential.Design(), LOOKS[0], ALPHA / K)
    assert fixed < last < 1.05 * fixed


def test_a_planted_best_is_in_the_best_group_and_mostly_called_better():
    x = studies(3, LOOKS[0], planted=0.01)
    c = sequential.critical_t(sequential.Design(), LOOKS[0], ALPHA / K, sides=1)
    group = best_group.in_best_group(x, c)
    held = group[:, 1].mean()
    size = group.sum(axis=1).mean()
    critical = sequential.critical_t(sequential.Design(), LOOKS[0], ALPHA / K)
    low, high = intervals(x, LOOKS[0], critical)
    calls = simultaneous.calls(low, high, MARGIN)
    power = (calls[:, 0] == "better").mean()
    others_false = np.isin(calls[:, 1:], ("better", "worse")).any(axis=1).mean()
    print(f"planted +1 point: in the best group {held:.4f} (mean group size {size:.2f}), "
          f"power to call it better {power:.3f}, false calls among the others "
          f"{others_false:.4f}")
    assert held >= 1 - ALPHA
    assert power >= 0.6  # ~0.8 at these settings; a broken procedure falls far below
    assert others_false <= ALPHA
    assert size < 3  # the group separates: a +1 point strategy leaves few beside it
    # the module's DataFrame entry point agrees with the vectorized one
    import pandas as pd

    frame = pd.DataFrame(x[0], columns=[f"s{i}" for i in range(STRATEGIES)])
    assert best_group.best_group(frame, ALPHA).to_numpy().tolist() == group[0].tolist()
