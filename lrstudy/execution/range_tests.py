"""The LR range test as a tracked run, and the bounds it gives the *-from-finder scenarios.

An ``lr_range_test`` run records the sweep (``finder_lr``, ``finder_loss``,
``finder_loss_smoothed`` per step), every rule's suggestion (``suggestion_<rule>``), the
chosen one (``suggested_lr``) and Smith's bounds (``finder_base_lr``, ``finder_max_lr``). Runs
are keyed by what the test depends on (model, optimizer, data, batch) in the tag
``lrstudy.finder_key``, so a scenario finds the latest test of its own set-up.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

from lrstudy.spec.resolve import FINDER_DEFAULTS, finder_args
from lrstudy.tracking import run_life
from lrstudy.tracking import store as tracking
from lrstudy.tracking.store import TAG


def finder_key(setup: dict) -> str:
    return hashlib.sha256(json.dumps(setup, sort_keys=True).encode()).hexdigest()[:16]


def setup_of(scenario) -> dict:
    """What an LR range test for ``scenario`` depends on: it runs with the optimizer and
    momentum the scenario trains with. A one-cycle policy that cycles its momentum is at its
    lowest momentum (``momentum_low``, 0.85) when the LR peaks, where the test's suggestion is
    used: the test runs at that momentum."""
    b = scenario.budget
    optimizer_args = dict(scenario.optimizer_args)
    schedule = scenario.schedule or {}
    if schedule.get("cycle_momentum") and scenario.optimizer == "sgd":
        optimizer_args["momentum"] = float(schedule.get("momentum_low", 0.85))
    sweep = finder_args(scenario)
    return {"model": b["model"], "optimizer": scenario.optimizer,
            "optimizer_args": optimizer_args, "dataset": b["dataset"],
            "train_size": b["train_size"], "val_size": b["val_size"],
            **({"split": b["split"]} if b["split"] != "seeded" else {}),  # keys stay stable
            "batch_size": b["batch_size"],
            "sweep": [sweep["start_lr"], sweep["end_lr"], sweep["num_it"]]}


def run_finder(study: str, setup: dict, *, start_lr=FINDER_DEFAULTS["start_lr"],
               end_lr=FINDER_DEFAULTS["end_lr"], num_it=FINDER_DEFAULTS["num_it"],
               rule=FINDER_DEFAULTS["rule"], seed=0, scenario="", tracking_uri=None,
               parent_run_id=None, mlflow_client=None):
    """Run an LR range test for ``setup`` and record it; returns ``(FinderResult, run_id)``."""
    from matplotlib.figure import Figure
    from mlflow.entities import Metric, Param

    from lrstudy import determinism, models, tasks, tfquiet
    from lrstudy.data import datasets as data
    from lrstudy.lr import optimizers
    from lrstudy.lr import range_test as finder

    keras = tfquiet.import_tensorflow("keras")
    mlflow_client = mlflow_client or tracking.client(tracking_uri)
    exp_id = tracking.experiment_id(study, tracking_uri, mlflow_client)
    tags = tracking.run_tags(
        "lr_range_test", study, scenario or "lr-range-test", parent=parent_run_id,
        name=f"lr-range-test-{setup['model']}-{setup['optimizer']}", family="finder",
        finder_key=finder_key(setup))
    with run_life.open_run(mlflow_client, exp_id, tags) as run, determinism.op_determinism():
        run_id = run.id
        determinism.seed_everything(seed)
        ds = data.load_cached(setup["dataset"], setup["train_size"], setup["val_size"],
                              split=setup.get("split", "seeded"), seed=seed)
        model, from_logits = models.build(setup["model"], ds.input_shape, ds.num_classes,
                                          ds.task)
        loss, _ = tasks.get(ds.task).compile_args(keras, from_logits)  # MSE for a regression
        model.compile(optimizer=optimizers.make(setup["optimizer"], start_lr,
                                                **setup["optimizer_args"]), loss=loss)
        result = finder.lr_range_test(model, ds.x_train, ds.y_train,
                                      batch_size=setup["batch_size"], start_lr=start_lr,
                                      end_lr=end_lr, num_it=num_it, rule=rule, seed=seed)
        base, top = result.bounds()
        params = {**{k: v for k, v in setup.items() if k != "optimizer_args"},
                  "start_lr": start_lr, "end_lr": end_lr, "num_it": num_it, "rule": rule,
                  "seed": seed, "stop_reason": result.stop_reason}
        metrics = []
        for i, (lr, loss, smooth) in enumerate(zip(result.lrs, result.losses, result.smoothed)):
            for key, value in (("finder_lr", lr), ("finder_loss", loss),
                               ("finder_loss_smoothed", smooth)):
                if np_finite(value):
                    metrics.append(Metric(key, float(value), 0, i))
        finals = {f"suggestion_{k}": v for k, v in result.suggestions.items() if v is not None}
        finals.update(suggested_lr=result.suggestion, finder_base_lr=base, finder_max_lr=top)
        metrics += [Metric(k, float(v), 0, 0) for k, v in finals.items() if v is not None]
        for i in range(0, len(metrics), 1000):
            mlflow_client.log_batch(run_id, metrics=metrics[i:i + 1000])
        mlflow_client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "finder.json").write_text(json.dumps(result.to_dict(), indent=1))
            fig = Figure(figsize=(7, 4))
            result.plot(ax=fig.subplots())
            fig.savefig(Path(tmp) / "lr_range_test.png", dpi=80)
            mlflow_client.log_artifacts(run_id, tmp)
    return result, run_id


def run_finder_from_parameters(*, study, scenario, model, optimizer, dataset, train_size,
                               val_size, batch_size, start_lr, end_lr, num_it, rule, seed,
                               tracking_uri):
    """What ``notebooks/lr_range_test.ipynb`` runs: check the set-up, then :func:`run_finder`."""
    from lrstudy import models
    from lrstudy.data import datasets as data
    from lrstudy.lr import optimizers
    from lrstudy.lr import suggestion_rules

    models.check(model)
    optimizers.check(optimizer)
    data.check(dataset, train_size=train_size or None, val_size=val_size)
    if rule not in suggestion_rules.RULES:
        raise ValueError(f"unknown rule {rule!r}; known: {', '.join(suggestion_rules.RULES)}")
    uri = tracking.check_store(tracking_uri or None)
    setup = {"model": model, "optimizer": optimizer, "optimizer_args": {}, "dataset": dataset,
             "train_size": train_size, "val_size": val_size, "batch_size": batch_size}
    return run_finder(study, setup, start_lr=start_lr, end_lr=end_lr, num_it=num_it,
                      rule=rule, seed=seed, scenario=scenario, tracking_uri=uri)


def suggestions_table(result):
    """Every rule's suggestion, the chosen one marked."""
    import pandas as pd

    return pd.DataFrame(
        [{"rule": k, "suggested_lr": v, "chosen": k == result.rule}
         for k, v in result.suggestions.items()]).set_index("rule")


def np_finite(value) -> bool:
    import math

    return value is not None and math.isfinite(float(value))


FINDER_SEEDS = 3
"""Range tests per set-up: a scenario takes the median (in log space) of its rule's suggestions
over them, and the spread of each rule over seeds is on record (the summary reports it)."""


def range_tests(study: str, setup: dict, mlflow_client) -> dict[int, object]:
    """The latest FINISHED range test of ``setup`` for each seed that has one."""
    exp_id = tracking.experiment_id(study, None, mlflow_client)
    runs = tracking.search(
        mlflow_client, [exp_id],
        f"tags.`{TAG}finder_key` = '{finder_key(setup)}' and attributes.status = 'FINISHED'")
    out: dict[int, object] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):
        out[int(run.data.params.get("seed", 0))] = run
    return out


def bounds_for(study: str, scenario, *, tracking_uri=None, parent_run_id=None,
               mlflow_client=None, seeds: int = FINDER_SEEDS) -> tuple[float, float]:
    """The bounds of a *-from-finder scenario, ``(max_lr / 10, max_lr)``: ``max_lr`` is the
    median over the range tests of ``seeds`` seeds of its rule's suggestion (the missing tests
    are run now). A constant ``learning_rate = "from_finder"`` is that ``max_lr``."""
    import math
    import statistics

    mlflow_client = mlflow_client or tracking.client(tracking_uri)
    setup = setup_of(scenario)
    args = finder_args(scenario)
    done = range_tests(study, setup, mlflow_client)
    for seed in range(seeds):
        if seed not in done:
            print(f"{scenario.name}: LR range test of this set-up, seed {seed}", file=sys.stderr)
            run_finder(study, setup, scenario=scenario.name, tracking_uri=tracking_uri,
                       parent_run_id=parent_run_id, mlflow_client=mlflow_client,
                       **{**args, "seed": seed})
    done = range_tests(study, setup, mlflow_client)
    found = [done[s].data.metrics.get(f"suggestion_{args['rule']}") for s in range(seeds)]
    found = [v for v in found if v is not None and v > 0]
    if not found:
        raise ValueError(f"scenario {scenario.name!r}: the LR range tests of its set-up gave no "
                         f"suggestion by rule {args['rule']!r}; choose another rule")
    top = 10 ** statistics.median(math.log10(v) for v in found)
    return top / 10.0, top
