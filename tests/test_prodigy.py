"""Prodigy (lrstudy.lr.prodigy): the reference implementation's steps and step-size estimate d
under Keras's XLA-compiled fit; its configuration and bad arguments; the registry and the
catalogue's scenario, trained for real; a stack of Prodigy trials gives each its trial alone
(each copy its own d)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from lrstudy.lr import optimizers
from lrstudy.spec import lr_scale
from lrstudy.spec import study as scenarios
from lrstudy.tracking import metric_sink
from lrstudy.training import fitting

#: the reference's defaults; decoupled weight decay with Adam's bias correction; coupled decay,
#: no first moment, the warm-up safeguard, a capped growth, and a learning rate of 0 over the
#: first 5 steps (steps the reference skips)
CASES = {
    "defaults": {},
    "decay-bias-correction": {"weight_decay": 0.01, "use_bias_correction": True},
    "coupled-no-momentum-safeguard": {"weight_decay": 0.01, "decouple": False,
                                      "beta_1": 0.0, "beta_2": 0.99,
                                      "safeguard_warmup": True, "growth_rate": 1.05,
                                      "zero_lr_steps": 5},
}
STEPS_PER_EPOCH, EPOCHS, BATCH = 15, 20, 32  # 300 steps
#: (the largest difference of a weight over the largest weight, of d over d): in float64 each
#: step's round-off; in float32 what 300 steps at Prodigy's step size make of it (one ulp at
#: a step moves a trajectory by about 1e-6 of the weights within 300 steps here)
TOLERANCE = {"float64": (1e-11, 1e-12), "float32": (1e-5, 1e-5)}
RUNS = [(case, "float64") for case in CASES] + [
    # in float32 the third case's trajectories part by round-off alone (no momentum, coupled
    # decay: an ulp's difference grows to the size of the weights); float64 pins its steps
    ("defaults", "float32"), ("decay-bias-correction", "float32")]


def _problem(dtype):
    """A 2-layer MLP's initial weights (Keras's layout) and a binary task with noisy labels on
    generated data, in ``dtype``."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS_PER_EPOCH * BATCH, 10)).astype(dtype)
    y = (x[:, :3].sum(1) + rng.normal(size=len(x)) > 0).astype("int64")
    init = [(rng.normal(size=(10, 16)) * 0.3).astype(dtype), np.zeros(16, dtype),
            (rng.normal(size=(16, 2)) * 0.3).astype(dtype),
            (rng.normal(size=2) * 0.1).astype(dtype)]
    return x, y, init


def _reference(x, y, init, zero_lr_steps=0, beta_1=0.9, beta_2=0.999, **kwargs):
    """``prodigyopt.Prodigy`` (PyTorch) over ``EPOCHS`` passes of the batches in order: the
    weights (Keras's layout) and d after each step."""
    import prodigyopt
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    net = net.to(getattr(torch, str(x.dtype)))
    with torch.no_grad():
        for p, w in zip(net.parameters(), init):
            p.copy_(torch.tensor(w.T if w.ndim == 2 else w))
    ref = prodigyopt.Prodigy(net.parameters(), betas=(beta_1, beta_2), **kwargs)
    ds = []
    for step in range(STEPS_PER_EPOCH * EPOCHS):
        ref.param_groups[0]["lr"] = 0.0 if step < zero_lr_steps else 1.0
        rows = slice((step % STEPS_PER_EPOCH) * BATCH, (step % STEPS_PER_EPOCH + 1) * BATCH)
        ref.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.tensor(x[rows])),
                                          torch.tensor(y[rows])).backward()
        ref.step()
        ds.append(ref.param_groups[0]["d"])
    weights = [p.detach().numpy().T.copy() if p.ndim == 2 else p.detach().numpy().copy()
               for p in net.parameters()]
    return weights, np.array(ds)


def _ours(x, y, init, zero_lr_steps=0, **kwargs):
    """Ours in Keras's ``fit`` (XLA, 4 steps an execution: each epoch's 15 steps end on a
    call of 3) over the same batches: the weights and d after each step, and the optimizer."""
    import keras
    import tensorflow as tf

    from lrstudy.lr.prodigy import Prodigy

    class D(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ds = []

        def on_train_batch_end(self, batch, logs=None):
            self.ds.append(float(self.model.optimizer.d.numpy()))

    lr = (keras.optimizers.schedules.PiecewiseConstantDecay([zero_lr_steps - 1], [0.0, 1.0])
          if zero_lr_steps else 1.0)
    dtype = str(x.dtype)
    model = keras.Sequential([keras.Input((10,), dtype=dtype),
                              keras.layers.Dense(16, activation="relu", dtype=dtype),
                              keras.layers.Dense(2, dtype=dtype)])
    model.set_weights(init)
    model.compile(optimizer=Prodigy(learning_rate=lr, **kwargs),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype),
                  jit_compile=True, steps_per_execution=4)
    record = D()
    # a dataset, in order: Keras's fit casts NumPy arrays of floats to float32
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    model.fit(batches, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[record])
    return [w.numpy().copy() for w in model.trainable_variables], record.ds, model.optimizer


@pytest.mark.parametrize("case, dtype", RUNS)
def test_steps_and_d_match_the_reference_implementation_under_xla_fit(case, dtype):
    """300 steps from the same weights on the same batches: the weights equal the reference's
    and d equals its d at the end of every execution, within :data:`TOLERANCE` (float32: 1e-5
    of the largest weight, and a relative 1e-5)."""
    x, y, init = _problem(dtype)
    ref_w, ref_d = _reference(x, y, init, **CASES[case])
    ours_w, ours_d, opt = _ours(x, y, init, **CASES[case])
    assert max(float(np.abs(w - v).max()) for w, v in zip(ref_w, init)) > 0.3  # trained far
    assert ref_d[-1] > 1e4 * 1e-6  # d grew from d0
    weights_tol, d_tol = TOLERANCE[dtype]
    scale = max(float(np.abs(w).max()) for w in ref_w)
    assert max(float(np.abs(u - v).max()) for u, v in zip(ours_w, ref_w)) < weights_tol * scale
    # the callback sees the end of each execution: 4 steps, and the epoch's last 3
    ends = [e * STEPS_PER_EPOCH + s for e in range(EPOCHS) for s in (3, 7, 11, 14)]
    assert len(ours_d) == len(ends)
    np.testing.assert_allclose(ours_d, ref_d[ends], rtol=d_tol)
    # the reference's step count leaves out the steps at a learning rate of 0
    assert int(opt.iterations) == len(ref_d)
    assert float(opt.k.numpy()) == len(ref_d) - CASES[case].get("zero_lr_steps", 0)


def test_config_round_trips_and_bad_arguments_are_named():
    import keras

    from lrstudy.lr.prodigy import Prodigy

    opt = Prodigy(learning_rate=0.5, beta_1=0.8, beta_2=0.99, beta_3=0.9, epsilon=1e-7,
                  weight_decay=0.01, decouple=False, use_bias_correction=True,
                  safeguard_warmup=True, d0=1e-5, d_coef=0.5, growth_rate=1.02)
    config = opt.get_config()
    assert Prodigy.from_config(config).get_config() == config
    assert {k: config[k] for k in ("beta_3", "decouple", "d0", "d_coef", "growth_rate")} == {
        "beta_3": 0.9, "decouple": False, "d0": 1e-5, "d_coef": 0.5, "growth_rate": 1.02}
    revived = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(revived) is Prodigy and revived.get_config() == config
    default = Prodigy().get_config()
    assert default["beta_3"] is None and default["growth_rate"] == math.inf
    assert Prodigy.from_config(default).get_config() == default
    for bad in ({"d0": 0.0}, {"learning_rate": 0.0}, {"learning_rate": -1.0},
                {"epsilon": 0.0}, {"beta_1": 1.0}, {"beta_2": -0.1}, {"beta_3": 1.0},
                {"weight_decay": -1.0}, {"d_coef": 0.0}, {"growth_rate": float("nan")},
                {"d0": float("inf")}, {"decouple": 1}, {"use_bias_correction": "yes"},
                {"safeguard_warmup": None}):
        (key, value), = bad.items()
        with pytest.raises(ValueError, match=f"{key}={value!r}"):
            Prodigy(**bad)


def test_the_registry_checks_without_tensorflow_and_makes_it():
    code = ("import sys\nfrom lrstudy.lr import optimizers\n"
            "optimizers.check('prodigy', {'d_coef': 0.5, 'use_bias_correction': True,"
            " 'weight_decay': 0.01, 'growth_rate': 1.02})\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(ValueError, match="has no argument 'momentum'"):
        optimizers.check("prodigy", {"momentum": 0.9})
    with pytest.raises(ValueError, match="'decouple' must be true or false"):
        optimizers.check("prodigy", {"decouple": 1})
    from lrstudy.lr.prodigy import Prodigy

    made = optimizers.make("prodigy", 1.0, d_coef=0.5, safeguard_warmup=True)
    assert type(made) is Prodigy and made.d_coef == 0.5 and made.safeguard_warmup
    assert made.learning_rate == 1.0


def _scenario(write_study, **budget):
    path = write_study(scenarios='["prodigy"]', epochs=3)
    return scenarios.load_study(str(path), budget).scenarios["prodigy"]


@pytest.mark.parametrize("vectorize", [False, True], ids=["keras-fit", "vector-stack"])
def test_the_catalogue_scenario_trains_and_learns(write_study, vectorize):
    """The scenario ``prodigy`` (the paper's defaults, LR 1.0) on the tiny study's budget with
    1,000 Fashion-MNIST images (the synthetic data's labels are random): its d grows from d0
    and it learns (validation and test accuracy far above chance, 0.1)."""
    from lrstudy.lr.prodigy import Prodigy

    sc = _scenario(write_study, dataset="fashion_mnist", train_size=1000, val_size=500)
    assert (sc.optimizer, sc.learning_rate, sc.family) == ("prodigy", 1.0, "adaptive")
    assert sc.optimizer_args == {}
    sink = metric_sink.MetricSink(None)
    outcome = fitting.fit_scenario(sc, 0, sink, vectorize=vectorize)
    opt = outcome["model"].optimizer
    assert type(opt) is Prodigy and float(opt.d.numpy()) > 10 * opt.d0
    assert int(opt.iterations) == 3 * sc.steps_per_epoch
    assert len(sink.points["val_accuracy"]) == 3
    assert sink.points["val_accuracy"][-1][1] > 0.5
    assert outcome["test_accuracy"] > 0.5 and not outcome["diverged"]


def _stack_matches_alone(trials, engine_unsupported):
    from lrstudy.training import vector_stack as vstack

    sinks = [metric_sink.MetricSink(None) for _ in trials]
    stacked = fitting.fit_stack(trials, sinks)
    assert engine_unsupported(vstack.unsupported([o["model"] for o in stacked]))
    ds = []
    for (sc, seed, test), sink, out in zip(trials, sinks, stacked):
        alone_sink = metric_sink.MetricSink(None)
        alone = fitting.fit_scenario(sc, seed, alone_sink, evaluate_test=test, vectorize=False)
        for key in ("val_loss", "val_accuracy", "loss", "accuracy", "learning_rate"):
            ours, theirs = sink.points[key], alone_sink.points[key]
            assert len(ours) == len(theirs) > 0, key
            for (s, a), (t, b) in zip(ours, theirs):
                assert s == t and math.isclose(a, b, rel_tol=1e-5), (key, a, b)
        mine, its = out["model"].optimizer, alone["model"].optimizer
        for name in ("d", "d_max", "d_numerator", "k"):  # the copy's own estimate, synced
            assert math.isclose(float(getattr(mine, name).numpy()),
                                float(getattr(its, name).numpy()), rel_tol=1e-5), name
        ds.append(float(mine.d.numpy()))
    assert len(set(ds)) == len(ds)  # each copy estimated its own d


def test_a_vector_stack_gives_each_copy_its_own_d(write_study):
    """Two copies (seeds 0 and 1, the second at 3x the LR) train as one VectorStack, each
    copy's d from sums over its own weights: each gives what its trial gives alone."""
    sc = _scenario(write_study)
    trials = [(sc, 0, True), (lr_scale.scaled(sc, 3), 1, False)]
    _stack_matches_alone(trials, lambda reason: reason is None)


def test_a_keras_stack_gives_each_copy_its_own_optimizer(write_study):
    """A model that does not vectorize (dropout) stacks as a StackedModel, each copy stepped
    by its own Prodigy: each gives what its trial gives alone."""
    sc = _scenario(write_study, model="mlp_dropout")
    trials = [(sc, 0, True), (lr_scale.scaled(sc, 3), 1, False)]
    _stack_matches_alone(trials, lambda reason: "Dropout" in reason)
