"""The synthetic MLflow store behind the report tests (``tests/test_report_*.py``).

The store is filled through ``MlflowClient`` directly (not through ``lrstudy.report``), with
fixed values whose aggregates are known in closed form. Each test module that imports
``store`` builds it once (a module fixture): keep such a module on one pytest-xdist worker.
"""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from scipy import stats

from lrstudy import report
from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Tag

STUDY = "synth"
EPOCHS = 4
STEPS_PER_EPOCH = 2
T975_2 = stats.t.ppf(0.975, 2)


def _log(client, exp_id, tags, params=None, metrics=(), status="FINISHED"):
    run_id = client.create_run(exp_id, tags=tags).info.run_id
    entities = [Metric(key, float(value), 1_000 + step, step) for key, value, step in metrics]
    client.log_batch(run_id, metrics=entities,
                     params=[Param(k, str(v)) for k, v in (params or {}).items()])
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id


def _trial(client, exp_id, parents, scenario, family, seed, *, lr, optimizer="adam",
           baseline=None, diverged=False, status="FINISHED", val_loss=(), val_accuracy=(),
           final=None, study=STUDY):
    tags = {Tag.STUDY: study, Tag.SCENARIO: scenario, Tag.FAMILY: family,
            Tag.KIND: "trial", Tag.SEED: str(seed),
            Tag.RUN_KEY: f"{scenario}-{seed}", Tag.DIVERGED: str(diverged).lower()}
    if baseline:
        tags[Tag.BASELINE] = baseline
    if scenario in parents:
        tags["mlflow.parentRunId"] = parents[scenario]
    params = {"optimizer": optimizer, "learning_rate": lr, "schedule": "constant",
              "model": "mlp128", "dataset": "fashion_mnist", "train_size": 1000,
              "epochs": EPOCHS, "batch_size": 64, "seed": seed}
    metrics = [("val_loss", v, e) for e, v in enumerate(val_loss)]
    metrics += [("val_accuracy", v, e) for e, v in enumerate(val_accuracy)]
    steps = STEPS_PER_EPOCH * len(val_loss)
    metrics += [("step_learning_rate", lr * (1 + s), s) for s in range(steps)]
    metrics += [(k, v, 0) for k, v in (final or {}).items()]
    return _log(client, exp_id, tags, params, metrics, status)


def _healthy(seed, test_accuracy, test_loss, epochs_to_target=None, time_to_target=None):
    final = {"test_accuracy": test_accuracy, "test_loss": test_loss,
             "train_time_s": 30.0 + seed}
    if epochs_to_target is not None:
        final["epochs_to_target"] = epochs_to_target
        final["time_to_target_s"] = time_to_target
    return {
        "val_loss": [1.0, 0.6, 0.5 + 0.01 * seed, 0.7],
        "val_accuracy": [0.5, 0.7, 0.78, 0.80 + 0.01 * seed],
        "final": final,
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Scenarios (family, seeds):

    * fixed-baseline (fixed, 3 seeds): test accuracy 0.80/0.82/0.84, the family baseline;
    * fixed-large (fixed, 3 healthy seeds 0.70/0.71/0.75, 1 diverged, 1 FAILED, 1 RUNNING);
    * fixed-too-large (fixed, 2 seeds, both diverged);
    * warmup-linear (warmup, 1 seed, 0.90, no baseline);
    plus the scenario parent runs and one LR range test.
    """
    tmp = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = tracking.experiment_id(STUDY, uri, client)
    names = ["fixed-baseline", "fixed-large", "fixed-too-large", "warmup-linear"]
    parents = {n: _log(client, exp_id, {Tag.KIND: "scenario", Tag.SCENARIO: n,
                                        Tag.STUDY: STUDY}) for n in names}
    ids = {}
    base = {"baseline": "fixed-baseline"}
    for seed, (acc, loss, ett, ttt) in enumerate([(0.80, 0.50, 2, 10.0), (0.82, 0.45, 3, 20.0),
                                                  (0.84, 0.40, None, None)]):
        ids["fixed-baseline", seed] = _trial(client, exp_id, parents, "fixed-baseline", "fixed",
                                             seed, lr=1e-3, **base,
                                             **_healthy(seed, acc, loss, ett, ttt))
    for seed, acc in enumerate([0.70, 0.71, 0.75]):
        ids["fixed-large", seed] = _trial(client, exp_id, parents, "fixed-large", "fixed", seed,
                                          lr=1e-2, **base, **_healthy(seed, acc, 0.9))
    ids["fixed-large", 3] = _trial(client, exp_id, parents, "fixed-large", "fixed", 3, lr=1e-2,
                                   diverged=True, val_loss=[1.0, 5.0],
                                   val_accuracy=[0.3, 0.1], **base)
    ids["fixed-large", 4] = _trial(client, exp_id, parents, "fixed-large", "fixed", 4, lr=1e-2,
                                   status="FAILED", **base, **_healthy(0, 0.99, 0.01))
    ids["fixed-large", 5] = _trial(client, exp_id, parents, "fixed-large", "fixed", 5, lr=1e-2,
                                   status="RUNNING", **base, **_healthy(0, 0.99, 0.01))
    for seed in range(2):
        ids["fixed-too-large", seed] = _trial(
            client, exp_id, parents, "fixed-too-large", "fixed", seed, lr=0.5, **base,
            diverged=True, val_loss=[3.0], val_accuracy=[0.1])
    ids["warmup-linear", 0] = _trial(client, exp_id, parents, "warmup-linear", "warmup", 0,
                                     lr=5e-3, **_healthy(0, 0.90, 0.30, 1, 5.0))
    lrs = np.geomspace(1e-6, 1.0, 10)
    finder_metrics = [(k, v, i) for i, lr in enumerate(lrs)
                      for k, v in (("finder_lr", lr), ("finder_loss", 2.0 - i / 10),
                                   ("finder_loss_smoothed", 2.1 - i / 10))]
    finder_metrics += [("suggestion_steepest", 1e-3, 0), ("suggestion_valley", 1e-2, 0),
                       ("suggested_lr", 1e-2, 0)]
    ids["finder"] = _log(client, exp_id,
                         {Tag.KIND: "lr_range_test", Tag.SCENARIO: "finder",
                          Tag.FAMILY: "finder", Tag.STUDY: STUDY},
                         {"model": "mlp128", "optimizer": "adam", "start_lr": 1e-6,
                          "end_lr": 1.0, "num_it": 10, "rule": "valley"}, finder_metrics)
    trials = report.load_trials(STUDY, uri)
    return {"uri": uri, "client": client, "exp_id": exp_id, "ids": ids, "trials": trials,
            "table": report.benchmark_table(trials), "parents": parents, "tmp": tmp}


def _row(table, scenario):
    rows = table[table["scenario"] == scenario]
    assert len(rows) == 1
    return rows.iloc[0]
