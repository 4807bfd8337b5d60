"""Stacking (lrstudy.stack): trials trained as one compiled program give what they give one by
one. Exactness on the warm-up budget (2,000 training images, 2 epochs, XLA), each copy's own
LR schedule, a diverging copy frozen while the others match, plateaus per copy."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from lrstudy import checks
from lrstudy.data import order as batches
from lrstudy.spec import lr_scale, resolve
from lrstudy.spec import study as scenarios
from lrstudy.tracking import metric_sink
from lrstudy.tracking import store as tracking
from lrstudy.training import fitting, keras_stack, stacking


def fit_alone(trials):
    out = []
    for sc, seed, test in trials:
        sink = metric_sink.MetricSink(None)
        outcome = fitting.fit_scenario(sc, seed, sink, evaluate_test=test, vectorize=False)
        out.append((sink, outcome))
    return out


def fit_stacked(trials):
    sinks = [metric_sink.MetricSink(None) for _ in trials]
    return list(zip(sinks, fitting.fit_stack(trials, sinks)))


def close(a, b, rel=1e-3):
    return len(a) == len(b) and all(s == t and math.isclose(x, y, rel_tol=rel)
                                    for (s, x), (t, y) in zip(a, b))


@pytest.fixture(scope="module")
def warmup():
    """warmup-cosine on the warm-up budget (seeds-original's [budget]: mlp128, batch 32, XLA),
    2,000 training images, 2 epochs: seeds 0 and 1, seed 0 at a third of the peak LR, and
    seed 2 at 10^5 times it (diverges), in one stack; the first and third also one by one."""
    # the warm-up tutorial had no validation split: these trials keep 10,000 images for one
    spec = scenarios.load_study("seeds-original", {"epochs": 2, "train_size": 2000,
                                                   "val_size": 10000})
    sc = spec.scenarios["warmup-cosine"]
    assert sc.budget["model"] == "mlp128" and sc.budget["batch_size"] == 32
    trials = [(sc, 0, True), (sc, 1, False), (lr_scale.scaled(sc, 1 / 3), 0, False),
              (lr_scale.scaled(sc, 1e5), 2, False)]
    return trials, fit_stacked(trials), fit_alone([trials[0], trials[2]])


def test_stacked_trials_match_their_runs_one_by_one(warmup):
    _, stacked, alone = warmup
    for (s_sink, s_out), (a_sink, a_out) in zip([stacked[0], stacked[2]], alone):
        for key in ("val_loss", "val_accuracy", "loss", "learning_rate"):
            assert close(s_sink.points[key], a_sink.points[key]), key
        assert len(s_sink.points["val_loss"]) == 2
        assert close(s_sink.points["step_loss"], a_sink.points["step_loss"], rel=1e-2)
        assert close(s_sink.points["effective_lr_p50"], a_sink.points["effective_lr_p50"])
        assert s_out["params"]["init_weights_sha"] == a_out["params"]["init_weights_sha"]
        assert not s_out["diverged"]
    assert math.isclose(stacked[0][1]["test_accuracy"], alone[0][1]["test_accuracy"],
                        rel_tol=1e-3)
    assert math.isnan(stacked[1][1]["test_accuracy"])  # a tuning trial: no test set
    assert not stacked[1][1]["diverged"] and len(stacked[1][0].points["val_loss"]) == 2


def test_each_copy_records_its_own_lr_schedule(warmup):
    trials, stacked, _ = warmup
    lrs = [dict(sink.points["step_learning_rate"]) for sink, _ in stacked[:3]]
    steps = sorted(lrs[0])
    assert len(steps) == 2 * 63 and len(set(lrs[0].values())) > 10  # warm-up and cosine
    for (sc, _, _), lr in zip(trials, lrs):
        schedule = resolve.build_schedule(sc)
        for step in steps:
            assert math.isclose(lr[step], float(schedule.keras_schedule()(step)), rel_tol=1e-5)
    assert all(math.isclose(lrs[2][s], lrs[0][s] / 3, rel_tol=1e-3) for s in steps[1:])


def test_a_diverging_copy_is_frozen_and_recorded(warmup):
    trials, stacked, alone = warmup
    sink, outcome = stacked[3]
    assert outcome["diverged"] and outcome["diverged_reason"] in ("nonfinite", "blow_up")
    assert outcome["logger"].diverged_step is not None
    # frozen at the end of the call where its loss blew up: no epoch after the first
    assert len(sink.points.get("val_loss", [])) <= 1
    assert len(stacked[0][0].points["val_loss"]) == 2  # the others went on (and matched)
    # left out of the train step from the next call on: its optimizer took no more steps
    steps = [int(out["model"].optimizer.iterations) for _, out in stacked]
    assert steps[:3] == [2 * trials[0][0].steps_per_epoch] * 3 and steps[3] < steps[0]


def test_a_padded_last_batch_keeps_its_examples_and_order():
    """The stack pads an epoch's last, smaller batch to the full size (one compiled shape):
    the real indices are those of the unpadded pipeline, in order, each batch says how many
    are real; only models of row-wise layers are padded; and Dropout's draw for the real rows
    is the draw of the smaller batch (so the warm-up fixture above, 2,000 images at batch 32,
    checks a padded last batch against its run one by one)."""
    import keras
    import numpy as np

    def cut(pad):
        return [(i.numpy(), int(n)) for (i, n), in batches.batch_indices(50, 16, [3], pad=pad)]

    padded, plain = cut(True), cut(False)
    assert [len(i) for i, _ in padded] == [16] * 4 and [n for _, n in padded] == [16, 16, 16, 2]
    assert [list(i[:n]) for i, n in padded] == [list(i) for i, _ in plain]
    assert sorted(np.concatenate([i for i, _ in plain])) == list(range(50))
    mlp = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dropout(.5)])
    norm = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    assert keras_stack.row_wise(mlp) and not keras_stack.row_wise(norm)
    ones = np.ones((32, 8), "float32")
    full = keras.random.dropout(ones, 0.5, seed=keras.random.SeedGenerator(7)).numpy()
    part = keras.random.dropout(ones[:5], 0.5, seed=keras.random.SeedGenerator(7)).numpy()
    assert np.array_equal(full[:5], part) and 0 < (part == 0).sum() < part.size


def test_each_copy_is_fed_its_trials_orders_a_new_one_each_epoch():
    """One pipeline feeds a stack: the orders it gives a seed are those its trial gets one by
    one (whichever seeds share the stack, and however many copies share the seed), new each
    epoch, and differ between seeds."""
    import numpy as np

    def epochs(seeds, copy, count=2):
        ds = batches.batch_indices(50, 16, seeds)
        return [np.concatenate([batch[copy][0].numpy() for batch in ds]) for _ in range(count)]

    alone = epochs([4], 0)
    assert all(np.array_equal(a, b) for a, b in zip(epochs([3, 4, 5], 1), alone))
    # copies of one seed (a tuning's grid points) share its draw: each gets the seed's orders
    shared = batches.batch_indices(50, 16, [4, 3, 4])
    for _ in range(2):
        one, _, other = (np.concatenate(o) for o in zip(*[[i.numpy() for i, _ in batch]
                                                         for batch in shared]))
        assert np.array_equal(one, other)
    assert not np.array_equal(alone[0], alone[1])
    assert not np.array_equal(epochs([3, 4, 5], 0)[0], alone[0])
    assert all(sorted(order) == list(range(50)) for order in alone)
    # Keras is told an epoch's length (else it warns that the input "ran out of data")
    assert [int(batches.batch_indices(50, 16, [3, 4], pad=pad).cardinality())
            for pad in (True, False)] == [4, 4]


def test_plateau_acts_per_copy_on_its_own_validation_loss(write_study):
    """ReduceLROnPlateau per copy: two copies whose validation losses plateau at different
    epochs get different LR curves, each the one it gets unstacked."""
    path = write_study(scenarios='["plateau"]', epochs=5)
    sc = scenarios.load_study(str(path)).scenarios["plateau"]
    sc = dataclasses.replace(sc, plateau={"monitor": "val_loss", "factor": 0.5, "patience": 0,
                                          "min_delta": 0.0, "min_lr": 0.0})
    trials = [(sc, 0, False), (lr_scale.scaled(sc, 30), 1, False)]
    stacked, alone = fit_stacked(trials), fit_alone(trials)
    curves = []
    for (s_sink, _), (a_sink, _) in zip(stacked, alone):
        assert close(s_sink.points["learning_rate"], a_sink.points["learning_rate"])
        assert close(s_sink.points["val_loss"], a_sink.points["val_loss"])
        curves.append([v / s_sink.points["learning_rate"][0][1]
                       for _, v in s_sink.points["learning_rate"]])
    assert curves[0] != curves[1]  # each copy's plateaus are its own
    assert min(curves[1]) < 1  # the unstable copy's LR was cut


def test_auto_size_fits_the_memory_it_is_given():
    spec = scenarios.load_study("seeds-original")
    sc = spec.scenarios["fixed-baseline"]
    per_copy = stacking.copy_bytes(sc, (28, 28), 10, 50_000)
    shared = stacking.shared_bytes((28, 28), 50_000)
    assert per_copy > 50_000 * 8 + 4 * 4 * (784 * 128 + 128 * 10)  # indices, weights, slots
    assert shared == 2 * 4 * 50_000 * 785 + stacking.RUNTIME_BYTES
    assert stacking.auto_size(sc, (28, 28), 10, 50_000,
                           available=int(2 * (shared + 2.5 * per_copy))) == 2
    assert stacking.auto_size(sc, (28, 28), 10, 50_000, available=shared) == 1
    assert stacking.auto_size(sc, (28, 28), 10, 50_000, available=10**15) == stacking.MAX_AUTO
    assert checks.stack("auto") == "auto" and checks.stack("3") == 3 == checks.stack(3)
    for bad in ("0", "-1", "many", True):
        with pytest.raises(ValueError, match="must be auto, off or a positive integer"):
            checks.stack(bad)


# ---- each copy its own trial in MLflow; a stack interrupted mid-way resumes per trial -------

DRIVER = """
import json, os, sys
from lrstudy.execution import scenario_run
from lrstudy.tracking import metric_sink
from lrstudy.training import fitting
from lrstudy.training import keras_stack
from lrstudy.training import stacking

study_path, uri = sys.argv[1], sys.argv[2]
scenario_run.run_scenario(study_path, "fixed-baseline", 2, tracking_uri=uri, stack="off")  # seeds 0, 1
os.environ["LRSTUDY_SIGNAL_AT"] = "epoch"
try:
    scenario_run.run_scenario(study_path, "fixed-baseline", 4, tracking_uri=uri, stack="4")
    interrupted = False
except KeyboardInterrupt:
    interrupted = True
os.environ.pop("LRSTUDY_SIGNAL_AT")
resumed = scenario_run.run_scenario(study_path, "fixed-baseline", 4, tracking_uri=uri, stack="auto")
print(json.dumps({"interrupted": interrupted, "resumed": [r["status"] for r in resumed]}))
"""


def test_a_stack_interrupted_mid_way_resumes_per_trial_each_a_full_trial(write_study, store):
    """Seeds 0 and 1 run alone; seeds 0-3 then run as a stack of 4 (0 and 1 are done: 2 and 3
    train) and a signal at the first epoch's end kills both; the resume (1 epoch each) trains them again as
    one stack, and every trial has the whole contract."""
    import subprocess
    import sys

    from conftest import ROOT
    from test_faults import assert_each_trial_finished_once, by_key, trials

    path = write_study(epochs=1)
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(path), store], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["interrupted"] and out["resumed"][:2] == ["skipped", "skipped"]
    assert_each_trial_finished_once(store, "tiny", 4)
    assert sorted(map(sorted, by_key(store, "tiny").values())) == sorted(
        [["FINISHED"]] * 2 + [["FINISHED", "KILLED"]] * 2)
    client = tracking.client(store)
    runs = {int(r.data.tags["lrstudy.seed"]): r for r in trials(store, "tiny")
            if r.info.status == "FINISHED"}
    assert {s: r.data.tags["lrstudy.stack_size"] for s, r in runs.items()} == {
        0: "1", 1: "1", 2: "2", 3: "2"}
    for seed, r in runs.items():
        assert r.data.params["seed"] == str(seed) and r.data.params["init_weights_sha"]
        assert set(r.data.metrics) >= {"val_loss", "val_accuracy", "test_accuracy",
                                       "effective_lr_p50", "train_time_s", "epoch_time_s"}
        steps = client.get_metric_history(r.info.run_id, "step_learning_rate")
        assert len(steps) == math.ceil(int(r.data.params["train_size"]) / 32)
        files = {f.path for f in client.list_artifacts(r.info.run_id)}
        assert {"config.json", "curves.png", "model_summary.txt"} <= files


# ---- which stacks vectorize (lrstudy.training.vector_stack), and the Keras fallbacks -----------------------

def _compiled(model_name, optimizer, loss=None, input_shape=(28, 28), y=None):
    import keras

    from lrstudy import models

    model, logits = models.build(model_name, input_shape, 10)
    model.compile(optimizer=optimizer,
                  loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
                  metrics=["accuracy"])
    model._symbolic_build(data_batch=(np.zeros((2, *input_shape), "float32"),
                                      np.zeros(2, "int64") if y is None else y))
    return model


def test_the_default_studys_stacks_vectorize_and_the_others_say_why_not():
    """Dense models with an element-wise optimizer vectorize (each copy's LR its own, cycled
    momentum included); anything that would mix the copies or that the stacked step does not
    compute falls back to the Keras stack, with the reason."""
    import keras

    from lrstudy.lr import optimizers
    from lrstudy.training import vector_stack as vstack

    def adam(lr=1e-3, **kw):
        return keras.optimizers.Adam(lr, **kw)

    ok = [([_compiled("mlp128", adam()), _compiled("mlp128", adam(3e-3))]),
          [_compiled("mlp512_200", optimizers.make("sgd", 0.1, momentum_fn=lambda it: 0.9))
           for _ in range(2)]]
    for models in ok:
        assert vstack.unsupported(models) is None
    refused = {
        "Dropout": [_compiled("mlp_dropout", adam())],
        "Conv2D": [_compiled("cnn", adam(), input_shape=(28, 28, 1))],
        "clipnorm": [_compiled("mlp128", adam(clipnorm=1.0))],
        "ScheduleFreeAdamW": [_compiled("mlp128", optimizers.make("schedule_free_adamw", 1e-3))],
        "optimizers differ": [_compiled("mlp128", adam()),
                              _compiled("mlp128", adam(beta_1=0.8))],
        "cross-entropy": [_compiled("mlp128", adam(), loss=keras.losses.MeanSquaredError(),
                                    y=np.zeros((2, 10), "float32"))],
    }
    for reason, models in refused.items():
        assert reason in (vstack.unsupported(models) or ""), reason


def _tiny(write_study, scenario="fixed-baseline", **overrides):
    path = write_study(scenarios=f'["{scenario}"]', epochs=2)
    return scenarios.load_study(str(path), overrides).scenarios[scenario]


def test_a_trial_alone_trains_vectorized_as_keras_fit_trains_it(write_study, monkeypatch):
    """fit_scenario trains a model that vectorizes as a stack of one, with the record Keras's
    fit gives it (one-cycle: a per-step LR and a cycled SGD momentum)."""
    from lrstudy.training import vector_stack as vstack

    sc = _tiny(write_study, "one-cycle")
    calls, epochs = [], vstack.VectorStack.epochs

    def counted(self, *args, **kwargs):  # a spy: the stacks that train, by size
        calls.append(self.n)
        yield from epochs(self, *args, **kwargs)

    monkeypatch.setattr(vstack.VectorStack, "epochs", counted)
    sink = metric_sink.MetricSink(None)
    vec = fitting.fit_scenario(sc, 0, sink)
    assert calls == [1]
    (ref_sink, ref), = fit_alone([(sc, 0, True)])
    assert calls == [1]  # vectorize=False: Keras's fit
    for key in ("val_loss", "val_accuracy", "loss", "learning_rate", "effective_lr_p50"):
        assert close(sink.points[key], ref_sink.points[key]), key
    assert close(sink.points["step_learning_rate"], ref_sink.points["step_learning_rate"],
                 rel=1e-5)
    assert close(sink.points["step_loss"], ref_sink.points["step_loss"], rel=1e-2)
    assert math.isclose(vec["test_accuracy"], ref["test_accuracy"], rel_tol=1e-3)
    assert vec["params"] == ref["params"]


def test_a_stack_that_does_not_vectorize_trains_as_keras_stack_and_matches(write_study):
    """Dropout is not vectorized: the copies train as a StackedModel, each with its own
    dropout draws, and give what they give one by one."""
    from lrstudy.training import vector_stack as vstack

    sc = _tiny(write_study, model="mlp_dropout")
    trials = [(sc, 0, True), (lr_scale.scaled(sc, 3), 1, False)]
    stacked, alone = fit_stacked(trials), fit_alone(trials)
    assert "Dropout" in vstack.unsupported([out["model"] for _, out in stacked])
    for (s_sink, _), (a_sink, _) in zip(stacked, alone):
        for key in ("val_loss", "loss", "learning_rate"):
            assert close(s_sink.points[key], a_sink.points[key]), key


VECTORIZED_OPTIMIZERS = {  # a catalogue scenario for each optimizer VectorStack trains
    "sgd": "fixed-sgd", "sgd+momentum": "fixed-sgd-momentum", "adamw": "fixed-adamw",
    "nadam": "adaptive-nadam", "adamax": "adaptive-adamax", "adagrad": "adaptive-adagrad",
    "adadelta": "adaptive-adadelta-default", "rmsprop": "adaptive-rmsprop"}


@pytest.mark.parametrize("name", VECTORIZED_OPTIMIZERS)
def test_every_element_wise_optimizer_stacks_as_its_trials_train_one_by_one(write_study, name):
    """Two copies (one at 3x the LR) of each optimizer's scenario, stacked as stacked weights
    (their slots, and an optimizer's own state such as Nadam's running product), against Keras's
    fit one by one."""
    from lrstudy.training import vector_stack as vstack

    scenario = VECTORIZED_OPTIMIZERS[name]
    path = write_study(scenarios=f'["{scenario}"]', epochs=2)
    sc = scenarios.load_study(str(path)).available[scenario]
    trials = [(sc, 0, True), (lr_scale.scaled(sc, 3), 1, False)]
    stacked, alone = fit_stacked(trials), fit_alone(trials)
    assert vstack.unsupported([out["model"] for _, out in stacked]) is None
    for (s_sink, s_out), (a_sink, _) in zip(stacked, alone):
        for key in ("val_loss", "loss", "learning_rate", "effective_lr_p50"):
            assert close(s_sink.points[key], a_sink.points[key]), (key, s_sink.points[key],
                                                                  a_sink.points[key])
