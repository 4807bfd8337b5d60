"""The workloads of the suite beyond the default MLP: the built-in datasets ``digits``,
``friedman1`` and ``sequence`` (offline, deterministic, split as documented), the models
``convnet_bn`` and ``transformer_tiny``, a short fit of each workload's model on its dataset
(a regression on the RMSE path), and each workload's stack giving every copy what its trial
gives alone (the fixed-LR tutorial's ``cnn`` with them)."""

from __future__ import annotations

import dataclasses
import doctest
import math

import numpy as np
import pytest

from lrstudy import models
from lrstudy.data import datasets as data
from lrstudy.data import generated, sklearn_bundled

NEW = ("digits", "friedman1", "sequence")

#: The SHA-256 of each dataset's arrays: any change of content (a library's generator, the
#: scaling, the split) shows here, as it would in the runs' ``dataset.sha256``.
FINGERPRINTS = {
    "digits": "7c7c58f24cc595d7",
    "friedman1": "79ccbfae61b1658c",
    "sequence": "3d4b5447b77de770",
}

#: name -> (input shape, classes, task, pool, test)
SHAPES = {
    "digits": ((8, 8), 10, "classification", 1437, 360),
    "friedman1": ((10,), 1, "regression", 10_000, 2_000),
    "sequence": ((16, 16), 16, "classification", 10_000, 2_000),
}


def _rows(x) -> set:
    return {row.tobytes() for row in x}


# ---- the datasets ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", NEW)
def test_a_built_in_dataset_loads_offline_the_same_arrays_twice(name):
    a, b = data.load(name, val_size=200), data.load(name, val_size=200)
    for part in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(getattr(a, part), getattr(b, part)), part
    assert a.digest == b.digest == data.fingerprint(name)
    assert a.digest[:16] == FINGERPRINTS[name]


@pytest.mark.parametrize("name", NEW)
def test_a_built_in_dataset_has_its_documented_shapes_task_and_splits(name):
    shape, classes, task, pool, test = SHAPES[name]
    ds = data.load(name, val_size=300)
    assert (ds.input_shape, ds.num_classes, ds.task) == (shape, classes, task)
    assert (len(ds.x_train) + len(ds.x_val), len(ds.x_val), len(ds.x_test)) == (pool, 300, test)
    assert data.pool_size(name) == pool and data.task_of(name) == task
    assert ds.x_train.dtype == np.float32 and 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    if task == "regression":
        assert ds.y_train.dtype == np.float32 and ds.y_train.shape == (len(ds.x_train),)
    else:
        assert ds.y_train.dtype == np.int32
        assert set(np.unique(ds.y_train)) == set(range(classes))
    # no example in two of the sets (no two examples of these data are equal)
    train, val, tests = _rows(ds.x_train), _rows(ds.x_val), _rows(ds.x_test)
    assert len(train) == len(ds.x_train) and not (train & val or train & tests or val & tests)
    # the test set does not move with the split; a smaller training set is a prefix
    other = data.load(name, train_size=100, val_size=300, split_seed=5)
    assert np.array_equal(other.x_test, ds.x_test)
    assert not np.array_equal(other.x_val, ds.x_val)
    small = data.load(name, train_size=100, val_size=300)
    assert np.array_equal(small.x_train, ds.x_train[:100])


@pytest.mark.parametrize("name", NEW)
def test_check_knows_a_built_in_datasets_size_without_loading_it(name):
    pool = SHAPES[name][3]
    data.check(name, train_size=pool - 300, val_size=300)
    with pytest.raises(ValueError, match="train_size"):
        data.check(name, train_size=pool - 299, val_size=300)
    assert data.unavailable(name) is None


def test_the_data_modules_examples_run():
    assert doctest.testmod(generated).failed == doctest.testmod(sklearn_bundled).failed == 0


def test_digits_are_sklearns_images_scaled_to_the_unit_interval():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    (x, y), (x_test, y_test) = sklearn_bundled.digits()
    assert len(x) + len(x_test) == len(bunch.target) == 1797
    # every image is one of sklearn's, over 16, with its label
    by_image = {(img / 16.0).astype(np.float32).tobytes(): t
                for img, t in zip(bunch.images, bunch.target)}
    assert all(by_image[img.tobytes()] == label for img, label in zip(x_test, y_test))


def test_friedman1_is_the_function_plus_noise_standardized():
    (x, y), (x_test, y_test) = generated.friedman1()
    mean, std = generated.friedman1_scale()
    assert abs(float(y.mean())) < 1e-4 and abs(float(y.std()) - 1) < 1e-4  # the pool's scale
    residual = np.concatenate([y, y_test]) * std + mean - generated.friedman_function(
        np.concatenate([x, x_test]))
    assert abs(float(residual.std()) - generated.FRIEDMAN_NOISE) < 0.03
    assert math.isclose(generated.friedman1_noise_floor(), 1 / std)
    assert 0.15 < generated.friedman1_noise_floor() < 0.25


def test_a_sequences_label_is_the_token_its_first_token_points_to():
    (x, y), (x_test, y_test) = generated.sequence()
    assert np.array_equal(x.sum(-1), np.ones(x.shape[:2]))  # one token per position
    tokens = generated.tokens(np.concatenate([x, x_test]))
    labels = np.concatenate([y, y_test])
    pointers = tokens[:, 0]
    assert pointers.min() == 1 and pointers.max() == generated.SEQUENCE_LENGTH - 1
    assert np.array_equal(labels, tokens[np.arange(len(tokens)), pointers])
    # balanced classes: chance is 1/16
    counts = np.bincount(labels, minlength=generated.SEQUENCE_VOCAB)
    assert counts.min() > 0.8 * len(labels) / generated.SEQUENCE_VOCAB


# ---- the models -------------------------------------------------------------------------------

@pytest.mark.parametrize("model, shape, classes, params", [
    ("convnet_bn", (28, 28), 10, 52_210),
    ("convnet_bn", (28, 28, 1), 10, 52_210),
    ("transformer_tiny", (16, 16), 16, 10_096),
])
def test_a_new_model_builds_small_with_logits(model, shape, classes, params):
    built, from_logits = models.build(model, shape, classes)
    assert built.count_params() == params and from_logits
    assert tuple(built.outputs[0].shape) == (None, classes)
    assert model in models.MODELS


@pytest.mark.parametrize("model, shape", [("convnet_bn", (64,)), ("transformer_tiny", (64,)),
                                          ("transformer_tiny", (8, 8, 1))])
def test_a_new_model_refuses_inputs_of_another_rank(model, shape):
    with pytest.raises(ValueError, match=model):
        models.build(model, shape, 10)


def test_convnet_bn_normalizes_by_the_batch_in_training_and_by_its_averages_after():
    """BatchNormalization: a training call normalizes by the batch's statistics and moves the
    moving averages; an inference call uses them and moves nothing."""
    model, _ = models.build("convnet_bn", (28, 28), 10)
    x = np.random.default_rng(0).random((8, 28, 28)).astype("float32")

    def averages():
        return [w.numpy().copy() for w in model.non_trainable_weights]

    start = averages()
    inference = model(x, training=False).numpy()
    assert all(np.array_equal(a, b) for a, b in zip(start, averages()))
    training = model(x, training=True).numpy()
    assert not np.allclose(training, inference, atol=1e-3)
    assert len(start) == 4 and not any(np.array_equal(a, b) for a, b in zip(start, averages()))


# ---- a short fit of each workload, alone and stacked ---------------------------------------

#: name -> (model, dataset, task, train_size, val_size, batch, jit_compile): as the suite's
#: budgets train them, smaller (XLA only for the stack of stacked weights: a Keras stack's
#: XLA compile costs more than it saves on these models)
WORKLOADS = {
    "cnn": ("cnn", "fashion_mnist", "classification", 256, 128, 64, False),
    "convnet_bn": ("convnet_bn", "fashion_mnist", "classification", 256, 128, 64, False),
    "transformer": ("transformer_tiny", "sequence", "classification", 256, 128, 64, False),
    "digits": ("mlp128", "digits", "classification", 256, 128, 64, True),
    "friedman1": ("mlp128", "friedman1", "regression", 256, 128, 64, False),
}


def _scenario(write_study, workload: str, scenario: str = "fixed-baseline", epochs: int = 2,
              jit: bool | None = None):
    """A catalogue scenario on ``workload``'s budget (the study's file only names the
    scenario: the spec's list of datasets is not this test's subject)."""
    from lrstudy.spec import study as scenarios

    model, dataset, task, train, val, batch, suite_jit = WORKLOADS[workload]
    sc = scenarios.load_study(str(write_study(scenarios=f'["{scenario}"]'))).available[scenario]
    return dataclasses.replace(sc, budget={
        **sc.budget, "model": model, "dataset": dataset, "task": task, "train_size": train,
        "val_size": val, "batch_size": batch, "epochs": epochs, "steps_per_execution": 0,
        "jit_compile": suite_jit if jit is None else jit})


@pytest.mark.parametrize("workload", WORKLOADS)
def test_each_workload_trains_an_epoch_to_a_finite_loss(write_study, workload):
    from lrstudy.tracking import metric_sink
    from lrstudy.training import fitting

    sc = _scenario(write_study, workload, epochs=1, jit=False)
    sink = metric_sink.MetricSink(None)
    out = fitting.fit_scenario(sc, 0, sink)
    # finite: four steps may leave the pointer task at chance, which the divergence rules
    # count ("chance"), but nothing blew up
    assert out["diverged_reason"] in ("", "chance") and math.isfinite(sink.points["loss"][0][1])
    assert out["params"]["model"] == WORKLOADS[workload][0]
    dataset = WORKLOADS[workload][1]
    assert out["params"].get("dataset.sha256", "") == data.fingerprint(dataset)


def test_friedman1_trains_on_the_regression_path(write_study):
    """MSE loss, MAE and RMSE (and their val_ and test_ forms), no accuracy; one linear
    output."""
    import keras

    from lrstudy.tracking import metric_sink
    from lrstudy.training import fitting

    sc = _scenario(write_study, "friedman1", epochs=2, jit=False)
    sink = metric_sink.MetricSink(None)
    out = fitting.fit_scenario(sc, 0, sink)
    assert out["params"]["task"] == "regression" and out["params"]["num_classes"] == 1
    assert isinstance(out["model"].loss, keras.losses.MeanSquaredError)
    assert {"rmse", "mae", "val_rmse", "val_mae", "test_rmse", "test_mae"} <= set(sink.points)
    assert not {"accuracy", "val_accuracy", "test_accuracy"} & set(sink.points)
    # the RMSE is the square root of the MSE the loss is
    (_, mse), (_, rmse) = sink.points["test_loss"][-1], sink.points["test_rmse"][-1]
    assert math.isclose(math.sqrt(mse), rmse, rel_tol=1e-4)
    assert rmse < 1.5  # standardized targets: well below the spread of y after 2 epochs


#: What the stack of each workload is: vectorized only where every layer is Dense or Flatten
#: and the loss is the classification's.
STACKS = {"cnn": "keras", "convnet_bn": "keras", "transformer": "keras", "digits": "vector", "friedman1": "keras"}


def _close(a, b, rel):
    return len(a) == len(b) and all(s == t and math.isclose(x, y, rel_tol=rel, abs_tol=1e-7)
                                    for (s, x), (t, y) in zip(a, b))


@pytest.mark.parametrize("workload", WORKLOADS)
def test_a_workloads_stack_gives_each_copy_its_trial_alone(write_study, workload):
    """Two trials (seed 0, and seed 1 at 3x the LR) of warm-up + cosine as one stack
    (with or without XLA as the suite trains them) against each trained alone by Keras's fit: the per-step
    losses and LRs, the epochs' metrics and the test metrics agree to float32 round-off.
    BatchNormalization's statistics and Dropout's draws (``cnn``) are each copy's own."""
    from lrstudy.spec import lr_scale
    from lrstudy.tracking import metric_sink
    from lrstudy.training import fitting
    from lrstudy.training import vector_stack as vstack

    sc = _scenario(write_study, workload, "warmup-cosine")
    trials = [(sc, 0, True), (lr_scale.scaled(sc, 3), 1, False)]
    stacked_sinks = [metric_sink.MetricSink(None) for _ in trials]
    stacked = fitting.fit_stack(trials, stacked_sinks)
    kind = "vector" if vstack.unsupported([o["model"] for o in stacked]) is None else "keras"
    assert kind == STACKS[workload]
    primary = "rmse" if WORKLOADS[workload][2] == "regression" else "accuracy"
    for (trial, s_sink, s_out) in zip(trials, stacked_sinks, stacked):
        a_sink = metric_sink.MetricSink(None)
        a_out = fitting.fit_scenario(*trial[:2], a_sink, evaluate_test=trial[2],
                                     vectorize=False)
        assert s_out["params"]["init_weights_sha"] == a_out["params"]["init_weights_sha"]
        assert len(s_sink.points["step_loss"]) == 2 * 4
        for key in ("step_loss", "step_learning_rate", "loss", "val_loss", f"val_{primary}"):
            assert _close(s_sink.points[key], a_sink.points[key], rel=1e-5), (
                key, s_sink.points[key], a_sink.points[key])
        if trial[2]:
            for key in ("test_loss", f"test_{primary}"):
                assert math.isclose(s_out[key], a_out[key], rel_tol=1e-5), key
        if workload == "convnet_bn":  # the moving statistics each copy learned alone
            for s_w, a_w in zip(s_out["model"].non_trainable_weights,
                                a_out["model"].non_trainable_weights):
                assert np.allclose(s_w.numpy(), a_w.numpy(), rtol=1e-4, atol=1e-6)
    assert stacked_sinks[0].points["step_loss"] != stacked_sinks[1].points["step_loss"]
