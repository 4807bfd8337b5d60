"""The fair benchmark: every strategy at its own tuned learning rate.

A study with a ``[competition]`` table runs in phases (tag ``lrstudy.phase``):

- ``demo``: the tutorials' teaching cases at their own constants, shown, not ranked;
- ``tune``: each competing strategy on a log grid of its peak LR (``grid_points`` values over
  ``grid_decades`` decades centred on the strategy's usual peak, every LR-valued quantity of
  the scenario scaled together: :func:`lrstudy.resolve.scaled`), on ``tune_seeds`` seeds of
  their own, scored on the validation split only (a diverged point scores worst; the test set
  is not even evaluated);
- ``final``: the validation winner on fresh seeds ``0 .. final_seeds - 1``, scored once on the
  test set. Seed ``i`` gives every strategy of the budget the same initial weights and batch
  order, so the finals are paired. A strategy fed by the LR range test (``*-from-finder``) has
  nothing to tune: it runs its finals directly.

The protocol follows DeepOBS and Crowded Valley (a grid of the LR per strategy, chosen on
validation, rerun on fresh seeds); where it differs is said in the README.

Study file keys::

    [competition]
    demos = ["fixed-too-large", ...]    demo_seeds = 1
    grid_points = 5    grid_decades = 2.0    tune_seeds = 1

The study's ``seeds`` is the number of final seeds; its ``reference`` (a top-level key) is
what the verdict compares every strategy with (:mod:`lrstudy.report.verdict`).
"""

from __future__ import annotations

import dataclasses
import math

from lrstudy import resolve, tracking
from lrstudy.tracking import TAG

PHASES = ("demo", "tune", "final")
TUNE_SEED_BASE = 1000  # tuning seeds never coincide with the final seeds 0, 1, ...
KEYS = {"demos", "demo_seeds", "grid_points", "grid_decades", "tune_seeds"}
MIN_GRID_POINTS = 1


class CompetitionError(ValueError):
    """A competition that cannot run (bad key, unknown demo, tuning not finished)."""


@dataclasses.dataclass(frozen=True)
class Competition:
    demos: tuple[str, ...] = ()
    demo_seeds: int = 1
    grid_points: int = 5
    grid_decades: float = 2.0
    tune_seeds: int = 1

    def role(self, scenario) -> str:
        """``demo``, ``finder`` (fed by the range test: finals only) or ``tuned``."""
        if scenario.name in self.demos:
            return "demo"
        if scenario.finder is not None:
            return "finder"
        return "tuned"

    def phases(self, scenario) -> tuple[str, ...]:
        return {"demo": ("demo",), "finder": ("final",), "tuned": ("tune", "final")}[
            self.role(scenario)]

    def grid(self, scenario) -> list[float]:
        """The peak LRs of the scenario's tuning grid."""
        return resolve.lr_grid(resolve.peak_lr(scenario), self.grid_points, self.grid_decades)


def parse(where: str, table) -> Competition:
    """A ``[competition]`` table, checked (names of demos are checked by the study)."""
    if not isinstance(table, dict):
        raise CompetitionError(f"{where}: must be a table, got {table!r}"[:200])
    unknown = sorted(set(table) - KEYS)
    if unknown:
        raise CompetitionError(f"{where}: unknown key {unknown[0]!r}; allowed: "
                               f"{', '.join(sorted(KEYS))}")
    demos = table.get("demos", [])
    if not isinstance(demos, list) or not all(isinstance(d, str) for d in demos):
        raise CompetitionError(f"{where}: demos must be a list of scenario names")
    ints = {key: table.get(key, getattr(Competition, key)) for key in
            ("demo_seeds", "grid_points", "tune_seeds")}
    for key, value in ints.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
            raise CompetitionError(f"{where}: {key} must be an integer in [1, 1000], "
                                   f"got {value!r}")
    decades = table.get("grid_decades", Competition.grid_decades)
    if (isinstance(decades, bool) or not isinstance(decades, (int, float))
            or not math.isfinite(decades) or not 0 < decades <= 12):
        raise CompetitionError(f"{where}: grid_decades must be a number in (0, 12], "
                               f"got {decades!r}")
    return Competition(demos=tuple(demos), grid_decades=float(decades),
                       **ints)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial of a phase: the scenario as it trains (scaled to its peak), seed, key."""

    scenario: object
    seed: int
    phase: str
    peak_lr: float | None  # None: fed by the range test, known when it runs
    key: str
    evaluate_test: bool = True


def key_of(scenario, seed: int, phase: str = "") -> str:
    return tracking.run_key(scenario.key_config(), seed, phase)


def _trial(scenario, seed, phase, peak=None, test=True) -> Trial:
    if peak is None and scenario.finder is None:
        peak = resolve.peak_lr(scenario)
    return Trial(scenario, seed, phase, peak, key_of(scenario, seed, phase), test)


def trials(competition: Competition | None, scenario, phase: str, seeds: int,
           winner: float | None = None) -> list[Trial]:
    """The trials of ``scenario`` in ``phase``; ``seeds`` is the number of final seeds (or of
    plain seeds without a competition, ``phase`` then ""); ``winner`` is the peak LR the
    tuning chose (needed for the finals of a tuned strategy)."""
    if competition is None or phase == "":
        return [_trial(scenario, s, "") for s in range(seeds)]
    if phase == "demo":
        return [_trial(scenario, s, "demo") for s in range(competition.demo_seeds)]
    if phase == "tune":
        out = []
        for peak in competition.grid(scenario):
            scaled = resolve.scaled(scenario, peak / resolve.peak_lr(scenario))
            out += [_trial(scaled, TUNE_SEED_BASE + s, "tune", peak, test=False)
                    for s in range(competition.tune_seeds)]
        return out
    if phase == "final":
        if scenario.finder is not None:
            return [_trial(scenario, s, "final") for s in range(seeds)]
        if winner is None:
            raise CompetitionError(f"scenario {scenario.name!r}: its finals need the tuning's "
                                   "winner, and its tuning has not finished")
        scaled = resolve.scaled(scenario, winner / resolve.peak_lr(scenario))
        return [_trial(scaled, s, "final", winner) for s in range(seeds)]
    raise CompetitionError(f"unknown phase {phase!r}; phases: {', '.join(PHASES)}")


def scores(competition: Competition, scenario, mlflow_client, exp_id: str) -> dict:
    """Each grid point's validation score: the mean over its tuning seeds of the final
    validation accuracy, ``-inf`` for a diverged seed; None where a seed has not FINISHED.
    Only validation metrics are read."""
    grid = trials(competition, scenario, "tune", 0)
    runs = tracking.trials_by_key(mlflow_client, exp_id, {t.key for t in grid})
    per_peak: dict[float, list] = {}
    for trial in grid:
        done = [r for r in runs.get(trial.key, []) if r.info.status == "FINISHED"]
        if not done:
            value = None
        elif done[0].data.tags.get(TAG + "diverged") == "true":
            value = -math.inf
        else:
            value = done[0].data.metrics.get("val_accuracy", -math.inf)
        per_peak.setdefault(trial.peak_lr, []).append(value)
    return {peak: (None if None in values else sum(values) / len(values))
            for peak, values in per_peak.items()}


def winner(competition: Competition, scenario, mlflow_client, exp_id: str) -> float | None:
    """The peak LR with the best validation score (ties: the smaller LR), or None while a
    grid point has not finished."""
    table = scores(competition, scenario, mlflow_client, exp_id)
    if not table or any(v is None for v in table.values()):
        return None
    return min(table, key=lambda peak: (-table[peak], peak))


def with_grid_points(competition: Competition | None, grid_points: int) -> Competition | None:
    """The competition with ``grid_points`` overridden (0: the study's own)."""
    if competition is None or not grid_points:
        return competition
    if isinstance(grid_points, bool) or not isinstance(grid_points, int) or grid_points < 1:
        raise CompetitionError(f"grid_points must be an integer >= 1, got {grid_points!r}")
    return dataclasses.replace(competition, grid_points=grid_points)


def phases_to_run(competition: Competition | None, scenario, phase: str) -> tuple[str, ...]:
    """The phases a run of ``scenario`` executes: ``phase``, or all of its phases ("")."""
    if competition is None:
        if phase:
            raise CompetitionError(f"phase {phase!r} needs a study with a [competition]")
        return ("",)
    if not phase:
        return competition.phases(scenario)
    if phase not in competition.phases(scenario):
        raise CompetitionError(
            f"scenario {scenario.name!r} is a {competition.role(scenario)} scenario of this "
            f"competition: its phases are {', '.join(competition.phases(scenario))}, "
            f"not {phase!r}")
    return (phase,)
