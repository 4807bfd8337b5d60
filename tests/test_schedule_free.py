"""Schedule-free AdamW (lrstudy.lr.schedule_free): the reference implementation's steps, x and y;
the study evaluates at x in every engine (Keras's fit, the Keras stack, the vector stack) and
logs y beside it; a vector stack of copies at different LRs gives each copy its trial alone."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from lrstudy.lr import optimizers
from lrstudy.spec import lr_scale, resolve
from lrstudy.spec import study as scenarios
from lrstudy.tracking import metric_sink
from lrstudy.training import fitting


def _reference_and_ours(steps=300, lr=0.01, warmup_steps=40, weight_decay=0.01):
    """A 2-layer MLP on generated data trained ``steps`` steps from the same weights on the
    same batches by ``schedulefree.AdamWScheduleFree`` (PyTorch) and by ours (XLA-compiled):
    each one's (y, x) as NumPy arrays in Keras's layout, and the initial weights."""
    import keras
    import schedulefree
    import tensorflow as tf
    import torch

    from lrstudy.lr.schedule_free import AdamWScheduleFree

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 10)).astype("float32")
    y = (x[:, :3].sum(1) > 0).astype("int64")
    init = [(rng.normal(size=(10, 16)) * 0.3).astype("float32"), np.zeros(16, "float32"),
            (rng.normal(size=(16, 2)) * 0.3).astype("float32"),
            (rng.normal(size=2) * 0.1).astype("float32")]
    order = [rng.integers(0, 512, 32) for _ in range(steps)]

    net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    with torch.no_grad():
        for p, w in zip(net.parameters(), init):
            p.copy_(torch.tensor(w.T if w.ndim == 2 else w))
    ref = schedulefree.AdamWScheduleFree(net.parameters(), lr=lr, warmup_steps=warmup_steps,
                                         weight_decay=weight_decay, weight_lr_power=2.0)
    ref.train()
    for idx in order:
        ref.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.tensor(x[idx])),
                                          torch.tensor(y[idx])).backward()
        ref.step()

    def keras_layout(params):
        return [p.detach().numpy().T.copy() if p.ndim == 2 else p.detach().numpy().copy()
                for p in params]

    ref_y = keras_layout(net.parameters())
    ref.eval()
    ref_x = keras_layout(net.parameters())

    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2)])
    model.set_weights(init)
    opt = AdamWScheduleFree(learning_rate=lr, warmup_steps=warmup_steps,
                            weight_decay=weight_decay, weight_lr_power=2.0)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    opt.build(model.trainable_variables)

    @tf.function(jit_compile=True)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)

    for idx in order:
        step(tf.constant(x[idx]), tf.constant(y[idx]))
    ours_y = [w.numpy().copy() for w in model.trainable_variables]
    opt.to_x()
    ours_x = [w.numpy().copy() for w in model.trainable_variables]
    opt.to_y()
    back = [w.numpy().copy() for w in model.trainable_variables]
    return (ref_y, ref_x), (ours_y, ours_x), init, back


def _max_diff(a, b):
    return max(float(np.abs(u - v).max()) for u, v in zip(a, b))


def test_steps_x_and_y_match_the_reference_implementation():
    """300 steps with a warm-up of 40 and weight decay: y (train mode) and x (after eval())
    equal the reference's within 1e-5; to_y undoes to_x."""
    (ref_y, ref_x), (ours_y, ours_x), init, back = _reference_and_ours()
    assert _max_diff(ref_y, init) > 0.5  # trained far from the start
    assert _max_diff(ref_x, ref_y) > 1e-2  # x and y differ: the swap matters
    assert _max_diff(ours_y, ref_y) < 1e-5
    assert _max_diff(ours_x, ref_x) < 1e-5
    assert _max_diff(back, ours_y) < 1e-6


def test_config_round_trips_and_bad_arguments_are_named():
    import keras

    from lrstudy.lr.schedule_free import AdamWScheduleFree

    opt = AdamWScheduleFree(learning_rate=0.003, beta_1=0.95, beta_2=0.99, epsilon=1e-7,
                            weight_decay=0.01, warmup_steps=12, r=0.5, weight_lr_power=1.0)
    config = opt.get_config()
    again = AdamWScheduleFree.from_config(config)
    assert again.get_config() == config
    assert {k: config[k] for k in ("beta_1", "warmup_steps", "r", "weight_lr_power",
                                   "weight_decay")} == {
        "beta_1": 0.95, "warmup_steps": 12, "r": 0.5, "weight_lr_power": 1.0,
        "weight_decay": 0.01}
    revived = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(revived) is AdamWScheduleFree and revived.get_config() == config
    for bad in ({"beta_1": 1.0}, {"beta_1": 0.0}, {"warmup_steps": 2.5},
                {"weight_decay": -1.0}, {"beta_2": float("nan")}):
        (key, value), = bad.items()
        with pytest.raises(ValueError, match=f"{key}={value!r}"):
            AdamWScheduleFree(**bad)


def test_the_registry_checks_without_keras_and_resolves_the_warmup_fraction(write_study):
    optimizers.check("schedule_free_adamw_paper", {"warmup_frac": 0.05, "weight_decay": 0.01})
    with pytest.raises(ValueError, match="has no argument 'momentum'"):
        optimizers.check("schedule_free_adamw_paper", {"momentum": 0.9})
    with pytest.raises(ValueError, match="resolve it into steps first"):
        optimizers.make("schedule_free_adamw_paper", 0.01, warmup_frac=0.05)
    sc = _scenario(write_study, epochs=4)
    assert sc.optimizer == "schedule_free_adamw_paper"
    assert sc.optimizer_args == {"warmup_frac": 0.05}
    total = sc.steps_per_epoch * 4
    assert resolve.optimizer_args(sc) == {"warmup_steps": round(0.05 * total)}
    made = fitting.build_optimizer(sc, None)
    assert made.warmup_steps == round(0.05 * total) and made.learning_rate == 0.0025
    bad = dataclasses.replace(sc, optimizer_args={"warmup_frac": 1.5})
    with pytest.raises(ValueError, match="warmup_frac"):
        resolve.check(bad)


def _scenario(write_study, epochs=2, **budget):
    path = write_study(scenarios='["schedule-free"]', epochs=epochs)
    return scenarios.load_study(str(path), budget).scenarios["schedule-free"]


def _last(sink, key):
    return sink.points[key][-1][1]


def _at_x_and_y(model, ds):
    """The model (which holds x after training) evaluated on the validation set at x and at
    y: ``{"loss", "accuracy"}`` each."""
    from lrstudy.lr import schedule_free

    def evaluate():
        return model.evaluate(ds.x_val, ds.y_val, batch_size=1024, verbose=0,
                              return_dict=True)

    assert model.optimizer.at_x
    at_x = evaluate()
    with schedule_free.at_y([model]):
        at_y = evaluate()
    return at_x, at_y


def _check_validated_at_x(sink, outcome):
    at_x, at_y = _at_x_and_y(outcome["model"], outcome["dataset"])
    assert not math.isclose(at_x["loss"], at_y["loss"], rel_tol=1e-4)  # they can be told apart
    assert math.isclose(_last(sink, "val_loss"), at_x["loss"], rel_tol=1e-5)
    assert math.isclose(_last(sink, "val_accuracy"), at_x["accuracy"], rel_tol=1e-6)
    assert math.isclose(_last(sink, "val_loss_at_y"), at_y["loss"], rel_tol=1e-5)
    assert math.isclose(_last(sink, "val_accuracy_at_y"), at_y["accuracy"], rel_tol=1e-6)
    for key in ("val_loss", "val_loss_at_y", "val_accuracy_at_y"):
        assert len(sink.points[key]) == 2, key
    for key in ("test_loss", "test_accuracy", "test_loss_at_y", "test_accuracy_at_y"):
        assert len(sink.points[key]) == 1, key


@pytest.mark.parametrize("vectorize", [False, True], ids=["keras-fit", "vector-stack"])
def test_validation_and_test_are_at_x_with_y_beside(write_study, vectorize, monkeypatch):
    """The last epoch's validation metrics are those of the trained model at x (where it is
    left), the ``_at_y`` ones those at y, in Keras's fit and in a vector stack of one."""
    from lrstudy.training import vector_stack as vstack

    sc = _scenario(write_study)
    sizes = []
    epochs = vstack.VectorStack.epochs

    def spy(self, *args, **kwargs):
        sizes.append(self.n)
        yield from epochs(self, *args, **kwargs)

    monkeypatch.setattr(vstack.VectorStack, "epochs", spy)
    sink = metric_sink.MetricSink(None)
    outcome = fitting.fit_scenario(sc, 0, sink, vectorize=vectorize)
    assert sizes == ([1] if vectorize else [])
    _check_validated_at_x(sink, outcome)
    test = outcome["dataset"]
    model = outcome["model"]
    at_x = model.evaluate(test.x_test, test.y_test, batch_size=1024, verbose=0,
                          return_dict=True)
    assert math.isclose(outcome["test_loss"], at_x["loss"], rel_tol=1e-5)


def test_a_keras_stack_validates_each_copy_at_x(write_study):
    """A model that does not vectorize (dropout) trains as a StackedModel: its Dispatcher
    hands each copy's callback the validation, which swaps that copy's x in."""
    from lrstudy.training import vector_stack as vstack

    sc = _scenario(write_study, model="mlp_dropout")
    trials = [(sc, 0, True), (lr_scale.scaled(sc, 3), 1, True)]
    sinks = [metric_sink.MetricSink(None) for _ in trials]
    outcomes = fitting.fit_stack(trials, sinks)
    assert "Dropout" in vstack.unsupported([o["model"] for o in outcomes])
    for sink, outcome in zip(sinks, outcomes):
        _check_validated_at_x(sink, outcome)


def test_a_vector_stack_gives_each_copy_its_trial_alone(write_study):
    """Copies at the 5-point grid's spread of LRs and one whose LR rises all along (so that
    its averaging weights are not those of a constant LR): each copy's averaging state is its
    own, and each copy's record and final x are those of its trial trained alone."""
    from lrstudy.training import vector_stack as vstack

    sc = _scenario(write_study)
    rising = dataclasses.replace(sc, learning_rate=None, schedule={
        "name": "linear", "start": 0.0005, "end": 0.01, "steps_frac": 1.0})
    trials = [(lr_scale.scaled(sc, f), seed, True)
              for f, seed in ((0.1, 0), (1.0, 1), (10.0, 2))] + [(rising, 0, True)]
    sinks = [metric_sink.MetricSink(None) for _ in trials]
    stacked = fitting.fit_stack(trials, sinks)
    assert vstack.unsupported([o["model"] for o in stacked]) is None
    for (trial, sink, out) in zip(trials, sinks, stacked):
        alone_sink = metric_sink.MetricSink(None)
        alone = fitting.fit_scenario(trial[0], trial[1], alone_sink, vectorize=False)
        for key in ("val_loss", "val_loss_at_y", "test_loss", "test_loss_at_y", "loss"):
            ours, theirs = sink.points[key], alone_sink.points[key]
            assert len(ours) == len(theirs) > 0, key
            for (s, a), (t, b) in zip(ours, theirs):
                assert s == t and math.isclose(a, b, rel_tol=1e-5), (key, a, b)
        for w, v in zip(out["model"].get_weights(), alone["model"].get_weights()):
            np.testing.assert_allclose(w, v, rtol=1e-5, atol=1e-6)


def test_a_plain_fit_that_builds_the_optimizer_while_tracing_trains_as_a_prebuilt_one():
    """Keras's fit builds an unbuilt optimizer inside the traced train step: z must start at
    the weights once (at the first step), not be reset to them at every step."""
    import keras

    from lrstudy.lr.schedule_free import AdamWScheduleFree

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")

    def trained(prebuild: bool):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(2)])
        opt = AdamWScheduleFree(learning_rate=0.01, warmup_steps=5)
        if prebuild:
            opt.build(model.trainable_variables)
        model.compile(optimizer=opt, jit_compile=True, loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True))
        model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
        return [w.numpy() for w in model.trainable_variables]

    assert _max_diff(trained(False), trained(True)) < 1e-6
