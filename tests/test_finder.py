"""Tests of the LR range test: restoration, a closed form, NaN robustness, the rules, errors."""

import json
import math
import random

import keras
import numpy as np
import pytest
import tensorflow as tf
from matplotlib.figure import Figure

from lrstudy.lr.range_test import FinderResult, exponential_sweep, lr_range_test, smooth
from lrstudy.lr.suggestion_rules import MIN_POINTS, RULES, minimum, slide, steepest, suggest, valley

# ----------------------------------------------------------------------------- helpers


def _classification_data(n=256, features=8, classes=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, features)).astype("float32")
    y = rng.integers(0, classes, size=n)
    return x, y


def _mlp(seed=7, with_input=True):
    """Dense(16)-Dropout-Dense(3), Adam; identical weights and dropout stream for one seed."""
    keras.utils.set_random_seed(seed)
    layers = [
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(3),
    ]
    model = keras.Sequential(([keras.Input((8,))] if with_input else []) + layers)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _state(model):
    """Every model and optimizer variable, in order (names differ between two models)."""
    return [np.array(v.numpy(), copy=True) for v in model.variables + model.optimizer.variables]


def _assert_same_state(before, after):
    assert len(before) == len(after)
    for k, (old, new) in enumerate(zip(before, after)):
        np.testing.assert_array_equal(new, old, err_msg=f"variable {k}")


def _linear(kernel=0.0, lr=0.01):
    init = keras.initializers.Constant(kernel)
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer=init)]
    )
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    return model


# ----------------------------------------------------------------------------- restoration


def test_restores_trained_state_and_a_later_fit_is_unchanged():
    x, y = _classification_data()
    with_finder, without = _mlp(), _mlp()
    for model in (with_finder, without):  # non-trivial optimizer state: Adam slots, iterations=8
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)

    before = _state(with_finder)
    result = lr_range_test(with_finder, x, y, num_it=40, start_lr=1e-5, end_lr=10.0)
    assert len(result.lrs) >= 10
    after = _state(with_finder)
    _assert_same_state(before, after)
    assert with_finder.optimizer.iterations.numpy() == 8
    assert any("seed_generator" in v.path for v in with_finder.variables)  # dropout's stream too

    history_with = with_finder.fit(x, y, epochs=2, batch_size=32, shuffle=True, verbose=0).history
    history_without = without.fit(x, y, epochs=2, batch_size=32, shuffle=True, verbose=0).history
    assert history_with == history_without
    _assert_same_state(_state(without), _state(with_finder))


def test_unbuilt_model_and_optimizer_are_built_then_restored_to_their_initial_state():
    x, y = _classification_data()
    with_finder, untouched = _mlp(with_input=False), _mlp(with_input=False)
    assert not with_finder.built and not with_finder.optimizer.built

    lr_range_test(with_finder, x, y, num_it=20, start_lr=1e-4, end_lr=1.0)
    optimizer = with_finder.optimizer
    assert optimizer.iterations.numpy() == 0
    assert optimizer.learning_rate.numpy() == np.float32(1e-3)
    slots = [v for v in optimizer.variables if v.path.endswith(("momentum", "velocity"))]
    assert len(slots) == 8 and not any(v.numpy().any() for v in slots)

    untouched.build((None, 8))  # initializers carry their own seeds: same weights as fit would make
    untouched.optimizer.build(untouched.trainable_variables)
    _assert_same_state(_state(untouched), _state(with_finder))


class _EagerNoise(keras.layers.Layer):
    """Draws from every global random source while training (run eagerly); can fail on purpose."""

    def __init__(self, fail_at=None, **kwargs):
        super().__init__(**kwargs)
        self.fail_at, self.calls = fail_at, 0

    def call(self, inputs, training=False):
        if not training:
            return inputs
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("boom")
        python_and_numpy = 1e-3 * (random.random() + float(np.random.normal()))
        tf_op_seeds = 1e-3 * tf.random.uniform(())
        keras_generator = 1e-3 * keras.random.normal(keras.ops.shape(inputs))
        return inputs + python_and_numpy + tf_op_seeds + keras_generator


def _noisy_model(fail_at=None):
    model = keras.Sequential([keras.Input((8,)), _EagerNoise(fail_at), keras.layers.Dense(3)])
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    return model


def _draws():
    return (
        random.random(),
        float(np.random.rand()),
        keras.ops.convert_to_numpy(keras.random.normal((3,))).tolist(),
        tf.random.uniform((3,)).numpy().tolist(),
    )


def test_global_random_states_are_restored():
    x, y = _classification_data()
    keras.utils.set_random_seed(3)
    model = _noisy_model()
    lr_range_test(model, x, y, num_it=6, start_lr=1e-4, end_lr=1e-2)
    assert model.layers[0].calls == 6  # the finder did draw from every source
    after_finder = _draws()

    keras.utils.set_random_seed(3)
    _noisy_model()
    assert _draws() == after_finder


def test_restores_everything_when_a_step_raises():
    x, y = _classification_data()
    keras.utils.set_random_seed(3)
    model = _noisy_model(fail_at=5)
    model.optimizer.build(model.trainable_variables)
    before = _state(model)
    numpy_before = np.random.get_state()[1].copy()

    with pytest.raises(RuntimeError, match="boom"):
        lr_range_test(model, x, y, num_it=10, start_lr=1e-4, end_lr=1.0)
    _assert_same_state(before, _state(model))
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_before)


# ----------------------------------------------------------------------------- the sweep itself


def test_records_the_loss_of_each_batch_at_the_lr_of_that_step():
    """Linear least squares, replayed in NumPy: same batches, same LRs, loss before each update."""
    rng = np.random.default_rng(1)
    n, batch_size, seed = 64, 16, 5
    x = rng.normal(size=(n, 1)).astype("float32")
    y = (3.0 * x + 0.1 * rng.normal(size=(n, 1))).astype("float32")
    model = _linear(kernel=0.5)
    result = lr_range_test(
        model, x, y, batch_size=batch_size, start_lr=1e-3, end_lr=1e-1, num_it=12, seed=seed
    )

    batch_rng, w, expected, order = np.random.default_rng(seed), 0.5, [], []
    for lr in exponential_sweep(1e-3, 1e-1, 12):
        if not order:
            perm = batch_rng.permutation(n)
            order = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
        index = order.pop(0)
        xb, yb = x[index, 0].astype(np.float64), y[index, 0].astype(np.float64)
        residual = w * xb - yb
        expected.append(np.mean(residual**2))
        w -= lr * 2.0 * np.mean(residual * xb)

    assert result.stop_reason == "completed"
    np.testing.assert_allclose(result.lrs, exponential_sweep(1e-3, 1e-1, 12))
    np.testing.assert_allclose(result.losses, expected, rtol=1e-4)
    np.testing.assert_allclose(result.smoothed, smooth(result.losses, 0.98))
    window = slice(12 // 10, len(result.lrs) - 5)
    assert result.suggestions == suggest(result.lrs[window], result.smoothed[window])
    assert model.layers[0].kernel.numpy()[0, 0] == np.float32(0.5)


def test_stop_point_is_within_a_factor_2_of_the_sgd_stability_bound():
    """Least squares, every batch with the same Hessian: SGD diverges beyond 2 / lambda_max.

    x = +-c, so the Hessian of the MSE is H = (2/n) X^T X = 2 c^2 for the whole set and for
    every batch alike; noisy targets keep exciting the one direction, so it blows up as soon
    as the LR passes 2 / lambda_max(H).
    """
    rng = np.random.default_rng(0)
    n, c = 256, 2.0
    x = (c * rng.choice([-1.0, 1.0], size=(n, 1))).astype("float32")
    y = (2.0 * x + 0.5 * rng.normal(size=(n, 1))).astype("float32")
    x64 = x.astype(np.float64)
    assert np.all(x64**2 == c**2)  # every batch's Hessian is the full one
    lambda_max = np.linalg.eigvalsh(2.0 / n * x64.T @ x64).max()
    assert lambda_max == pytest.approx(2.0 * c**2)
    bound = 2.0 / lambda_max

    result = lr_range_test(_linear(), x, y, batch_size=32, start_lr=1e-4, end_lr=10.0, num_it=250)
    assert result.stop_reason in ("diverged", "nonfinite")
    stop_lr = result.lrs[-1]
    assert bound / 2 <= stop_lr <= 2 * bound, (stop_lr, bound)


def test_stops_on_a_nonfinite_loss_and_suggests_from_the_finite_part():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 4)).astype("float32")
    y = (x @ np.arange(1.0, 5.0)[:, None] + 0.1 * rng.normal(size=(128, 1))).astype("float32")

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
        )
        m.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        return m

    never_diverges = model()
    before = _state(never_diverges)
    result = lr_range_test(
        never_diverges, x, y, start_lr=1e-6, end_lr=1e12, num_it=150, stop_factor=math.inf
    )
    assert result.stop_reason == "nonfinite"
    assert len(result.lrs) < 150
    assert np.isfinite(result.losses).all() and np.isfinite(result.smoothed).all()
    suggestions = result.suggestions
    assert all(lr is not None and math.isfinite(lr) for lr in suggestions.values()), suggestions
    _assert_same_state(before, _state(never_diverges))
    assert np.isfinite(never_diverges.predict(x[:4], verbose=0)).all()

    default = lr_range_test(model(), x, y, start_lr=1e-6, end_lr=1e12, num_it=150)
    assert default.stop_reason in ("diverged", "nonfinite")
    assert default.suggestion is not None and math.isfinite(default.suggestion)


def test_a_stable_sweep_completes_with_every_step():
    x = np.linspace(-1, 1, 32, dtype="float32")[:, None]
    result = lr_range_test(_linear(), x, 2 * x, batch_size=8, start_lr=1e-5, end_lr=1e-3, num_it=10)
    assert result.stop_reason == "completed"
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) == 10


# ----------------------------------------------------------------------------- sweep and smoothing


def test_exponential_sweep_closed_form():
    lrs = exponential_sweep(1e-7, 10.0, 100)
    assert lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10.0)
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], (1e8) ** (1 / 99))
    np.testing.assert_allclose(lrs[37], 1e-7 * 1e8 ** (37 / 99))


def test_smooth_closed_form_and_properties():
    beta = 0.9
    a, b = 3.0, 1.0
    # avg1 = (1-beta) a, avg2 = beta (1-beta) a + (1-beta) b; divided by 1-beta and 1-beta^2
    np.testing.assert_allclose(smooth([a, b], beta), [a, (beta * a + b) / (1 + beta)])
    np.testing.assert_allclose(smooth(np.full(50, 2.5), 0.98), 2.5)  # bias-corrected: no warm-up
    np.testing.assert_array_equal(smooth([4.0, 1.0, 7.0], 0.0), [4.0, 1.0, 7.0])


# ----------------------------------------------------------------------------- rules

LRS = np.logspace(-6, 0, 121)  # 20 points per decade
U = np.log10(LRS)
# flat at 2 up to 1e-4 (index 40), falls linearly in log10(lr) to 0.5 at 1e-2 (index 80), then rises
CURVE = np.where(U < -4, 2.0, np.where(U <= -2, 2.0 - 0.75 * (U + 4), 0.5 + 3.0 * (U + 2) ** 2))


def test_steepest_lies_in_the_falling_part():
    assert 1e-4 <= steepest(LRS, CURVE) <= 1e-2


def test_steepest_uses_the_slope_against_log_lr():
    # a drop symmetric in log10(lr) around 1e-3 (index 60): steepest there against log10(lr);
    # against lr itself the 1/lr factor would move it a third of a decade left (tanh = -ln10/4)
    drop = 1.0 - np.tanh(2.0 * (U + 3.0))
    assert steepest(LRS, drop) == LRS[60]
    assert np.argmin(np.gradient(drop, LRS)) < 55


def test_minimum_is_the_argmin_over_10():
    assert minimum(LRS, CURVE) == pytest.approx(LRS[80] / 10) == pytest.approx(1e-3)


def test_valley_closed_form():
    # longest strictly decreasing run: one flat point + indices 41..80, so lds[80] = 41,
    # start = 80 - 41 = 39, and fastai's index 39 + int(41/3) + int(41/6) = 39 + 13 + 6 = 58
    assert valley(LRS, CURVE) == LRS[58]
    assert 1e-4 < valley(LRS, CURVE) < 1e-2
    # a curve that only falls is one valley: the rule lands in its middle
    falling = np.linspace(3.0, 1.0, 60)
    index = int(np.flatnonzero(LRS[:60] == valley(LRS[:60], falling))[0])
    assert abs(index - 30) <= 2


def test_slide_lands_in_the_valley():
    # gradients 15 steps apart agree first where both lie on the linear fall: r = 79, l = 64;
    # the answer is the previous pair's left end, index 65
    assert slide(LRS, CURVE) == LRS[65]
    assert 1e-4 < slide(LRS, CURVE) < 1e-2


def test_steepest_and_valley_are_robust_to_noise():
    """Noisy and noiseless curves, smoothed and windowed as `lr_range_test` does."""
    window = slice(len(LRS) // 10, -5)
    noisy = CURVE + np.random.default_rng(0).normal(0.0, 0.05, CURVE.shape)
    clean = suggest(LRS[window], smooth(CURVE)[window])
    rough = suggest(LRS[window], smooth(noisy)[window])
    for name in ("steepest", "valley"):
        assert 1 / 3 <= rough[name] / clean[name] <= 3, (name, rough[name], clean[name])


@pytest.mark.parametrize("name", sorted(RULES))
def test_rules_give_none_on_too_short_curves(name):
    short = np.logspace(-3, -1, MIN_POINTS - 1)
    assert RULES[name](short, np.linspace(1.0, 0.5, MIN_POINTS - 1)) is None
    assert RULES[name](LRS, CURVE) is not None


def test_rules_reject_mismatched_curves():
    with pytest.raises(ValueError, match="losses"):
        steepest(LRS, CURVE[:-1])


# ----------------------------------------------------------------------------- the result


def _result(**suggestions):
    lrs = exponential_sweep(1e-4, 1.0, 20)
    losses = np.linspace(2.0, 1.0, 20)
    merged = {"valley": 1e-2, "steepest": 3e-3, "minimum": 1e-3, "slide": 2e-2} | suggestions
    return FinderResult(lrs, losses, smooth(losses), merged, "valley", "completed")


def test_bounds_follow_the_chosen_rule_then_fall_back():
    assert _result().suggestion == 1e-2
    assert _result().bounds() == pytest.approx((1e-3, 1e-2))
    assert _result(valley=None).bounds() == pytest.approx((3e-4, 3e-3))
    assert _result(valley=None, steepest=None).bounds() == pytest.approx((1e-4, 1e-3))
    with pytest.raises(ValueError, match="No suggestion"):
        _result(valley=None, steepest=None, minimum=None).bounds()


def test_to_dict_is_json_and_round_trips():
    result = _result(slide=None)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["suggestion"] == 1e-2 and data["suggestions"]["slide"] is None
    back = FinderResult.from_dict(data)
    for field in ("lrs", "losses", "smoothed"):
        np.testing.assert_array_equal(getattr(back, field), getattr(result, field))
    assert back.suggestions == result.suggestions
    assert (back.rule, back.stop_reason) == ("valley", "completed")


def test_plot_marks_every_suggestion_on_a_log_axis():
    ax = Figure().subplots()
    assert _result(slide=None).plot(ax) is ax
    assert ax.get_xscale() == "log"
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert len(ax.lines) == 2 + 3  # raw, smoothed, one marker per suggestion that exists
    assert any(label.startswith("valley (chosen)") for label in labels)
    assert any(label.startswith("steepest") for label in labels)
    assert not any("slide" in label for label in labels)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"start_lr": 0.0}, "start_lr"),
        ({"start_lr": -1e-3}, "start_lr"),
        ({"start_lr": float("nan")}, "start_lr"),
        ({"end_lr": float("inf")}, "end_lr"),
        ({"start_lr": 1.0, "end_lr": 0.1}, "end_lr"),
        ({"num_it": 1}, "num_it"),
        ({"num_it": 2.5}, "num_it"),
        ({"beta": 1.0}, "beta"),
        ({"beta": -0.1}, "beta"),
        ({"stop_factor": 1.0}, "stop_factor"),
        ({"stop_factor": float("nan")}, "stop_factor"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 33}, "batch_size"),
        ({"rule": "median"}, "rule"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    x = np.zeros((32, 1), "float32")
    with pytest.raises(ValueError, match=f"`{name}`.*Received: .*{name}="):
        lr_range_test(_linear(), x, x, **kwargs)


def test_bad_models_and_data_are_refused():
    x = np.zeros((32, 1), "float32")
    with pytest.raises(ValueError, match="`x` and `y`"):
        lr_range_test(_linear(), x, x[:16])
    uncompiled = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="compiled"):
        lr_range_test(uncompiled, x, x)


def test_a_schedule_driven_optimizer_is_refused():
    model = _linear()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.9)
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    with pytest.raises(ValueError, match=r"schedule \(ExponentialDecay\)"):
        lr_range_test(model, np.zeros((32, 1), "float32"), np.zeros((32, 1), "float32"))
