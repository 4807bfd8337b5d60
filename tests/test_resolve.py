"""lrstudy.resolve: fractions and per-total constants into counts, a scenario's schedule, its
plateau and finder arguments, checked as data."""

import ast
import bisect
import dataclasses
import inspect
import json
import math
import re
import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest

from lrstudy import finder, finder_runs, optimizers, scenarios
from lrstudy import resolve as R
from lrstudy import schedules as S

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def at(fn, ts):
    return np.asarray(fn(np.asarray(ts)), dtype=np.float64)


def close(actual, expected, rtol=1e-6, atol=1e-12):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def scenario(table: str, **budget) -> scenarios.Scenario:
    """Scenario ``x`` of a one-scenario study on synthetic data."""
    budget_text = "".join(f"{k} = {json.dumps(v)}\n" for k, v in budget.items())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "one.toml"
        path.write_text(f'scenarios = ["x"]\n[budget]\ndataset = "synthetic"\nval_size = 200\n'
                        f'{budget_text}[scenario.x]\nfamily = "fixed"\n{table}\n')
        return scenarios.load_study(str(path)).scenarios["x"]


# ---------------------------------------------------------------------------------------------
# 1. Fractions and per-total constants


def test_resolve_turns_fractions_into_counts_once():
    args = {"initial": 0.1, "warmup_frac": 0.1, "steps_frac": 1.0, "boundaries_frac": [0.25, 0.5]}
    assert R.resolve_frac(args, 1875) == {"initial": 0.1, "warmup": 188, "steps": 1875,
                                          "boundaries": [469, 938]}
    assert "warmup_frac" in args  # the input is not modified
    assert R.resolve_frac({"warmup_frac": 0.001, "cooldown_frac": 0.0}, 10) == {
        "warmup": 1, "cooldown": 0}  # a positive fraction keeps at least one unit


def test_per_total_constants_divide_by_the_schedules_total():
    assert R.resolve_per_total({"initial": 0.5, "decay_per_total": 0.5}, 100) == {
        "initial": 0.5, "decay": 0.005}
    # the decay tutorial's own constants, tied to its epochs
    sc = scenarios.load_study("seeds-original").scenarios["decay-time"]
    assert R.build_schedule(sc).args["decay"] == pytest.approx(0.5 / 100)
    # unit "step": per total step
    built = R.build({"name": "exp_decay", "initial": 0.5, "k_per_total": 10.0},
                    steps_per_epoch=50, epochs=4)
    assert built.args == {"initial": 0.5, "k": pytest.approx(10.0 / 200)}


def test_fractions_keep_the_shape_when_the_budget_changes():
    for epochs in (5, 20):
        sc = scenarios.load_study("seeds", {"epochs": epochs}).scenarios["decay-step"]
        built = R.build_schedule(sc)
        # 0.5 * 0.8 ** floor(epoch / (epochs / 10)): ten drops over training
        assert float(built.fn(epochs - 1)) == pytest.approx(
            0.5 * 0.8 ** math.floor((epochs - 1) / max(1, round(epochs / 10))), rel=1e-6)


RESOLVE_ERRORS = [
    (lambda: R.resolve_frac({"warmup_frac": 1.5}, 100), r"`warmup_frac` must be in \[0, 1\]"),
    (lambda: R.resolve_frac({"boundaries_frac": [0.5, -0.1]}, 100), r"boundaries_frac=-0\.1"),
    (lambda: R.resolve_frac({"warmup_frac": 0.1, "warmup": 3}, 100),
     r"`warmup_frac` and `warmup`"),
    (lambda: R.resolve_frac({"warmup_frac": 0.1}, 0), r"`total` must be > 0"),
    (lambda: R.resolve_per_total({"decay_per_total": "0.5"}, 100),
     r"`decay_per_total` must be a finite number\. Received: decay_per_total='0\.5'"),
    (lambda: R.resolve_per_total({"decay_per_total": 0.5, "decay": 0.1}, 100),
     r"`decay_per_total` and `decay` are exclusive"),
]


@pytest.mark.parametrize("call,message", RESOLVE_ERRORS, ids=[m for _, m in RESOLVE_ERRORS])
def test_bad_fractions_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# 2. The schedule


def test_build_resolves_against_steps_or_epochs():
    spec = {"name": "warmup_cosine", "initial": 1e-4, "peak": 0.01, "warmup_frac": 0.1,
            "steps_frac": 1.0}
    step = R.build(spec, steps_per_epoch=50, epochs=4)
    assert (step.unit, step.name, step.momentum) == ("step", "warmup_cosine", None)
    assert step.args == {"initial": 1e-4, "peak": 0.01, "warmup": 20, "steps": 200}
    curve = step.curve(50, 4)
    assert curve.shape == (200,) and np.argmax(curve) == 20
    epoch = R.build({**spec, "unit": "epoch"}, steps_per_epoch=50, epochs=10)
    assert epoch.args["warmup"] == 1 and epoch.args["steps"] == 10
    curve = epoch.curve(50, 10)
    close(curve, np.repeat(at(epoch.fn, np.arange(10)), 50))
    assert spec["warmup_frac"] == 0.1  # the spec is not modified


def test_build_one_cycle_momentum():
    spec = {"name": "one_cycle", "max_lr": 0.1, "steps_frac": 1.0, "pct_start": 0.25,
            "cycle_momentum": True, "momentum_low": 0.8}
    built = R.build(spec, steps_per_epoch=10, epochs=4)
    assert built.args == {"max_lr": 0.1, "steps": 40, "pct_start": 0.25}
    t = np.arange(40)
    close(at(built.momentum, t), at(S.one_cycle_momentum(40, 0.25, 0.95, 0.8), t))
    plain = {k: v for k, v in spec.items() if k not in ("momentum_low", "cycle_momentum")}
    assert R.build(plain, steps_per_epoch=10, epochs=4).momentum is None
    off = {**plain, "cycle_momentum": False}
    assert R.build(off, steps_per_epoch=10, epochs=4).momentum is None


def test_from_finder_arguments_take_the_range_tests_bounds():
    sc = scenarios.load_study("seeds").scenarios["cyclical-from-finder"]
    assert R.build_schedule(sc, (2e-4, 3e-2)).args["base"] == 2e-4
    assert R.build_schedule(sc, (2e-4, 3e-2)).args["max_lr"] == 3e-2
    placeholder = R.build_schedule(sc).args  # while validating, before any range test
    assert (placeholder["base"], placeholder["max_lr"]) == R.PLACEHOLDER_BOUNDS
    one_cycle = scenarios.load_study("seeds").scenarios["one-cycle-from-finder"]
    assert R.build_schedule(one_cycle, (2e-4, 3e-2)).args["max_lr"] == 3e-2
    assert R.build_schedule(scenarios.load_study("seeds").scenarios["fixed-baseline"]) is None


BUILD_ERRORS = [
    ({"name": "cosine_annealing", "initial": 0.1}, r"Unknown schedule: 'cosine_annealing'"),
    ({"name": "exponential", "initial": 0.1, "decay_rate": 0.9, "decay_steps": 0},
     r"^Schedule 'exponential': .*decay_steps=0"),
    ({"name": "warmup_cosine", "initial": 0.0, "peak": 0.1, "warmup_frac": -0.1, "steps": 10},
     r"^Schedule 'warmup_cosine': .*`warmup_frac`.*warmup_frac=-0\.1"),
    ({"name": "cosine", "initial": 0.1, "steps_frac": 1.0, "warmup": 3},
     r"^Schedule 'cosine': .*no argument `warmup`"),
    ({"name": "constant", "value": 0.1, "unit": "batch"}, r"^Schedule 'constant': .*unit='batch'"),
    ({"name": "cosine", "initial": 0.1, "steps": 10, "cycle_momentum": True},
     r"^Schedule 'cosine': .*no argument `cycle_momentum`"),
    ({"name": "one_cycle", "unit": "epoch", "max_lr": 0.1, "steps_frac": 1.0,
      "cycle_momentum": True}, r"^Schedule 'one_cycle': .*`cycle_momentum` needs unit 'step'"),
    ({"name": "one_cycle", "max_lr": 0.1, "steps_frac": 1.0, "cycle_momentum": True,
      "momentum_high": 1.5}, r"^Schedule 'one_cycle': .*high=1\.5"),
    ({"name": "one_cycle", "max_lr": 0.1, "steps_frac": 1.0, "momentum_low": 0.8},
     r"^Schedule 'one_cycle': .*need cycle_momentum=true.*momentum_low=0\.8"),
    ({"name": "time_based", "initial": 0.5, "decay_per_total": float("nan")},
     r"^Schedule 'time_based': .*decay_per_total=nan"),
]


@pytest.mark.parametrize("spec,message", BUILD_ERRORS, ids=[m for _, m in BUILD_ERRORS])
def test_build_errors_are_one_line_naming_schedule_argument_value(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        R.build(spec, steps_per_epoch=10, epochs=10)
    assert "\n" not in str(info.value)


def test_unit_mismatch_and_bad_curve_arguments():
    step = R.build({"name": "constant", "value": 0.1}, steps_per_epoch=10, epochs=2)
    epoch = R.build({"name": "constant", "unit": "epoch", "value": 0.1}, steps_per_epoch=10,
                    epochs=2)
    with pytest.raises(ValueError, match="unit 'epoch'"):
        epoch.keras_schedule()
    with pytest.raises(ValueError, match="unit 'step'"):
        step.epoch_callback()
    with pytest.raises(ValueError, match=r"steps_per_epoch=0"):
        step.curve(0, 2)
    assert isinstance(step.keras_schedule(), S.KerasSchedule)
    assert isinstance(epoch.epoch_callback(), keras.callbacks.LearningRateScheduler)


# ---------------------------------------------------------------------------------------------
# 3. Plateau rule


def test_reduce_lr_on_plateau_arguments_are_keras_signature():
    params = inspect.signature(keras.callbacks.ReduceLROnPlateau).parameters
    named = tuple(k for k, p in params.items() if p.kind is not p.VAR_KEYWORD)
    assert R.REDUCE_LR_ON_PLATEAU == named
    assert set(R.PLATEAU_KEYS) == set(named) - {"verbose"} | {"patience_frac"}


def test_plateau_args_resolve_patience_frac_against_the_epochs():
    sc = scenarios.load_study("seeds", {"epochs": 10}).scenarios["plateau"]
    assert R.plateau_args(sc) == {"monitor": "val_loss", "factor": 0.2, "patience": 3,
                                  "min_lr": 0.0001}
    assert sc.plateau["patience_frac"] == 0.3  # the scenario is not modified
    short = scenarios.load_study("seeds", {"epochs": 2}).scenarios["plateau"]
    assert R.plateau_args(short)["patience"] == 1  # a positive fraction keeps one epoch
    explicit = scenarios.load_study("seeds-original").scenarios["plateau"]
    assert R.plateau_args(explicit)["patience"] == 3


PLATEAU_ERRORS = [
    ("learning_rate = 0.1\nplateau = { factor = 2.0 }",
     r"`factor` must be in \(0, 1\)\. Received: factor=2\.0"),
    ("learning_rate = 0.1\nplateau = { patience_frac = 1.5 }",
     r"`patience_frac` must be in \[0, 1\]\. Received: patience_frac=1\.5"),
    ("learning_rate = 0.1\nplateau = { patience_frac = 0.5, patience = 3 }",
     r"`patience_frac` and `patience` are exclusive"),
    ("learning_rate = 0.1\nplateau = { patiense = 3 }",
     r"plateau has no argument `patiense` \(received patiense=3\); its arguments: monitor, "),
    ("learning_rate = 0.1\nplateau = { verbose = 1 }", r"plateau has no argument `verbose`"),
    ("learning_rate = 0.1\nplateau = { min_lr = -1.0 }", r"`min_lr` must be >= 0"),
    ('schedule = { name = "cosine", initial = 0.1, steps_frac = 1.0 }\nplateau = { factor = 0.5 }',
     r"^ReduceLROnPlateau needs a plain learning rate, but the scenario has a per-step schedule"),
]


@pytest.mark.parametrize("table,message", PLATEAU_ERRORS, ids=[m for _, m in PLATEAU_ERRORS])
def test_bad_plateau_rules_raise_value_error(table, message):
    with pytest.raises(ValueError, match=message):
        R.plateau_args(scenario(table))


def test_plateau_with_an_epoch_schedule_is_allowed():
    sc = scenario('schedule = { name = "cosine", unit = "epoch", initial = 0.1, '
                  'steps_frac = 1.0 }\nplateau = { patience_frac = 0.5 }', epochs=4)
    assert R.plateau_args(sc) == {"patience": 2}


def test_plateau_callback_refuses_a_schedule_up_front():
    scheduled = keras.optimizers.SGD(S.KerasSchedule("cosine", initial=0.1, steps=100))
    with pytest.raises(ValueError) as info:
        R.plateau_callback(scheduled, monitor="val_loss", factor=0.2)
    assert str(info.value) == (
        "ReduceLROnPlateau needs a plain learning rate, but the optimizer's learning rate is a "
        "schedule (cosine); use a per-epoch schedule or drop the plateau rule"
    )
    # what Keras itself does when the plateau rule fires: a TypeError deep inside fit
    with pytest.raises(TypeError, match="not settable"):
        scheduled.learning_rate = 0.01
    plain = keras.optimizers.SGD(0.1)
    callback = R.plateau_callback(plain, monitor="val_loss", factor=0.2, patience=3, min_lr=1e-4)
    assert isinstance(callback, keras.callbacks.ReduceLROnPlateau)
    assert (callback.factor, callback.patience, callback.min_lr) == (0.2, 3, 1e-4)
    with pytest.raises(ValueError, match=r"factor=1\.5"):
        R.plateau_callback(plain, factor=1.5)
    with pytest.raises(ValueError, match="no argument `patiense`"):
        R.plateau_callback(plain, patiense=3)
    assert R.plateau_callback(plain, verbose=1).verbose == 1  # Keras's own argument


# ---------------------------------------------------------------------------------------------
# 4. LR range test, learning rate, the whole check


def _notebook_parameters(name: str) -> dict:
    nb = json.loads((NOTEBOOKS / name).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign)}


def test_finder_defaults_are_the_notebooks_the_clis_and_run_finders():
    parameters = _notebook_parameters("lr_range_test.ipynb")
    assert {k: parameters[k] for k in R.FINDER_DEFAULTS} == R.FINDER_DEFAULTS
    from lrstudy import cli

    args = cli.build_parser().parse_args(["find-lr"])
    assert {k: getattr(args, k) for k in R.FINDER_DEFAULTS} == R.FINDER_DEFAULTS
    signature = inspect.signature(finder_runs.run_finder).parameters
    assert {k: signature[k].default for k in R.FINDER_DEFAULTS} == R.FINDER_DEFAULTS
    assert R.FINDER_DEFAULTS["rule"] in finder.RULES


def test_finder_args_merge_the_scenarios_table_over_the_defaults():
    sc = scenarios.load_study("seeds").scenarios["cyclical-from-finder"]
    assert R.finder_args(sc) == {**R.FINDER_DEFAULTS, **sc.finder}
    assert R.finder_args(scenario("learning_rate = 0.1")) == R.FINDER_DEFAULTS
    tuned = scenario('learning_rate = 0.1\nfinder = { rule = "steepest", num_it = 50 }')
    assert R.finder_args(tuned) == {**R.FINDER_DEFAULTS, "rule": "steepest", "num_it": 50}
    with pytest.raises(ValueError, match=r"finder has no argument `start`"):
        R.finder_args(scenario("learning_rate = 0.1\nfinder = { start = 1e-6 }"))
    with pytest.raises(ValueError, match=r"`rule` must be one of .*Received: rule='best'"):
        R.finder_args(scenario('learning_rate = 0.1\nfinder = { rule = "best" }'))


@pytest.mark.parametrize("table,message", [
    ('schedule = "cosine"', r"`schedule` must be a table\. Received: schedule='cosine'"),
    ("learning_rate = 0.1\nplateau = 3", r"`plateau` must be a table\. Received: plateau=3"),
    ("learning_rate = 0.1\nfinder = [1]", r"`finder` must be a table\. Received: finder=\[1\]"),
])
def test_tables_that_are_not_tables_raise_value_error(table, message):
    with pytest.raises(ValueError, match=message):
        R.check(scenario(table))


def test_check_uses_the_optimizers_learning_rate_rule():
    for lr in (0.0, -0.01, float("nan"), float("inf"), True):
        with pytest.raises(ValueError) as expected:
            optimizers.check_learning_rate(lr)
        sc = dataclasses.replace(scenario("learning_rate = 0.1"), learning_rate=lr)
        with pytest.raises(ValueError) as got:
            R.check(sc)
        assert str(got.value) == str(expected.value)
    assert R.check(scenario("learning_rate = 0.1")) is None
    built = R.check(scenario('schedule = { name = "cosine", initial = 0.1, steps_frac = 1.0 }'))
    assert built.name == "cosine" and built.args["steps"] > 0


def test_validate_reports_resolve_errors_with_file_and_scenario(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('scenarios = ["x"]\n[budget]\ndataset = "synthetic"\nval_size = 200\n'
                    '[scenario.x]\nfamily = "fixed"\nlearning_rate = 0.1\n'
                    'finder = { rule = "best" }\n')
    with pytest.raises(scenarios.SpecError, match=re.escape(f"{path} scenario 'x': ")) as err:
        scenarios.validate(scenarios.load_study(str(path)))
    assert "rule='best'" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# 5. The catalogue's schedules, resolved against their budgets, at quarters of training


def _smith(base, max_lr, step_size, scale):
    def fn(t):
        cycle = math.floor(1 + t / (2 * step_size))
        x = abs(t / step_size - 2 * cycle + 1)
        return base + (max_lr - base) * max(0.0, 1 - x) * scale(cycle, t)
    return fn


def _one_cycle(first, peak, last, steps, pct_start, anneal):
    """PyTorch ``OneCycleLR``'s two phases, joined at step ``pct_start * steps - 1``."""
    up = pct_start * steps - 1
    down = steps - 1 - up
    shape = (lambda p: (1 - math.cos(math.pi * p)) / 2) if anneal == "cos" else (lambda p: p)

    def fn(t):
        if t < up:
            return first + (peak - first) * shape(t / up)
        return peak + (last - peak) * shape(min(t - up, down) / down)
    return fn


def _one_cycle_lr(max_lr, steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4,
                  anneal="cos"):
    initial = max_lr / div_factor
    return _one_cycle(initial, max_lr, initial / final_div_factor, steps, pct_start, anneal)


def _exponent(t, decay_steps, staircase):
    return math.floor(t / decay_steps) if staircase else t / decay_steps


#: each catalogue schedule's formula in float64, from its resolved arguments
CLOSED_FORMS = {
    "linear": lambda start, end, steps: lambda t: start + (end - start) * min(t, steps) / steps,
    "polynomial": lambda initial, end, steps, power=1.0: lambda t: (
        (initial - end) * (1 - min(t, steps) / steps) ** power + end),
    "cosine": lambda initial, steps, alpha=0.0: lambda t: initial * (
        (1 - alpha) * (1 + math.cos(math.pi * min(t, steps) / steps)) / 2 + alpha),
    "warmup_cosine": lambda initial, peak, warmup, steps, alpha=0.0: lambda t: (
        initial + (peak - initial) * t / warmup if t < warmup
        else CLOSED_FORMS["cosine"](peak, steps - warmup, alpha)(t - warmup)),
    "warmup_stable_decay": lambda initial, peak, warmup, steps, decay=None, end=0.0: lambda t: (
        initial + (peak - initial) * t / warmup if t < warmup
        else peak if t < steps - (decay or steps - warmup)
        else peak + (end - peak) * min(1.0, (t - steps + (decay or steps - warmup))
                                       / (decay or steps - warmup))),
    "piecewise": lambda boundaries, values: lambda t: values[bisect.bisect_left(boundaries, t)],
    "exponential": lambda initial, decay_rate, decay_steps, staircase=False: lambda t: (
        initial * decay_rate ** _exponent(t, decay_steps, staircase)),
    "exp_decay": lambda initial, k: lambda t: initial * math.exp(-k * t),
    "step_decay": lambda initial, drop, every: lambda t: initial * drop ** math.floor(t / every),
    "inverse_time": lambda initial, decay_rate, decay_steps=1, staircase=False: lambda t: (
        initial / (1 + decay_rate * _exponent(t, decay_steps, staircase))),
    "time_based": lambda initial, decay: lambda t: (
        initial / math.prod(1 + decay * k for k in range(1, t + 1))),
    "triangular": lambda base, max_lr, step_size: _smith(base, max_lr, step_size,
                                                         lambda cycle, t: 1.0),
    "triangular2": lambda base, max_lr, step_size: _smith(base, max_lr, step_size,
                                                          lambda cycle, t: 0.5 ** (cycle - 1)),
    # gamma as the float32 it is: 0.9999 rounds by 1.7e-8, which gamma ** t multiplies by t
    "exp_range": lambda base, max_lr, step_size, gamma: _smith(
        base, max_lr, step_size, lambda cycle, t: float(np.float32(gamma)) ** t),
    "one_cycle": _one_cycle_lr,
}


@pytest.mark.parametrize("study", ["seeds", "seeds-original"])
def test_catalogue_schedules_at_quarters_of_training(study):
    """Every scheduled scenario at 25, 50 and 75% of training and at its last step (or epoch),
    against its formula: float32 round-off, relative to the value or to 1e-7 of the largest LR
    (the cosines' last steps cancel digits, as Keras's do)."""
    seen = set()
    for sc in scenarios.load_study(study).scenarios.values():
        built = R.build_schedule(sc)
        if built is None:
            continue
        epochs = sc.budget["epochs"]
        total = sc.steps_per_epoch * epochs if built.unit == "step" else epochs
        ts = [min(round(q * total), total - 1) for q in (0.25, 0.5, 0.75, 1.0)]
        reference = CLOSED_FORMS[built.name](**built.args)
        scale = float(built.curve(sc.steps_per_epoch, epochs).max())
        close(at(built.fn, ts), [reference(t) for t in ts], rtol=1e-6, atol=1e-7 * scale)
        if built.momentum is not None:  # one-cycle's momentum: 0.95 -> 0.85 -> 0.95
            momentum = _one_cycle(0.95, 0.85, 0.95, built.args["steps"],
                                  built.args.get("pct_start", 0.3), built.args.get("anneal", "cos"))
            close(at(built.momentum, ts), [momentum(t) for t in ts], rtol=1e-6)
        seen.add(built.name)
    assert seen == set(CLOSED_FORMS)
