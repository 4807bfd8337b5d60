"""Shapes kept across budgets: every scheduled scenario of the catalogue, at the default study's
budget, is its tutorial's LR curve rescaled in time; the cyclical policies end at their base;
the one-cycle variants and their baseline with the same momentum.

Each tutorial's curve is computed here from its formula, in float64, at the tutorial's own
budget (the one the study seeds-original gives the scenario), and compared at 25, 50, 75 and
100% of training, relative to each curve's peak.
"""

import bisect
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

from lrstudy.spec import lr_scale
from lrstudy.spec import resolve as R
from lrstudy.spec import study as scenarios

QUARTERS = (0.25, 0.5, 0.75, 1.0)
DEFAULT_BUDGET = {"model": "mlp128", "dataset": "fashion_mnist", "val_size": 10000,
                  "batch_size": 128, "epochs": 8}  # 50,000 training images: 391 steps an epoch
TOL = 1e-6  # float32 round-off, relative to the peak


@pytest.fixture(scope="module")
def default() -> dict:
    """Every catalogue scenario, as the catalogue has it, at the default study's budget (a
    study file written here with that budget: the default study overrides a few)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "default.toml"
        path.write_text('scenarios = "all"\n[budget]\n' + "".join(
            f"{k} = {v!r}\n".replace("'", '"') for k, v in DEFAULT_BUDGET.items()))
        available = scenarios.load_study(str(path)).available
    ours = scenarios.load_study("seeds").available["fixed-baseline"].budget
    assert {k: ours[k] for k in DEFAULT_BUDGET} == DEFAULT_BUDGET
    sc = next(iter(available.values()))
    assert {k: sc.budget[k] for k in DEFAULT_BUDGET} == DEFAULT_BUDGET
    assert (sc.train_size, sc.steps_per_epoch) == (50000, 391)
    return available


@pytest.fixture(scope="module")
def original() -> dict:
    return scenarios.load_study("seeds-original").available


# ---------------------------------------------------------------------------------------------
# The tutorials' formulas, at their own budgets


def _smith(base, max_lr, half, scale):
    """Smith's (2017) triangle as a wave: the phase t / half modulo 2 is 0 at the base, 1 at the
    top; the cycle (from 1) scales the amplitude."""
    return lambda t: base + (max_lr - base) * (1 - abs((t / half) % 2 - 1)) * scale(
        t // (2 * half) + 1, t)


def _one_cycle(max_lr, steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """PyTorch ``OneCycleLR``, cosine: the peak at step pct_start * steps - 1, the end at the
    last step."""
    first, up = max_lr / div_factor, pct_start * steps - 1
    last, down = first / final_div_factor, steps - 1 - up

    def fn(t):
        if t < up:
            return first + (max_lr - first) * (1 - math.cos(math.pi * t / up)) / 2
        return max_lr + (last - max_lr) * (1 - math.cos(math.pi * min(t - up, down) / down)) / 2
    return fn


def _time_based(initial, decay):
    def fn(epoch):  # the tutorial's recursion, lr <- lr / (1 + decay * epoch), from epoch 1
        lr = initial
        for k in range(1, epoch + 1):
            lr /= 1 + decay * k
        return lr
    return fn


def _warmup(initial, peak, warmup, then):
    return lambda t: initial + (peak - initial) * t / warmup if t < warmup else then(t)


W = 7815  # the cyclical tutorials' budget: 5 epochs of 1,563 steps (50,000 images, batch 32)
W_UP = 782  # its 10% warm-up, in whole steps
W_COSINE = _warmup(1e-4, 0.01, W_UP, lambda t: 0.01 * (
    1 + math.cos(math.pi * (t - W_UP) / (W - W_UP))) / 2)
WT = 9375  # the warm-up tutorial: all 60,000 images, batch 32, 5 epochs of 1,875 steps
WT_UP = round(0.1 * WT)
WT_COSINE = _warmup(1e-4, 0.01, WT_UP, lambda t: 0.01 * (
    1 + math.cos(math.pi * (t - WT_UP) / (WT - WT_UP))) / 2)
HALF = (W - 1) / 4  # two whole cycles ending on its last step
GAMMA = float(np.float32(0.9999))  # as the schedule holds it: gamma ** t multiplies its rounding

#: scenario -> (unit, the tutorial's total of that unit, its LR at unit k)
TUTORIALS = {
    "warmup-linear": ("epoch", 5, lambda e: 0.005 + min(e, 4) * (0.01 - 0.005) / (5 - 1)),
    # the TF tutorial: 10 epochs of 422 steps
    "warmup-piecewise": ("step", 4220, lambda t: [0.0003, 0.001, 0.0005, 0.0001][
        bisect.bisect_left([1000, 2000, 3000], t)]),
    "warmup-cosine": ("step", WT, WT_COSINE),
    "adamw-cosine": ("step", W, W_COSINE),
    "linear-to-zero": ("step", W, _warmup(1e-4, 0.01, W_UP, lambda t: 0.01 * (
        1 - (t - W_UP) / (W - W_UP)))),
    "warmup-stable-decay": ("step", W, _warmup(1e-4, 0.01, W_UP, lambda t: 0.01 * min(
        1.0, (W - t) / 1563))),
    # the decay tutorial: 100 epochs of 250 steps
    "decay-linear": ("epoch", 100, lambda e: 0.5 * (1 - e / 100)),
    "decay-time": ("epoch", 100, _time_based(0.5, 0.5 / 100)),
    "decay-exponential": ("epoch", 100, lambda e: 0.5 * math.exp(-0.1 * e)),
    "decay-step": ("epoch", 100, lambda e: 0.5 * 0.8 ** math.floor(e / 10)),
    "decay-keras-per-epoch": ("epoch", 100, lambda e: 0.1 / (1 + 0.01 * e)),
    "decay-keras-per-step": ("step", 25000, lambda t: 0.1 / (1 + 0.01 * t)),
    "decay-exponential-keras": ("step", 25000, lambda t: 0.1 * 0.96 ** math.floor(t / 100)),
    "decay-exponential-keras-smooth": ("step", 25000, lambda t: 0.1 * 0.96 ** (t / 100)),
    "decay-cosine": ("step", 4220, lambda t: 0.1 * (1 + math.cos(math.pi * t / 4220)) / 2),
    "cyclical-triangular": ("step", W, _smith(0.001, 0.01, HALF, lambda c, t: 1.0)),
    "cyclical-triangular2": ("step", W, _smith(0.001, 0.01, HALF, lambda c, t: 0.5 ** (c - 1))),
    "cyclical-exp-range": ("step", W, _smith(0.001, 0.01, HALF, lambda c, t: GAMMA ** t)),
    "cyclical-from-finder": ("step", W, _smith(*R.PLACEHOLDER_BOUNDS, HALF, lambda c, t: 1.0)),
    "one-cycle": ("step", W, _one_cycle(0.1, W)),
    "one-cycle-constant-momentum": ("step", W, _one_cycle(0.1, W)),
    "one-cycle-from-finder": ("step", W, _one_cycle(R.PLACEHOLDER_BOUNDS[1], W)),
}
CYCLICAL = ("cyclical-triangular", "cyclical-triangular2", "cyclical-exp-range",
            "cyclical-from-finder")


def tutorial(name: str) -> np.ndarray:
    """The tutorial's LR at each of its units, relative to its peak."""
    _, total, formula = TUTORIALS[name]
    values = np.array([formula(k) for k in range(total)], dtype=float)
    return values / values.max()


def curve(sc) -> tuple[str, np.ndarray]:
    """The scenario's unit and its LR at each step, relative to its peak."""
    built = R.build_schedule(sc)
    lr = built.curve(sc.steps_per_epoch, sc.budget["epochs"]).astype(float)
    return built.unit, lr / lr.max()


# ---------------------------------------------------------------------------------------------
# The tests


def test_every_scheduled_scenario_has_its_tutorial_at_its_tutorials_budget(original):
    scheduled = {n for n, table in scenarios.catalogue().items() if "schedule" in table}
    assert scheduled == set(TUTORIALS)
    for name, (unit, total, _) in TUTORIALS.items():
        sc = original[name]
        built = R.build_schedule(sc)
        assert built.unit == unit, name
        own = sc.steps_per_epoch * sc.budget["epochs"] if unit == "step" else sc.budget["epochs"]
        assert own == total, name
        # at its own budget, the scenario is its tutorial's curve, unit by unit
        units = np.arange(total)
        lr = np.asarray(built.fn(units), dtype=float)
        expected = np.array([TUTORIALS[name][2](k) for k in units])
        np.testing.assert_allclose(lr, expected, rtol=1e-5, atol=1e-7 * expected.max())


#: The default study's own forms of catalogue scenarios, and the unit each trains per.
DEFAULT_STUDY_FORMS = {"decay-exponential": "step"}  # per step along the per-epoch curve


@pytest.mark.parametrize("name, study", [(n, "catalogue") for n in sorted(TUTORIALS)]
                         + [(n, "seeds") for n in sorted(DEFAULT_STUDY_FORMS)])
def test_relative_lr_at_quarters_is_the_tutorials_within_one_step(name, study, default):
    """At each quarter q, the scenario's relative LR lies within the tutorial's over the
    fractions [q - one unit of ours - one of the tutorial's, q + one of the tutorial's]: equal
    to round-off for per-step schedules, within one step of the staircase for per-epoch ones.
    The default study's per-step form of a per-epoch tutorial follows the same curve."""
    sc = default[name] if study == "catalogue" else scenarios.load_study(study).scenarios[name]
    unit, ours = curve(sc)
    theirs = tutorial(name)
    steps, total = len(ours), len(theirs)
    assert unit == (TUTORIALS[name][0] if study == "catalogue" else DEFAULT_STUDY_FORMS[name])
    if study != "catalogue":  # per step, its last step lies within the tutorial's last unit
        _, _, formula = TUTORIALS[name]
        theirs = np.append(theirs, formula(total) / formula(0) * theirs[0])
    one_of_ours = 1 / sc.budget["epochs"] if unit == "epoch" else 1 / steps
    for q in QUARTERS:
        value = ours[min(math.floor(q * steps), steps - 1)]
        low = max(0, math.floor((q - one_of_ours - 1 / total) * total))
        high = min(len(theirs) - 1, math.ceil((q + 1 / total) * total))
        window = theirs[low:high + 1]
        assert window.min() - TOL <= value <= window.max() + TOL, (q, value, window)


@pytest.mark.parametrize("study", ["default", "original"])
def test_cyclical_policies_end_at_their_base(study, request):
    available = request.getfixturevalue(study)
    for name in CYCLICAL:
        built = R.build_schedule(available[name])
        sc = available[name]
        lr = built.curve(sc.steps_per_epoch, sc.budget["epochs"])
        base = built.args["base"]
        assert abs(lr[-1] - base) <= 1e-6 * base, (name, lr[-1])
        assert lr.max() > 5 * base  # it did cycle
    for name in ("one-cycle", "one-cycle-constant-momentum", "one-cycle-from-finder"):
        built = R.build_schedule(available[name])
        sc = available[name]
        lr = built.curve(sc.steps_per_epoch, sc.budget["epochs"])
        end = built.args["max_lr"] / 25 / 1e4
        assert abs(lr[-1] - end) <= 1e-6 * end, (name, lr[-1])


def test_one_cycle_variants_and_their_baseline_with_the_same_momentum(default):
    from lrstudy.training import fitting

    catalogue = scenarios.catalogue()
    for name in ("one-cycle", "one-cycle-constant-momentum", "one-cycle-from-finder"):
        assert catalogue[name]["baseline"] == "fixed-sgd-momentum", name
    fixed, constant, cycled = (default[n] for n in (
        "fixed-sgd-momentum", "one-cycle-constant-momentum", "one-cycle"))
    assert (fixed.optimizer, fixed.optimizer_args, fixed.schedule) == ("sgd", {"momentum": 0.9},
                                                                      None)
    assert (constant.optimizer, constant.optimizer_args) == ("sgd", {"momentum": 0.9})
    assert constant.schedule == {k: v for k, v in cycled.schedule.items()
                                 if k != "cycle_momentum"}  # the same LR policy
    assert R.build_schedule(cycled).momentum is not None
    assert R.build_schedule(constant).momentum is None

    # one-cycle-constant-momentum at its peak = fixed-sgd-momentum's LR: SGD, momentum 0.9
    at_peak = lr_scale.scaled(constant, fixed.learning_rate / lr_scale.peak_lr(constant))
    assert lr_scale.peak_lr(at_peak) == fixed.learning_rate == at_peak.schedule["max_lr"]
    built = R.build_schedule(at_peak)
    one_cycle, sgd = fitting.build_optimizer(at_peak, built), fitting.build_optimizer(fixed, None)
    assert type(one_cycle) is type(sgd) and one_cycle.momentum == sgd.momentum == 0.9
    steps = np.arange(at_peak.steps_per_epoch * at_peak.budget["epochs"])
    lr = np.asarray(one_cycle._learning_rate(steps), dtype=float)
    np.testing.assert_allclose(lr, built.curve(at_peak.steps_per_epoch,
                                               at_peak.budget["epochs"]), rtol=1e-7)
    # its peak falls between two steps (0.3 * 3128 - 1 = 937.4): the largest step is 2e-7 below
    assert lr.max() == pytest.approx(float(sgd.learning_rate), rel=1e-6)
    assert int(np.argmax(lr)) in (937, 938)


def test_new_baselines_and_the_per_epoch_keras_decay(default, original):
    adamw = default["fixed-adamw"]
    assert (adamw.optimizer, adamw.learning_rate, adamw.schedule) == ("adamw", 0.001, None)
    per_epoch = R.build_schedule(original["decay-keras-per-epoch"])
    per_step = R.build_schedule(original["decay-keras-per-step"])
    assert (per_epoch.unit, per_step.unit) == ("epoch", "step")
    # after one epoch of the decay tutorial: 0.1 / 1.01 per epoch, 0.1 / 3.5 per step
    assert float(per_epoch.fn(1)) == pytest.approx(0.1 / 1.01, rel=1e-6)
    assert float(per_step.fn(250)) == pytest.approx(0.1 / 3.5, rel=1e-6)
    for name in ("fixed-sgd-momentum", "one-cycle-constant-momentum", "fixed-adamw",
                 "decay-keras-per-epoch"):
        assert name in default
