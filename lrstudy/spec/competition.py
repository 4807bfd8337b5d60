"""The fair benchmark: every strategy at its own tuned learning rate.

A study with a ``[competition]`` table runs in phases (tag ``lrstudy.phase``):

- ``demo``: the tutorials' teaching cases at their own constants, shown, not ranked;
- ``tune``: each competing strategy on a log grid of its peak LR (``grid_points`` values over
  ``grid_decades`` decades centred on the strategy's usual peak, every LR-valued quantity of
  the scenario scaled together: :func:`lrstudy.spec.lr_scale.scaled`), each point on
  ``tune_seeds`` seeds of their own, scored on the validation split only (the mean over the
  tuning seeds; a diverged seed scores worst; the test set is not even evaluated). A winner
  on an edge of the grid says the grid missed the optimum: the grid grows by one step beyond
  that edge, and again, until the winner is interior or the grid has grown by
  ``extend_decades`` decades on that side (a *capped* edge winner, marked in the report);
- ``final``: the validation winner on fresh seeds ``0 .. final_seeds - 1``, scored once on the
  test set. Seed ``i`` gives every strategy of the budget the same initial weights and batch
  order, so the finals are paired. A strategy fed by the LR range test (``*-from-finder``) has
  nothing to tune: it runs its finals directly, and its ``twin`` (the same schedule with its
  LR tuned) tells what taking the range test's suggestion costs.

The protocol follows DeepOBS (a log grid per strategy, wide enough to contain the optimum,
chosen on validation, rerun on fresh seeds) and Crowded Valley (several tuning seeds).

Study file keys::

    [competition]
    demos = ["fixed-too-large", ...]    demo_seeds = 1
    grid_points = 5    grid_decades = 2.0    tune_seeds = 3    extend_decades = 2.0
    differs = { "one-cycle" = "also cycles SGD's momentum", ... }

``differs`` says, per strategy, what it changes besides its LR policy (the report shows it).
The study's ``seeds`` is the number of final seeds; its ``reference`` (a top-level key) is
what the verdict compares every strategy with (:mod:`lrstudy.report.verdict`).
"""

from __future__ import annotations

import dataclasses
import math

from lrstudy import tasks
from lrstudy.spec import lr_scale
from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Tag

PHASES = ("demo", "tune", "final")
TUNE_SEED_BASE = 1000  # tuning seeds never coincide with the final seeds 0, 1, ...
KEYS = {"demos", "demo_seeds", "grid_points", "grid_decades", "tune_seeds", "extend_decades",
        "differs", "untuned"}


class CompetitionError(ValueError):
    """A competition that cannot run (bad key, unknown demo, tuning not finished)."""


@dataclasses.dataclass(frozen=True)
class Competition:
    demos: tuple[str, ...] = ()
    demo_seeds: int = 1
    grid_points: int = 5
    grid_decades: float = 2.0
    tune_seeds: int = 3
    extend_decades: float = 2.0  # how far beyond each edge the grid may grow
    differs: tuple[tuple[str, str], ...] = ()  # (strategy, what else it changes)
    # strategies that compete at their own settings, with nothing to tune (an LR-free method)
    untuned: tuple[str, ...] = ()

    def role(self, scenario) -> str:
        """``demo``, ``finder`` (fed by the range test: finals only), ``untuned`` (at its own
        settings: finals only) or ``tuned``."""
        if scenario.name in self.demos:
            return "demo"
        if scenario.finder is not None:
            return "finder"
        if scenario.name in self.untuned:
            return "untuned"
        return "tuned"

    def phases(self, scenario) -> tuple[str, ...]:
        return {"demo": ("demo",), "finder": ("final",), "untuned": ("final",),
                "tuned": ("tune", "final")}[self.role(scenario)]

    def grid(self, scenario) -> list[float]:
        """The peak LRs of the scenario's tuning grid before any extension."""
        return lr_scale.lr_grid(lr_scale.peak_lr(scenario), self.grid_points, self.grid_decades)

    def max_extension(self) -> int:
        """How many grid steps the grid may grow by beyond each edge (none for a one-point
        grid, which has no step)."""
        if self.grid_points < 2:
            return 0
        step = self.grid_decades / (self.grid_points - 1)
        return int(math.floor(self.extend_decades / step + 1e-9))

    def step_ratio(self) -> float:
        return 10.0 ** (self.grid_decades / (self.grid_points - 1))


def parse(where: str, table) -> Competition:
    """A ``[competition]`` table, checked (names of demos are checked by the study)."""
    if not isinstance(table, dict):
        raise CompetitionError(f"{where}: must be a table, got {table!r}"[:200])
    unknown = sorted(set(table) - KEYS)
    if unknown:
        raise CompetitionError(f"{where}: unknown key {unknown[0]!r}; allowed: "
                               f"{', '.join(sorted(KEYS))}")
    demos, untuned = table.get("demos", []), table.get("untuned", [])
    for key, names in (("demos", demos), ("untuned", untuned)):
        if not isinstance(names, list) or not all(isinstance(d, str) for d in names):
            raise CompetitionError(f"{where}: {key} must be a list of scenario names")
    ints = {key: table.get(key, getattr(Competition, key)) for key in
            ("demo_seeds", "grid_points", "tune_seeds")}
    for key, value in ints.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
            raise CompetitionError(f"{where}: {key} must be an integer in [1, 1000], "
                                   f"got {value!r}")
    decades = {key: table.get(key, getattr(Competition, key))
               for key in ("grid_decades", "extend_decades")}
    for key, value in decades.items():
        low = 0 if key == "extend_decades" else 1e-12
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or not low <= value <= 12):
            raise CompetitionError(f"{where}: {key} must be a number in "
                                   f"{'[0' if low == 0 else '(0'}, 12], got {value!r}")
    differs = table.get("differs", {})
    if not isinstance(differs, dict) or not all(isinstance(v, str) for v in differs.values()):
        raise CompetitionError(f"{where}: differs must be a table of strategy = \"what else it "
                               f"changes\", got {differs!r}"[:200])
    return Competition(demos=tuple(demos), untuned=tuple(untuned),
                       differs=tuple(sorted(differs.items())),
                       **{k: float(v) for k, v in decades.items()}, **ints)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial of a phase: the scenario as it trains (scaled to its peak), seed, key."""

    scenario: object
    seed: int
    phase: str
    peak_lr: float | None  # None: fed by the range test, known when it runs
    key: str
    evaluate_test: bool = True
    params: tuple = ()  # (name, value) logged with the trial: a final's tuning, summed up


def key_of(scenario, seed: int, phase: str = "") -> str:
    return tracking.run_key(scenario.key_config(), seed, phase)


def _trial(scenario, seed, phase, peak=None, test=True, params=()) -> Trial:
    if peak is None and scenario.finder is None:
        peak = lr_scale.peak_lr(scenario)
    return Trial(scenario, seed, phase, peak, key_of(scenario, seed, phase), test, params)


def trials(competition: Competition | None, scenario, phase: str, seeds: int,
           winner: float | None = None, points: list[float] | None = None,
           params: dict | None = None) -> list[Trial]:
    """The trials of ``scenario`` in ``phase``; ``seeds`` is the number of final seeds (or of
    plain seeds without a competition, ``phase`` then ""); ``winner`` is the peak LR the
    tuning chose (needed for the finals of a tuned strategy); ``points`` the tuning's grid
    points (default: the grid before any extension); ``params`` are logged with the finals
    (:func:`tuning_params`)."""
    if competition is None or phase == "":
        return [_trial(scenario, s, "") for s in range(seeds)]
    if phase == "demo":
        return [_trial(scenario, s, "demo") for s in range(competition.demo_seeds)]
    if phase == "tune":
        out = []
        for peak in competition.grid(scenario) if points is None else points:
            scaled = lr_scale.scaled(scenario, peak / lr_scale.peak_lr(scenario))
            out += [_trial(scaled, TUNE_SEED_BASE + s, "tune", peak, test=False)
                    for s in range(competition.tune_seeds)]
        return out
    if phase == "final":
        if competition.role(scenario) in ("finder", "untuned"):
            return [_trial(scenario, s, "final") for s in range(seeds)]
        if winner is None:
            raise CompetitionError(f"scenario {scenario.name!r}: its finals need the tuning's "
                                   "winner, and its tuning has not finished")
        scaled = lr_scale.scaled(scenario, winner / lr_scale.peak_lr(scenario))
        extra = tuple(sorted((params or {}).items()))
        return [_trial(scaled, s, "final", winner, params=extra) for s in range(seeds)]
    raise CompetitionError(f"unknown phase {phase!r}; phases: {', '.join(PHASES)}")


@dataclasses.dataclass(frozen=True)
class Tuning:
    """Where a strategy's tuning stands: the grid points so far (extensions included), each
    point's validation scores per tuning seed (oriented: higher is better; ``-inf`` for a
    diverged seed; None where a seed has not FINISHED), and what is left to train.

    ``winner`` is the point with the best mean score (ties: the smaller LR) once nothing is
    pending; ``capped`` says that it sits on an edge the grid may not grow past."""

    points: tuple[float, ...]
    scores: dict
    pending: tuple[float, ...]
    winner: float | None
    capped: bool
    extended: tuple[int, int]  # grid steps added below and above the initial grid


def _oriented_scores(competition: Competition, scenario, points, mlflow_client,
                     exp_id: str) -> dict:
    task = tasks.get(scenario.task)
    grid = trials(competition, scenario, "tune", 0, points=list(points))
    runs = tracking.trials_by_key(mlflow_client, exp_id, {t.key for t in grid})
    sign = 1.0 if task.higher_is_better else -1.0
    table: dict[float, list] = {}
    for trial in grid:
        done = [r for r in runs.get(trial.key, []) if r.info.status == "FINISHED"]
        if not done:
            value = None
        elif done[0].data.tags.get(Tag.DIVERGED) == "true":
            value = -math.inf
        else:
            value = sign * done[0].data.metrics.get(task.val_metric, -sign * math.inf)
            value = value if math.isfinite(value) else -math.inf
        table.setdefault(trial.peak_lr, []).append(value)
    return table


def best_point(scores: dict) -> float:
    """The point with the best mean score; ties go to the smaller LR."""
    means = {p: sum(v) / len(v) for p, v in scores.items()}
    return min(means, key=lambda p: (-means[p], p))


def tuning(competition: Competition, scenario, mlflow_client, exp_id: str) -> Tuning:
    """The strategy's tuning as the store has it: its initial grid, then one step beyond an
    edge whose point wins, repeated until the winner is interior or the edge may not grow
    (:meth:`Competition.max_extension`). Only validation metrics are read."""
    points = list(competition.grid(scenario))
    below = above = 0
    limit = competition.max_extension()
    while True:
        scores = _oriented_scores(competition, scenario, points, mlflow_client, exp_id)
        pending = tuple(p for p, v in scores.items() if None in v)
        if pending:
            return Tuning(tuple(points), scores, pending, None, False, (below, above))
        best = best_point(scores)
        if len(points) > 1 and best == points[0] and below < limit:
            points.insert(0, lr_scale.significant(points[0] / competition.step_ratio()))
            below += 1
        elif len(points) > 1 and best == points[-1] and above < limit:
            points.append(lr_scale.significant(points[-1] * competition.step_ratio()))
            above += 1
        else:
            edge = best in (points[0], points[-1]) and len(points) > 1
            return Tuning(tuple(points), scores, (), best, edge, (below, above))


def tuning_params(tuned: Tuning) -> dict:
    """What the finals log of the tuning that chose their LR (params ``tune.*``)."""
    below, above = tuned.extended
    return {"tune.points": len(tuned.points),
            "tune.seeds": max((len(v) for v in tuned.scores.values()), default=0),
            "tune.extended_below": below, "tune.extended_above": above,
            "tune.capped": str(tuned.capped).lower()}


def winner(competition: Competition, scenario, mlflow_client, exp_id: str) -> float | None:
    """The tuned peak LR, or None while the tuning (its extensions included) is unfinished."""
    return tuning(competition, scenario, mlflow_client, exp_id).winner


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
