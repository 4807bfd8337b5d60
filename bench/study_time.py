"""A study's wall time against its trials' steady training time, read from its store.

Steady training time: what a trial's ``train_time_s`` records, the sum of its epochs' times,
the first epoch's without its one-off tracing and XLA compile (``compile_time_s``, kept
apart by :class:`lrstudy.training.epoch_logger.EpochLogger`); validation is part of each
epoch. Trials trained as one stack share their epochs: every copy's logger times the stack's
own epochs, so a stack's steady time is the longest of its copies' (a copy that diverged
stops early while the stack trains on), counted once, not once per copy. A study's steady
training time is the sum over its stacks.

What is comparable: the study's wall time against that sum. Executions run side by side
(the runner's workers), so the sum can exceed the wall; ``wall_over_steady_per_worker``
divides the sum by the number of executions that ran at once, and is 1 when the workers did
nothing but steady training, all the time. The rest of the wall is everything else: the
command's start and planning (when the wall is the command's), kernels' starts and imports,
data loading, compiles, MLflow (runs opened, params, artifacts, the per-step series),
range tests, notebooks' tables and figures, and workers idle at the end.
"""

from __future__ import annotations

from lrstudy.tracking.schema import Tag

#: Runs of a study that are part of running it (its report's ``summary`` runs are not).
STUDY_KINDS = ("scenario", "trial", "lr_range_test")


def stacks(trials: list) -> list[list]:
    """The trials of a store grouped into the stacks that trained them: under one scenario
    run, trials whose run times overlap (a stack's runs are all opened before its fit and
    ended after it; the next stack of a scenario opens once they have ended)."""
    by_parent: dict = {}
    for run in trials:
        by_parent.setdefault(run.data.tags.get(Tag.PARENT_RUN, ""), []).append(run)
    groups = []
    for runs in by_parent.values():
        runs.sort(key=lambda r: r.info.start_time)
        end = None
        for run in runs:
            if end is None or run.info.start_time >= end:
                groups.append([])
                end = run.info.end_time or run.info.start_time
            groups[-1].append(run)
            end = max(end, run.info.end_time or run.info.start_time)
    return groups


def max_overlap(intervals: list[tuple[int, int]]) -> int:
    """The largest number of ``(start, end)`` intervals open at one moment."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def covered(intervals: list[tuple[int, int]]) -> int:
    """The length of the union of ``(start, end)`` intervals."""
    total, end = 0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def study_time(uri: str, study: str, wall_s: float | None = None) -> dict:
    """The study ``study`` in the store ``uri``: its wall time (``wall_s`` when given, the
    command's; else the span of its runs, from the first one's start to the last one's
    end), the steady training time of its stacks and their ratio (module docstring).

    Also: ``idle_s``, the part of the span when no scenario run was open (a study resumed
    after a pause has gaps: its span is then no wall time); the executions side by side;
    the compiles (each stack's longest); trials without a steady time (not FINISHED, or a
    first epoch whose compile could not be told apart: counted in full)."""
    from lrstudy.tracking import store as tracking

    client = tracking.client(uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        raise ValueError(f"no study {study!r} in the store {uri}")
    runs = [r for r in tracking.search(client, [exp.experiment_id])
            if r.data.tags.get(Tag.KIND) in STUDY_KINDS and r.info.end_time]
    scenario_runs = [(r.info.start_time, r.info.end_time) for r in runs
                     if r.data.tags[Tag.KIND] == "scenario"]
    trials = [r for r in runs if r.data.tags[Tag.KIND] == "trial"]
    if not trials:
        raise ValueError(f"the study {study!r} in {uri} has no ended trial")
    start = min(r.info.start_time for r in runs)
    span_s = (max(r.info.end_time for r in runs) - start) / 1000
    groups = stacks(trials)
    steady = [max(r.data.metrics.get("train_time_s", 0.0) for r in g) for g in groups]
    compiles = [max(r.data.metrics.get("compile_time_s", 0.0) for r in g) for g in groups]
    steady_s = sum(steady)
    workers = max_overlap(scenario_runs) or 1
    wall = span_s if wall_s is None else wall_s
    return {
        "wall_s": wall, "wall_source": "the store's span" if wall_s is None else "the command",
        "span_s": span_s, "idle_s": span_s - covered(scenario_runs) / 1000,
        "steady_s": steady_s, "wall_over_steady": wall / steady_s,
        "executions_at_once": workers,
        "wall_over_steady_per_worker": wall * workers / steady_s,
        "compile_s": sum(compiles), "executions": len(scenario_runs),
        "trials": len(trials), "stacks": len(groups),
        "largest_stack": max(len(g) for g in groups),
        "stack_size_tag_mismatches": sum(
            any(r.data.tags.get(Tag.STACK_SIZE, str(len(g))) != str(len(g)) for r in g)
            for g in groups),
        "trials_without_train_time": sum("train_time_s" not in r.data.metrics
                                         for r in trials),
        "trials_without_compile_split": sum("compile_time_s" not in r.data.metrics
                                            for r in trials),
        "range_tests": sum(r.data.tags[Tag.KIND] == "lr_range_test" for r in runs),
    }
