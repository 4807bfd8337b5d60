"""What is left to do of a study: its scenarios that train different things
(:func:`distinct`), and per scenario and phase the run keys still to train, the finals that
wait for their tuning, and what another live process runs (:func:`plan`), read from the store
after its dead runs are marked KILLED.
"""

from __future__ import annotations

import dataclasses
import json

from lrstudy.spec import competition
from lrstudy.tracking import store as tracking


@dataclasses.dataclass
class Plan:
    todo: list          # (scenario, phase, run keys still to train)
    waiting: list       # tuned scenarios whose finals wait for their tuning to finish
    total: int          # trials in the study (finals still to be chosen counted too)
    skipped: int        # FINISHED already
    elsewhere: dict     # run key -> the live RUNNING run another process owns
    reaped: int         # dead RUNNING runs marked KILLED now


def distinct(selected: list) -> tuple[list, dict]:
    """The scenarios that train different things, and ``{duplicate: first}`` for those whose
    canonical config equals an earlier one's (one trial, reported under the first name)."""
    first, kept, merged = {}, [], {}
    for sc in selected:
        canonical = json.dumps(sc.key_config(), sort_keys=True, default=str)
        if canonical in first:
            merged[sc.name] = first[canonical]
        else:
            first[canonical] = sc.name
            kept.append(sc)
    return kept, merged


def plan(selected: list, seeds: int, competition_, mlflow_client, exp_id: str) -> Plan:
    """What is left to do: dead runs are marked KILLED first, so their trials run again."""
    reaped = tracking.reap(mlflow_client, exp_id)
    existing = tracking.trials_by_key(mlflow_client, exp_id)
    finished = {k for k, runs in existing.items()
                if any(r.info.status == "FINISHED" for r in runs)}
    running = {k: live[0] for k, runs in existing.items() if k not in finished
               and (live := [r for r in runs if r.info.status == "RUNNING"])}
    todo, waiting, mine = [], [], set()
    for sc in selected:
        tuned = None  # the tuning as the store has it (its extensions included)
        for phase in competition.phases_to_run(competition_, sc, ""):
            if phase in ("tune", "final") and competition_.role(sc) == "tuned":
                tuned = tuned or competition.tuning(competition_, sc, mlflow_client, exp_id)
            if phase == "final" and tuned is not None and tuned.winner is None:
                waiting.append(sc)
                continue
            keys = [t.key for t in competition.trials(
                competition_, sc, phase, seeds, tuned and tuned.winner,
                points=tuned and list(tuned.points))]
            mine.update(keys)
            pending = [k for k in keys if k not in finished and k not in running]
            if pending:
                todo.append((sc, phase, pending))
    return Plan(todo=todo, waiting=waiting, total=len(mine) + len(waiting) * seeds,
                skipped=len(mine & finished),
                elsewhere={k: r for k, r in running.items() if k in mine},
                reaped=len(reaped))
