"""Trials into a real MLflow store, read back: the tracking contract, exact per-step LRs under
the fast path (many steps per execution), per-epoch schedulers, plateau, divergence,
effective step size, determinism, resume. Small synthetic data throughout."""

from __future__ import annotations

import hashlib
import math
import os
import warnings

import numpy as np
import pytest

from lrstudy.data import order as batches
from lrstudy.execution import scenario_run, trial_runs
from lrstudy.spec import resolve
from lrstudy.spec import study as scenarios
from lrstudy.tracking import store as tracking
from lrstudy.training import fitting


def history(client, run_id, key):
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def run(write_study, store, name, seed=0, **study_kw):
    path = write_study(**study_kw)
    study = scenarios.load_study(str(path))
    sc = study.scenarios[name]
    res = trial_runs.run_trial(study.name, sc, seed, tracking_uri=store)
    return res, sc, tracking.client(store)


def test_trial_follows_the_tracking_contract(write_study, store):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res, sc, client = run(write_study, store, "fixed-baseline")
    shown = [f"{w.category.__name__}: {w.message}" for w in caught  # what a user sees
             if "keras" in w.filename and not issubclass(w.category, DeprecationWarning)]
    assert not shown  # e.g. "shuffle=True was passed, but will be ignored"
    r = client.get_run(res["run_id"])
    assert r.info.status == "FINISHED"
    tags = r.data.tags
    assert tags["lrstudy.study"] == "tiny" and tags["lrstudy.scenario"] == "fixed-baseline"
    assert tags["lrstudy.family"] == "fixed" and tags["lrstudy.kind"] == "trial"
    assert tags["lrstudy.seed"] == "0" and tags["lrstudy.diverged"] == "false"
    assert tags["lrstudy.run_key"] == tracking.run_key(sc.key_config(), 0)
    p = r.data.params
    assert (p["optimizer"], p["model"], p["dataset"], p["schedule"]) == (
        "adam", "mlp128", "synthetic", "constant")
    assert float(p["learning_rate"]) == 0.001 and p["epochs"] == "3" and p["batch_size"] == "32"
    assert p["train_size"] == str(sc.train_size) and p["seed"] == "0" and "tensorflow" in p
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                "epoch_time_s", "effective_lr_p50"):
        assert sorted(history(client, res["run_id"], key)) == [0, 1, 2], key
    steps = sorted(history(client, res["run_id"], "step_loss"))
    assert steps == list(range(3 * sc.steps_per_epoch))  # every step, none lost
    for key in ("test_loss", "test_accuracy", "train_time_s"):
        assert key in r.data.metrics
    arts = {a.path for a in client.list_artifacts(res["run_id"])}
    assert {"config.json", "curves.png", "model_summary.txt"} <= arts


def test_validation_metrics_sit_at_their_epoch(write_study, store):
    res, sc, client = run(write_study, store, "fixed-baseline")
    val = history(client, res["run_id"], "val_accuracy")
    points = dict(res["points"]["val_accuracy"])
    assert val == points and sorted(val) == [0, 1, 2]


def test_per_step_lr_is_the_schedule_under_many_steps_per_execution(write_study, store):
    # warmup-cosine is a per-step schedule inside the graph; 4 steps per execution
    res, sc, client = run(write_study, store, "warmup-cosine",
                          scenarios='["warmup-cosine"]', epochs=3, spe=4)
    lrs = history(client, res["run_id"], "step_learning_rate")
    total = 3 * sc.steps_per_epoch
    assert sorted(lrs) == list(range(total))
    expected = resolve.build_schedule(sc).curve(sc.steps_per_epoch, 3)
    got = np.array([lrs[i] for i in range(total)])
    # float32 round-off, relative, or of the peak where the cosine's last steps cancel digits
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7 * expected.max())
    # closed form at chosen steps: linear warm-up from 1e-4 to 1e-2 over 10% of the steps
    warm = round(0.1 * total)
    assert got[0] == pytest.approx(1e-4, rel=1e-5)
    assert got[warm] == pytest.approx(1e-2, rel=1e-5)
    assert got[warm // 2] == pytest.approx(1e-4 + (1e-2 - 1e-4) * (warm // 2) / warm, rel=1e-4)


def test_per_epoch_scheduler_stays_per_epoch(write_study, store):
    res, sc, client = run(write_study, store, "decay-step", scenarios='["decay-step"]',
                          epochs=4, spe=4)
    lrs = history(client, res["run_id"], "step_learning_rate")
    spe = sc.steps_per_epoch
    fn = resolve.build_schedule(sc).fn
    for epoch in range(4):
        within = [lrs[epoch * spe + i] for i in range(spe)]
        assert within == pytest.approx([float(fn(epoch))] * spe, rel=1e-6), epoch
    epoch_lr = history(client, res["run_id"], "learning_rate")
    assert [round(epoch_lr[e], 8) for e in range(4)] == [round(float(fn(e)), 8) for e in range(4)]


def test_plateau_lowers_the_lr_at_epoch_boundaries(write_study, store):
    extra = """
    [scenario.plateau-test]
    family = "plateau"
    optimizer = "sgd"
    learning_rate = 1e-6
    plateau = { monitor = "val_loss", factor = 0.5, patience = 1, min_delta = 1.0, min_lr = 1e-9 }
    """
    res, sc, client = run(write_study, store, "plateau-test", scenarios='["plateau-test"]',
                          epochs=4, spe=4, extra=extra)
    epoch_lr = history(client, res["run_id"], "learning_rate")
    # min_delta 1.0: after the first epoch (always a "best") nothing improves, so the LR
    # halves at the end of every later epoch
    assert [epoch_lr[e] for e in range(4)] == pytest.approx([1e-6, 1e-6, 5e-7, 2.5e-7])
    lrs = history(client, res["run_id"], "step_learning_rate")
    spe = sc.steps_per_epoch
    assert lrs[2 * spe - 1] == pytest.approx(1e-6) and lrs[2 * spe] == pytest.approx(5e-7)


def test_forced_divergence_is_a_finished_result(write_study, store):
    extra = """
    [scenario.boom]
    family = "fixed"
    optimizer = "sgd"
    learning_rate = 1000.0
    """
    res, sc, client = run(write_study, store, "boom", scenarios='["boom"]', epochs=3,
                          extra=extra)
    r = client.get_run(res["run_id"])
    assert res["status"] == "diverged"
    assert r.info.status == "FINISHED" and r.data.tags["lrstudy.diverged"] == "true"
    losses = history(client, res["run_id"], "step_loss")
    assert losses and all(math.isfinite(v) for v in losses.values())
    assert max(losses) < 3 * sc.steps_per_epoch - 1  # stopped early


def test_sgd_effective_step_size_equals_its_lr(write_study, store):
    res, sc, client = run(write_study, store, "fixed-sgd", scenarios='["fixed-sgd"]', epochs=2)
    for q in ("p10", "p50", "p90"):
        values = history(client, res["run_id"], f"effective_lr_{q}")
        # float32 weights round each update by up to half an ulp: 0.5% is that noise
        assert list(values.values()) == pytest.approx([0.01, 0.01], rel=5e-3), q


def test_same_seed_same_metrics_other_seed_differs(write_study, store):
    path = write_study(epochs=2)
    study = scenarios.load_study(str(path))
    sc = study.scenarios["fixed-baseline"]
    sinks = []
    for seed in (0, 0, 1):
        from lrstudy.tracking.metric_sink import MetricSink

        sink = MetricSink()
        fitting.fit_scenario(sc, seed, sink)
        sinks.append({k: sink.points[k] for k in ("loss", "val_loss", "val_accuracy")})
    assert sinks[0] == sinks[1]
    assert sinks[0]["loss"] != sinks[2]["loss"]


def test_a_finished_trial_is_skipped_and_claims_are_exclusive(write_study, store):
    res, sc, client = run(write_study, store, "fixed-baseline", epochs=1)
    again = trial_runs.run_trial("tiny", sc, 0, tracking_uri=store)
    assert again["status"] == "skipped" and again["run_id"] == res["run_id"]
    # two contenders for one new key: exactly one owns it
    exp = tracking.experiment_id("tiny", store, client)
    key = tracking.run_key(sc.key_config(), 7)
    tags = tracking.run_tags("trial", "tiny", sc, seed=7, run_key=key)
    a = client.create_run(exp, tags=tags).info.run_id
    # the other contender is another live process (a run of this one's would be a ghost)
    b = client.create_run(exp, tags={**tags, "lrstudy.pid": str(os.getppid())}).info.run_id
    assert [tracking.claim(client, exp, key, a), tracking.claim(client, exp, key, b)] == [
        True, False]


def test_orphaned_running_trials_are_marked_killed(write_study, store):
    path = write_study()
    sc = scenarios.load_study(str(path)).scenarios["fixed-baseline"]
    client = tracking.client(store)
    exp = tracking.experiment_id("tiny", store, client)
    tags = {**tracking.run_tags("trial", "tiny", sc, seed=0, run_key="k"),
            "lrstudy.pid": "999999999"}
    dead = client.create_run(exp, tags=tags).info.run_id
    alive = client.create_run(exp, tags=tracking.run_tags("trial", "tiny", sc, seed=1,
                                                          run_key="k1")).info.run_id
    assert [r.info.run_id for r in tracking.reap(client, exp)] == [dead]
    assert client.get_run(dead).info.status == "KILLED"
    assert client.get_run(alive).info.status == "RUNNING"


def test_from_finder_scenarios_take_the_median_of_three_range_tests(write_study, store):
    """Three range tests per set-up (seeds 0, 1, 2), shared by the scenarios of that set-up;
    each takes the median (log space) of its own rule's suggestions; a one-cycle policy that
    cycles its momentum gets range tests at the momentum it has at its peak."""
    extra = """
    [scenario.sgd-from-finder-steepest]
    family = "finder"
    optimizer = "sgd"
    learning_rate = "from_finder"
    finder = { rule = "steepest" }
    """
    path = write_study(scenarios='["cyclical-from-finder", "sgd-from-finder-steepest", '
                                 '"one-cycle-from-finder"]', epochs=2, extra=extra)
    results = {name: scenario_run.run_scenario(str(path), name, 1, tracking_uri=store)[0]
               for name in ("cyclical-from-finder", "sgd-from-finder-steepest",
                            "one-cycle-from-finder")}
    client = tracking.client(store)
    exp = tracking.experiment_id("tiny", store, client)
    finders = client.search_runs([exp], "tags.`lrstudy.kind` = 'lr_range_test'")
    by_setup: dict[str, list] = {}
    for run in finders:
        by_setup.setdefault(run.data.tags["lrstudy.finder_key"], []).append(run)
    assert sorted(len(v) for v in by_setup.values()) == [3, 3]  # plain SGD; SGD at 0.85
    for runs in by_setup.values():
        assert sorted(int(r.data.params["seed"]) for r in runs) == [0, 1, 2]

    def median(runs, rule):
        return 10 ** float(np.median([math.log10(r.data.metrics[f"suggestion_{rule}"])
                                      for r in runs]))

    plain = next(v for v in by_setup.values() if any(
        r.data.tags["lrstudy.scenario"] == "cyclical-from-finder" for r in v))
    p = client.get_run(results["cyclical-from-finder"]["run_id"]).data.params
    assert float(p["schedule.max_lr"]) == pytest.approx(median(plain, "valley"))
    assert float(p["schedule.base"]) == pytest.approx(median(plain, "valley") / 10)
    p = client.get_run(results["sgd-from-finder-steepest"]["run_id"]).data.params
    assert float(p["learning_rate"]) == pytest.approx(median(plain, "steepest"))
    lrs = history(client, results["sgd-from-finder-steepest"]["run_id"], "step_learning_rate")
    assert set(np.round(list(lrs.values()), 12)) == {round(median(plain, "steepest"), 12)}


def test_fits_after_a_range_test_keep_xla(store):
    """The range test wants op determinism; it must not leak into later fits, which Keras
    would then run without XLA (it only warns)."""
    import keras
    from tensorflow.python.framework import config

    from lrstudy.execution import range_tests as finder_runs

    setup = {"model": "mlp128", "optimizer": "sgd", "optimizer_args": {}, "dataset": "synthetic",
             "train_size": 0, "val_size": 200, "batch_size": 32}
    assert not config.is_op_determinism_enabled()
    finder_runs.run_finder("tiny", setup, num_it=20, tracking_uri=store)
    assert not config.is_op_determinism_enabled()
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    assert model.jit_compile is True


CHANCE_STUDY = """
description = "Adam at 0.5 on a few hundred Fashion-MNIST images: stuck at chance"
seeds = 1
scenarios = ["adam-too-large"]

[budget]
model = "mlp128"
dataset = "fashion_mnist"
train_size = 512
val_size = 1000
batch_size = 32
epochs = 4
steps_per_execution = 4
jit_compile = false

[scenario.adam-too-large]
family = "fixed"
optimizer = "adam"
learning_rate = 0.5
"""


def test_a_run_stuck_at_chance_is_a_diverged_finished_result(tmp_path, store):
    """Its loss stays finite (no early stop), its accuracy sits at 10%: judged diverged at
    the end, with its reason, and still evaluated on the test set (Fashion-MNIST here: the
    synthetic data's random labels keep every model near chance on validation)."""
    path = tmp_path / "chance.toml"
    path.write_text(CHANCE_STUDY)
    study = scenarios.load_study(str(path))
    sc = study.scenarios["adam-too-large"]
    res = trial_runs.run_trial(study.name, sc, 0, tracking_uri=store)
    client = tracking.client(store)
    r = client.get_run(res["run_id"])
    assert res["status"] == "diverged" and r.info.status == "FINISHED"
    assert r.data.tags["lrstudy.diverged"] == "true"
    assert r.data.tags["lrstudy.diverged_reason"] == "chance"
    losses = history(client, res["run_id"], "step_loss")
    assert sorted(losses) == list(range(4 * sc.steps_per_epoch))  # trained to the end
    assert all(math.isfinite(v) for v in losses.values())
    assert abs(r.data.metrics["test_accuracy"] - 0.1) <= 0.02  # evaluated: at chance


def test_compile_time_is_left_out_of_the_training_times(write_study):
    import statistics

    from lrstudy.tracking.metric_sink import MetricSink

    path = write_study(epochs=4, spe=4)
    path.write_text(path.read_text().replace("jit_compile = false", "jit_compile = true")
                    .replace("batch_size = 32", "batch_size = 16"))
    sc = scenarios.load_study(str(path)).scenarios["fixed-baseline"]
    sink = MetricSink()
    out = fitting.fit_scenario(sc, 0, sink)
    assert out["model"].jit_compile is True and out["diverged"] is False
    times = dict(sink.points["epoch_time_s"])
    assert sorted(times) == [0, 1, 2, 3]
    assert sink.last("compile_time_s") > 0
    assert sink.last("train_time_s") == pytest.approx(sum(times.values()), rel=1e-9)
    # what is left of the first epoch is a steady one (a loose bound: a shared machine)
    assert times[0] < 2.0 * statistics.median(times[e] for e in (1, 2, 3))


def test_seed_i_gives_every_strategy_the_same_start(write_study):
    """The paired design the verdict relies on: within a budget, seed i gives every strategy
    the same initial weights and batch order, and the digest of the order is taken from what
    the training pipeline really feeds (tests/test_batches.py: over every epoch, in both
    engines)."""
    path = write_study(scenarios='["fixed-baseline", "fixed-sgd", "warmup-cosine"]', epochs=1)
    study = scenarios.load_study(str(path))
    prepared = {(name, seed): fitting.prepare_fit(sc, seed, None)
                for name, sc in study.scenarios.items() for seed in (0, 1)}
    for seed in (0, 1):
        digests = {name: p.pairing for (name, s), p in prepared.items() if s == seed}
        assert len({tuple(sorted(d.items())) for d in digests.values()}) == 1, digests
    assert prepared["fixed-sgd", 0].pairing != prepared["fixed-sgd", 1].pairing
    assert "batch_order_sha" not in prepared["fixed-sgd", 0].pairing  # known once trained
    # the digest is of the pipeline's first epoch: recompute it from the labels it yields
    p = prepared["fixed-sgd", 1]
    fresh = fitting.prepare_fit(study.scenarios["fixed-sgd"], 1, None)  # untouched pipeline
    labels = np.concatenate([y.numpy() for _, y in fresh.data])
    ds = fresh.dataset
    (order, count), = next(iter(batches.batch_indices(len(ds.y_train), len(ds.y_train), [1])))
    assert int(count) == len(ds.y_train)
    np.testing.assert_array_equal(labels, ds.y_train[order.numpy()])
    assert sorted(order.numpy()) == list(range(len(ds.y_train)))
    batch = fresh.scenario.budget["batch_size"]  # Keras is told an epoch's length
    assert int(fresh.data.cardinality()) == -(-len(ds.y_train) // batch)
    assert fresh.order.epochs == 1  # the epoch just read, hashed as it was cut into batches
    assert fresh.order.hexdigest() == hashlib.sha256(order.numpy().tobytes()).hexdigest()[:16]
    with pytest.raises(RuntimeError, match="no epoch's order was observed"):
        p.order.hexdigest()  # p's pipeline was never read
