"""lrstudy.lr.schedules: closed forms, Keras references, properties, errors, round trips, a real fit.

Tiny on purpose: synthetic data, a Dense(1) model, a few steps.
"""

import doctest
import inspect
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from lrstudy.lr import schedules as S
from lrstudy.spec import resolve as R


def at(fn, ts):
    """The schedule on a NumPy array of steps, as float64 for comparisons."""
    return np.asarray(fn(np.asarray(ts)), dtype=np.float64)


def close(actual, expected, rtol=1e-6, atol=1e-12):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# 1. Closed forms, with the tutorials' constants

EPOCHS = np.arange(100)


def test_decay_tutorial_linear_is_polynomial_power_1():
    close(at(S.polynomial(0.5, 0.0, 100), EPOCHS), 0.5 * (1 - EPOCHS / 100))
    assert float(S.polynomial(0.5, 0.0, 100)(150)) == 0.0  # clamped after `steps`


def test_decay_tutorial_time_based_follows_the_recursion():
    decay = 0.5 / 100
    expected, lr = [], 0.5
    for epoch in EPOCHS:
        lr = lr * 1 / (1 + decay * epoch)
        expected.append(lr)
    close(at(S.time_based(0.5, decay), EPOCHS), expected)
    assert float(S.time_based(0.5, 0.0)(50)) == 0.5


def test_decay_tutorial_exponential_and_step():
    close(at(S.exp_decay(0.5, 0.1), EPOCHS), 0.5 * np.exp(-0.1 * EPOCHS))
    close(at(S.step_decay(0.5, 0.8, 10), EPOCHS), 0.5 * 0.8 ** np.floor(EPOCHS / 10))


def test_warmup_tutorial_linear_warmup_over_epochs_0_to_4():
    epochs = np.arange(8)
    expected = np.where(epochs <= 4, 0.005 + epochs * (0.01 - 0.005) / (5 - 1), 0.01)
    close(at(S.linear(0.005, 0.01, 4), epochs), expected)


def test_per_step_inverse_time_trap_at_250_steps_per_epoch():
    trap = S.inverse_time(0.1, 0.01)
    assert float(trap(250)) == pytest.approx(0.1 / (1 + 0.01 * 250), rel=1e-6)
    assert float(trap(250)) == pytest.approx(0.0286, abs=1e-4)
    # the same rule per epoch: 0.099 after one epoch
    assert float(trap(1)) == pytest.approx(0.1 / 1.01, rel=1e-6)
    per_step = R.build(
        {"name": "inverse_time", "initial": 0.1, "decay_rate": 0.01}, steps_per_epoch=250, epochs=2
    )
    per_epoch = R.build(
        {"name": "inverse_time", "unit": "epoch", "initial": 0.1, "decay_rate": 0.01},
        steps_per_epoch=250,
        epochs=2,
    )
    assert per_step.curve(250, 2)[250] == pytest.approx(0.0286, abs=1e-4)
    assert per_epoch.curve(250, 2)[250] == pytest.approx(0.099, abs=1e-4)


def test_tf_tutorial_piecewise_constant():
    fn = S.piecewise([1000, 2000, 3000], [0.3e-3, 1e-3, 0.5e-3, 0.1e-3])
    steps = [0, 999, 1000, 1001, 2000, 2001, 3000, 3001, 10_000]
    expected = [0.3e-3, 0.3e-3, 0.3e-3, 1e-3, 1e-3, 0.5e-3, 0.5e-3, 0.1e-3, 0.1e-3]
    close(at(fn, steps), expected)


def test_smith_triangular_at_known_points():
    fn = S.triangular(0.001, 0.01, 5)
    # cycle = floor(1 + t / 10), x = |t / 5 - 2 cycle + 1|, lr = base + 0.009 * max(0, 1 - x)
    steps = [0, 2, 5, 7, 10, 12, 15, 20]
    expected = [0.001, 0.001 + 0.009 * 0.4, 0.01, 0.001 + 0.009 * 0.6, 0.001,
                0.001 + 0.009 * 0.4, 0.01, 0.001]
    close(at(fn, steps), expected)


def test_one_cycle_start_peak_end():
    # PyTorch OneCycleLR: peak at pct_start * steps - 1, end value at the last step
    max_lr, steps = 0.1, 100
    start, end = max_lr / 25, max_lr / 25 / 1e4
    for anneal in ("cos", "linear"):
        fn = S.one_cycle(max_lr, steps, anneal=anneal)
        close(at(fn, [0, 29, 99, 150]), [start, max_lr, end, end])
        # half-way down (step 29 + 70 / 2) both annealings are at the mid-point
        close(at(fn, [64]), [(max_lr + end) / 2])
    cos, lin = S.one_cycle(max_lr, steps), S.one_cycle(max_lr, steps, anneal="linear")
    # cosine stays near the peak longer than linear
    assert float(cos(40)) > float(lin(40))
    close(at(lin, [10]), [start + (max_lr - start) * 10 / 29])


def test_docstring_examples_run():
    result = doctest.testmod(S)
    assert result.attempted >= 8 and result.failed == 0


# ---------------------------------------------------------------------------------------------
# 2. Keras references, equal on a grid of steps

GRID = np.unique(
    np.concatenate([np.arange(0, 60), [99, 100, 101, 150, 199, 200, 201, 299, 300, 301],
                    [499, 500, 777, 1000, 1500, 2999, 3000, 3001, 5000]])
)

KERAS_REFS = [
    ("exponential smooth", S.exponential(0.1, 0.96, 100),
     keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=100, decay_rate=0.96)),
    ("exponential staircase", S.exponential(0.1, 0.96, 100, staircase=True),
     keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.96, staircase=True)),
    ("inverse time", S.inverse_time(0.1, 0.5, 10),
     keras.optimizers.schedules.InverseTimeDecay(0.1, decay_steps=10, decay_rate=0.5)),
    ("inverse time staircase", S.inverse_time(0.1, 0.5, 10, staircase=True),
     keras.optimizers.schedules.InverseTimeDecay(0.1, 10, 0.5, staircase=True)),
    ("piecewise", S.piecewise([100, 200, 300], [0.3e-3, 1e-3, 0.5e-3, 0.1e-3]),
     keras.optimizers.schedules.PiecewiseConstantDecay([100, 200, 300],
                                                       [0.3e-3, 1e-3, 0.5e-3, 0.1e-3])),
    ("polynomial power 1", S.polynomial(0.1, 0.001, 300),
     keras.optimizers.schedules.PolynomialDecay(0.1, 300, end_learning_rate=0.001)),
    ("polynomial power 2", S.polynomial(0.1, 0.001, 300, power=2.0),
     keras.optimizers.schedules.PolynomialDecay(0.1, 300, 0.001, power=2.0)),
    ("cosine", S.cosine(0.1, 1000),
     keras.optimizers.schedules.CosineDecay(0.1, decay_steps=1000)),
    ("cosine alpha", S.cosine(0.1, 1000, alpha=0.05),
     keras.optimizers.schedules.CosineDecay(0.1, 1000, alpha=0.05)),
    ("warmup cosine", S.warmup_cosine(1e-4, 0.01, 100, 3000, alpha=0.1),
     keras.optimizers.schedules.CosineDecay(1e-4, decay_steps=2900, alpha=0.1,
                                            warmup_target=0.01, warmup_steps=100)),
    ("warmup cosine, no warm-up", S.warmup_cosine(1e-4, 0.01, 0, 3000),
     keras.optimizers.schedules.CosineDecay(1e-4, 3000, warmup_target=0.01, warmup_steps=0)),
    ("restarts", S.cosine_restarts(0.1, 100, t_mul=2.0, m_mul=0.8, alpha=0.1),
     keras.optimizers.schedules.CosineDecayRestarts(0.1, 100, t_mul=2.0, m_mul=0.8, alpha=0.1)),
    ("restarts t_mul 1", S.cosine_restarts(0.1, 100, t_mul=1.0, m_mul=0.5),
     keras.optimizers.schedules.CosineDecayRestarts(0.1, 100, t_mul=1.0, m_mul=0.5)),
]


@pytest.mark.parametrize("label,fn,reference", KERAS_REFS, ids=[r[0] for r in KERAS_REFS])
def test_equals_keras_schedule(label, fn, reference):
    expected = [float(reference(int(step))) for step in GRID]
    close(at(fn, GRID), expected)
    # and on the int64 step the optimizer passes
    assert float(fn(tf.constant(GRID[-5], tf.int64))) == pytest.approx(expected[-5], rel=1e-6)


# ---------------------------------------------------------------------------------------------
# 3. Properties

EXAMPLES = {
    "constant": dict(value=0.01),
    "linear": dict(start=0.0, end=0.1, steps=10),
    "polynomial": dict(initial=0.1, end=0.0, steps=10, power=2.0),
    "cosine": dict(initial=0.1, steps=10),
    "warmup_cosine": dict(initial=0.0, peak=0.1, warmup=3, steps=10),
    "warmup_stable_decay": dict(initial=0.0, peak=0.1, warmup=3, steps=12, decay=4),
    "cosine_restarts": dict(initial=0.1, first_decay_steps=3),
    "exponential": dict(initial=0.1, decay_rate=0.5, decay_steps=3, staircase=True),
    "exp_decay": dict(initial=0.1, k=0.2),
    "inverse_time": dict(initial=0.1, decay_rate=0.5),
    "time_based": dict(initial=0.1, decay=0.05),
    "step_decay": dict(initial=0.1, drop=0.5, every=3),
    "piecewise": dict(boundaries=[2, 5], values=[0.1, 0.05, 0.01]),
    "triangular": dict(base=0.001, max_lr=0.01, step_size=3),
    "triangular2": dict(base=0.001, max_lr=0.01, step_size=3),
    "exp_range": dict(base=0.001, max_lr=0.01, step_size=3, gamma=0.9),
    "one_cycle": dict(max_lr=0.1, steps=12),
    "one_cycle_momentum": dict(steps=12),
}


def test_every_schedule_works_on_int_array_and_compiled_int64_step():
    assert set(EXAMPLES) == set(S.SCHEDULES) and "join" not in S.SCHEDULES
    fns = {name: S.make(name, **kwargs) for name, kwargs in EXAMPLES.items()}
    steps = np.arange(15)

    @tf.function(jit_compile=True)
    def compiled(step):  # one XLA program for all of them
        return ops.stack([fn(step) for fn in fns.values()])

    arrays = {name: at(fn, steps) for name, fn in fns.items()}
    for name, array in arrays.items():
        assert array.shape == steps.shape, name
        assert np.all(np.isfinite(array)) and np.all(array >= 0), name
        scalar = fns[name](4)
        assert scalar.dtype == "float32" and float(scalar) == pytest.approx(array[4]), name
    for step in (0, 4, 13):
        values = np.asarray(compiled(tf.constant(step, tf.int64)))
        close(values, [array[step] for array in arrays.values()])


def test_join_pieces_count_from_their_own_boundary():
    fn = S.join([S.constant(1.0), S.linear(0.0, 1.0, 10), S.constant(3.0)], [5, 10])
    close(at(fn, [0, 4, 5, 6, 9, 10, 11]), [1.0, 1.0, 0.0, 0.1, 0.4, 3.0, 3.0])


def test_warmup_rises_peaks_at_boundary_and_reaches_the_end_value():
    fn = S.warmup_cosine(1e-4, 0.01, 100, 1000, alpha=0.1)
    lr = at(fn, np.arange(1200))
    assert np.all(np.diff(lr[:101]) > 0)
    assert np.argmax(lr) == 100 and lr[100] == pytest.approx(0.01)
    assert np.all(np.diff(lr[100:1001]) < 0)
    close(lr[1000:], np.full(200, 0.1 * 0.01))


def test_warmup_stable_decay_rises_holds_then_decays_to_the_end():
    fn = S.warmup_stable_decay(1e-4, 0.01, 100, 1000, decay=200)
    lr = at(fn, np.arange(1100))
    assert np.all(np.diff(lr[:101]) > 0) and lr[100] == pytest.approx(0.01)
    close(lr[100:801], np.full(701, 0.01))
    assert np.all(np.diff(lr[800:1001]) < 0) and lr[1000] == 0.0 and np.all(lr[1000:] == 0)
    close(at(fn, [900]), [0.005])  # halfway down the decay
    # without `decay`: warm-up, then linear decay to zero over the rest ("linear to zero")
    l2z = at(S.warmup_stable_decay(1e-4, 0.01, 100, 1000), np.arange(1001))
    close(l2z[100:], np.linspace(0.01, 0.0, 901), atol=1e-9)
    with pytest.raises(ValueError, match="Argument `decay`"):
        S.warmup_stable_decay(1e-4, 0.01, 100, 1000, decay=950)


def test_cycles_repeat_with_period_two_step_sizes():
    step_size = 7
    t = np.arange(100)
    fn = S.triangular(0.001, 0.01, step_size)
    close(at(fn, t + 2 * step_size), at(fn, t), rtol=1e-5)  # float32 t / step_size
    assert at(fn, t + step_size)[0] == pytest.approx(0.01)
    assert not np.allclose(at(fn, t + step_size), at(fn, t))  # period is not step_size


@pytest.mark.parametrize("total,cycles", [(3128, 2), (7815, 2), (25, 3), (1000, 7)])
def test_whole_cycles_of_a_fractional_half_cycle_end_at_base_exactly(total, cycles):
    half = (total - 1) / (2 * cycles)  # what resolve's `cycles` gives: not a whole step
    fns = [S.triangular(0.001, 0.01, half), S.triangular2(0.001, 0.01, half),
           S.exp_range(0.001, 0.01, half, 0.9999)]
    compiled = [tf.function(fn, jit_compile=True) for fn in fns]
    for fn, xla in zip(fns, compiled):
        for step in (0, total - 1):
            assert float(fn(step)) == np.float32(0.001), step
            assert float(xla(tf.constant(step, tf.int64))) == np.float32(0.001), step
        lr = at(fn, np.arange(total))
        assert lr.max() <= 0.01 and lr[int(half)] > 0.001 + 0.009 * 0.5  # a cycle's rise
        assert np.all(lr >= np.float32(0.001))


def test_rescale_evaluates_at_t_times_the_scale_in_float64():
    fn = S.step_decay(0.5, 0.8, 10)
    close(at(S.rescale(fn, 12.5), np.arange(8)), [0.5 * 0.8 ** (12.5 * e // 10) for e in range(8)])
    scale = 25000 / 3128
    trap = S.make("inverse_time", initial=0.1, decay_rate=0.01, time_scale=scale)
    steps = np.array([0, 1, 391, 1564, 3127])
    close(at(trap, steps), 0.1 / (1 + 0.01 * (steps * scale).astype(np.float32)))
    compiled = tf.function(trap, jit_compile=True)
    assert float(compiled(tf.constant(3127, tf.int64))) == float(trap(3127))
    assert S.make("cosine", initial=0.1, steps=10, time_scale=1.0)(3) is not None
    schedule = S.KerasSchedule("step_decay", initial=0.5, drop=0.8, every=10, time_scale=12.5)
    again = S.KerasSchedule.from_config(json.loads(json.dumps(schedule.get_config())))
    close(at(again, np.arange(8)), at(S.rescale(fn, 12.5), np.arange(8)))


def test_lr_arguments_are_named_alike_in_every_factory():
    for name, factory in S.SCHEDULES.items():
        lrs = set(inspect.signature(factory).parameters) & set(S.LR_ARGUMENTS)
        assert bool(lrs) == (name != "one_cycle_momentum"), name
    assert all(any(a in inspect.signature(f).parameters for f in S.SCHEDULES.values())
               for a in S.LR_ARGUMENTS)


def test_triangular2_halves_and_exp_range_scales_the_amplitude():
    base, max_lr, step_size = 0.001, 0.01, 5
    peaks = step_size + 2 * step_size * np.arange(5)  # 5, 15, 25, ...
    amplitude = at(S.triangular2(base, max_lr, step_size), peaks) - base
    close(amplitude[1:] / amplitude[:-1], np.full(4, 0.5))
    assert amplitude[0] == pytest.approx(max_lr - base)
    gamma = 0.99
    close(at(S.exp_range(base, max_lr, step_size, gamma), peaks) - base,
          (max_lr - base) * gamma ** peaks, rtol=1e-5)
    # between peaks both stay at or above base and below the triangle
    t = np.arange(60)
    assert np.all(at(S.triangular2(base, max_lr, step_size), t) <=
                  at(S.triangular(base, max_lr, step_size), t) + 1e-9)


def test_one_cycle_momentum_is_inverse_to_the_lr():
    steps, max_lr, high, low = 200, 0.1, 0.95, 0.85
    t = np.arange(steps)
    lr = at(S.one_cycle(max_lr, steps), t)
    momentum = at(S.one_cycle_momentum(steps, high=high, low=low), t)
    start, end = max_lr / 25, max_lr / 25 / 1e4
    peak = int(np.argmax(lr))
    assert peak == 59 and int(np.argmin(momentum)) == peak
    assert momentum[0] == pytest.approx(high) and momentum[-1] == pytest.approx(high)
    up, down = slice(0, peak + 1), slice(peak, steps)
    close((momentum[up] - low) / (high - low), 1 - (lr[up] - start) / (max_lr - start), atol=1e-5)
    close((momentum[down] - low) / (high - low), 1 - (lr[down] - end) / (max_lr - end), atol=1e-5)


ENDS = [  # (schedule, {step: the value it must hit exactly in float32})
    (S.linear(0.005, 0.01, 4), {0: 0.005, 4: 0.01, 9: 0.01}),
    (S.polynomial(0.1, 0.001, 300, power=2.0), {0: 0.1, 300: 0.001, 301: 0.001}),
    (S.polynomial(0.0, 0.3, 7, power=0.5), {0: 0.0, 7: 0.3}),
    # XLA's t * (1 / steps) is a little over 1 at t = steps: the old (1 - p) ** 0.5 was NaN
    (S.polynomial(0.1, 0.001, 3, power=0.5), {3: 0.001, 4: 0.001}),
    (S.polynomial(0.1, 0.001, 41, power=0.5), {41: 0.001, 42: 0.001}),
    (S.cosine(0.1, 1000), {0: 0.1, 1000: 0.0, 1500: 0.0}),
    (S.cosine(0.1, 1000, alpha=0.05), {1000: 0.1 * 0.05}),
    (S.warmup_cosine(0.0, 0.1, 3, 10), {0: 0.0, 3: 0.1, 10: 0.0}),
    (S.one_cycle(0.1, 9375), {0: 0.004, 9374: 0.004 / 1e4, 9999: 0.004 / 1e4}),
    (S.one_cycle(0.1, 100, anneal="linear"), {0: 0.004, 29: 0.1, 99: 0.004 / 1e4}),
    (S.one_cycle_momentum(9375), {0: 0.95, 9374: 0.95}),
]


@pytest.mark.parametrize("fn,ends", ENDS)
def test_interpolations_hit_both_ends_exactly_eager_and_compiled(fn, ends):
    compiled = tf.function(fn, jit_compile=True)
    for step, value in ends.items():
        assert float(fn(step)) == np.float32(value), step
        assert float(compiled(tf.constant(step, tf.int64))) == np.float32(value), step


def test_progress_is_the_same_eager_in_a_graph_and_under_xla():
    # a graph and XLA divide by a constant as a multiplication by its float32 reciprocal
    fn, steps = S.linear(0.0, 1.0, 67), np.arange(80)
    eager = at(fn, steps).tolist()
    for compiled in (tf.function(fn), tf.function(fn, jit_compile=True)):
        assert [float(compiled(tf.constant(i, tf.int64))) for i in steps] == eager


# ---------------------------------------------------------------------------------------------
# 4. Errors: ValueError naming the argument and the value

ERRORS = [
    (lambda: S.triangular(0.001, 0.01, 0), r"`step_size` must be > 0\. Received: step_size=0"),
    (lambda: S.one_cycle(0.1, 100, pct_start=0.0), r"pct_start=0\.0"),
    (lambda: S.one_cycle(0.1, 100, pct_start=1.0), r"`pct_start` must be in \(0, 1\)"),
    (lambda: S.one_cycle_momentum(100, pct_start=1.5), r"pct_start=1\.5"),
    (lambda: S.one_cycle(0.1, 2, pct_start=0.3), r"`pct_start` \* `steps` must be > 1"),
    (lambda: S.exponential(0.1, 0.9, 0), r"`decay_steps` must be > 0\. Received: decay_steps=0"),
    (lambda: S.inverse_time(0.1, 0.5, decay_steps=0), r"decay_steps=0"),
    (lambda: S.constant(-0.1), r"`value` must be >= 0\. Received: value=-0\.1"),
    (lambda: S.exponential(float("nan"), 0.9, 10), r"`initial` must be a finite .*initial=nan"),
    (lambda: S.linear(0.0, float("inf"), 10), r"end=inf"),
    (lambda: S.triangular(0.01, 0.001, 5), r"`max_lr` must be >= `base`"),
    (lambda: S.piecewise([10, 5], [0.1, 0.2, 0.3]), r"`boundaries` must be strictly increasing"),
    (lambda: S.piecewise([10], [0.1]), r"`values` must have one more element"),
    (lambda: S.warmup_cosine(0.0, 0.1, 10, 10), r"`steps` must be > `warmup`"),
    (lambda: S.one_cycle(0.1, 100, anneal="cosine"), r"anneal='cosine'"),
    (lambda: S.exponential(0.1, 0.9, 10, staircase=1), r"staircase=1"),
    (lambda: S.make("cosine_annealing", initial=0.1),
     r"Unknown schedule: 'cosine_annealing'\. Known schedules: .*warmup_cosine"),
    (lambda: S.make("cosine", initial=0.1, steps=10, warmup=5),
     r"'cosine' has no argument `warmup`"),
    (lambda: S.make("cosine", initial=0.1), r"'cosine' is missing .*`steps`"),
    (lambda: S.exp_decay(0.5, -0.1), r"`k` must be >= 0\. Received: k=-0\.1"),
    (lambda: S.step_decay(0.5, 0.0, 10), r"`drop` must be > 0\. Received: drop=0\.0"),
    (lambda: S.step_decay(0.5, 0.8, 0), r"`every` must be > 0\. Received: every=0"),
    (lambda: S.rescale(S.constant(0.1), 0.0), r"`time_scale` must be > 0\. Received: time_scale=0"),
    (lambda: S.make("cosine", initial=0.1, steps=10, time_scale=float("nan")),
     r"`time_scale` must be a finite number\. Received: time_scale=nan"),
]


@pytest.mark.parametrize("call,message", ERRORS, ids=[m for _, m in ERRORS])
def test_bad_arguments_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# 5. Round trips through get_config


def test_keras_schedule_config_round_trip():
    kwargs = dict(boundaries=[10, 20], values=[0.1, 0.01, 0.001])
    schedule = S.KerasSchedule("piecewise", **kwargs)
    config = schedule.get_config()
    assert config == {"name": "piecewise", **kwargs}
    assert json.loads(json.dumps(config)) == config  # plain data
    again = S.KerasSchedule.from_config(config)
    close(at(again, GRID), at(S.piecewise(**kwargs), GRID))
    serialized = keras.optimizers.schedules.serialize(schedule)
    restored = keras.optimizers.schedules.deserialize(json.loads(json.dumps(serialized)))
    assert isinstance(restored, S.KerasSchedule) and restored.get_config() == config


def test_optimizer_config_round_trip():
    schedule = S.KerasSchedule("one_cycle", max_lr=0.1, steps=100, anneal="linear")
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    config = json.loads(json.dumps(keras.optimizers.serialize(optimizer)))
    restored = keras.optimizers.deserialize(config)
    assert isinstance(restored._learning_rate, S.KerasSchedule)
    assert restored._learning_rate.get_config() == schedule.get_config()
    assert restored.momentum == 0.9
    again = keras.optimizers.SGD.from_config(optimizer.get_config())
    assert float(again.learning_rate) == pytest.approx(0.1 / 25)


def test_model_save_and_load_keeps_the_schedule(tmp_path):
    x, y = _data()
    model = _model()
    kwargs = dict(initial=0.0, peak=0.05, warmup=3, steps=16)
    model.compile(optimizer=keras.optimizers.SGD(S.KerasSchedule("warmup_cosine", **kwargs)),
                  loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    path = tmp_path / "tiny.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.optimizer._learning_rate.get_config() == {"name": "warmup_cosine", **kwargs}
    assert int(loaded.optimizer.iterations) == 8
    assert float(loaded.optimizer.learning_rate) == pytest.approx(
        float(S.warmup_cosine(**kwargs)(8)))


# ---------------------------------------------------------------------------------------------
# 6. A real tiny fit: the LR the optimizer actually used


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype("float32")
    return x, y


W0 = np.array([[0.2], [0.1], [-0.3]], dtype="float32")


def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.set_weights([W0, np.zeros(1, "float32")])
    return model


def _numpy_sgd(x, y, lrs, batch=8):
    """Plain SGD on mean squared error, batches in order, one LR per step."""
    w, b = W0.astype("float64"), np.zeros(1)
    for step, lr in enumerate(lrs):
        i = (step * batch) % len(x)
        xb, yb = x[i:i + batch].astype("float64"), y[i:i + batch].astype("float64")
        residual = xb @ w + b - yb
        w = w - lr * 2 * xb.T @ residual / batch
        b = b - lr * 2 * residual.mean(axis=0)
    return w, b


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.iterations, self.lrs = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.iterations.append(int(self.model.optimizer.iterations))
        self.lrs.append(float(self.model.optimizer.learning_rate))


FIT_SPEC = {"name": "one_cycle", "max_lr": 0.05, "steps_frac": 1.0, "pct_start": 0.3}


@pytest.mark.parametrize("steps_per_execution,jit_compile", [(1, False), (4, True)])
def test_fit_uses_the_schedule_at_every_step(steps_per_execution, jit_compile):
    x, y = _data()
    built = R.build(FIT_SPEC, steps_per_epoch=8, epochs=2)
    curve = built.curve(8, 2)
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(built.keras_schedule()), loss="mse",
                  steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    recorder = _Recorder()
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[recorder])

    # at each (execution) boundary the optimizer's LR is fn(iterations)
    assert recorder.iterations == list(range(0, 16, steps_per_execution))
    close(recorder.lrs, curve[recorder.iterations], rtol=1e-6)  # graph vs eager: 1 ulp
    # and the weights are those of SGD with LR fn(step) at step `step`, not fn(step + 1)
    w, b = model.get_weights()
    expected_w, expected_b = _numpy_sgd(x, y, curve)
    close(w, expected_w, rtol=1e-5, atol=1e-6)
    close(b, expected_b, rtol=1e-5, atol=1e-6)
    shifted_w, _ = _numpy_sgd(x, y, np.append(curve[1:], curve[-1]))
    assert not np.allclose(w, shifted_w, rtol=1e-5, atol=1e-6)


def test_epoch_schedule_sets_the_lr_at_each_epoch_begin():
    x, y = _data()
    built = R.build({"name": "time_based", "unit": "epoch", "initial": 0.05, "decay": 0.3},
                    steps_per_epoch=8, epochs=4)
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    recorder = _Recorder()
    history = model.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0,
                        callbacks=[built.epoch_callback(), recorder])
    close(recorder.lrs, built.curve(8, 4), rtol=1e-7)
    close(history.history["learning_rate"], at(built.fn, np.arange(4)), rtol=1e-7)
    close(model.get_weights()[0], _numpy_sgd(x, y, built.curve(8, 4))[0], rtol=1e-5, atol=1e-6)


def test_time_based_equals_keras_learning_rate_scheduler_recursion():
    decay, epochs = 0.3, 6
    x, y = _data()
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    tutorial = keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr / (1 + decay * epoch))
    history = model.fit(x[:8], y[:8], batch_size=8, epochs=epochs, verbose=0,
                        callbacks=[tutorial])
    close(history.history["learning_rate"], at(S.time_based(0.05, decay), np.arange(epochs)),
          rtol=1e-6)
    assert history.history["learning_rate"][-1] < 0.05 / 10  # it really decayed


# ---------------------------------------------------------------------------------------------
# 7. Checks without TensorFlow; Keras only when a schedule is evaluated or adapted


def _fresh_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_factories_and_study_resolution_import_neither_tensorflow_nor_keras():
    out = _fresh_python("""
        import sys
        import lrstudy.lr.schedules as s
        from lrstudy.spec import lr_scale, resolve
        from lrstudy.spec import study as scenarios

        s.make("warmup_cosine", initial=0.0, peak=0.1, warmup=10, steps=100)
        for bad in ({"steps": 0}, {"steps": 10, "alpha": 2.0}, {"steps": 10, "warmup": 3}):
            try:
                s.make("cosine", initial=0.1, **bad)
            except ValueError:
                pass
            else:
                raise SystemExit(f"accepted {bad}")
        built = resolve.build({"name": "one_cycle", "max_lr": 0.1, "steps_frac": 1.0,
                               "cycle_momentum": True}, steps_per_epoch=10, epochs=3)
        assert built.args["steps"] == 30 and built.momentum is not None
        for study in ("seeds", "seeds-original"):
            for sc in scenarios.load_study(study).available.values():
                resolve.check(sc)  # learning rate, schedule, plateau and finder arguments
                if sc.finder is None:  # the tuning grid and its scenarios
                    for peak in lr_scale.lr_grid(lr_scale.peak_lr(sc), 5, 2):
                        resolve.check(lr_scale.scaled(sc, peak / lr_scale.peak_lr(sc)))
        assert "KerasSchedule" not in vars(s)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
    """)
    assert out.strip() == "[]"


def test_keras_schedule_is_defined_and_registered_on_first_access():
    assert S.KerasSchedule is vars(S)["KerasSchedule"]  # defined once, then a plain global
    assert keras.saving.get_registered_object("lrstudy>KerasSchedule") is S.KerasSchedule
    assert issubclass(S.KerasSchedule, keras.optimizers.schedules.LearningRateSchedule)
    with pytest.raises(AttributeError, match="no attribute 'KerasSchedul'"):
        S.KerasSchedul  # noqa: B018


def test_a_saved_model_loads_in_a_fresh_process(tmp_path):
    path = tmp_path / "tiny.keras"
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(S.KerasSchedule("cosine", initial=0.1,
                                                                 steps=10)), loss="mse")
    model.save(path)
    out = _fresh_python(f"""
        import keras
        import lrstudy.lr.schedules  # Keras is loaded: KerasSchedule is registered on import

        model = keras.models.load_model({str(path)!r})
        print(model.optimizer._learning_rate.get_config())
    """)
    assert out.strip().splitlines()[-1] == "{'name': 'cosine', 'initial': 0.1, 'steps': 10}"


class _CountingOps:
    def __init__(self):
        self.lookups = 0

    def __getattr__(self, name):
        self.lookups += 1
        return getattr(ops, name)


def test_a_compiled_step_looks_keras_ops_up_only_while_tracing(monkeypatch):
    x, y = _data()
    built = R.build(FIT_SPEC, steps_per_epoch=8, epochs=2)
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(built.keras_schedule()), loss="mse",
                  jit_compile=True, steps_per_execution=4)
    counting = _CountingOps()
    monkeypatch.setattr(S, "ops", counting)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    traced = counting.lookups
    assert traced > 0
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert counting.lookups == traced  # the second epoch ran the compiled program only
