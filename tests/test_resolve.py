"""lrstudy.spec.resolve: fractions and per-total constants into counts, a scenario's schedule, its
plateau and finder arguments, checked as data; and lrstudy.spec.lr_scale: its peak LR, the
scenario scaled to another peak, the tuning grid."""

import ast
import bisect
import dataclasses
import doctest
import inspect
import json
import math
import re
import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest

from lrstudy.execution import range_tests as finder_runs
from lrstudy.lr import optimizers, suggestion_rules
from lrstudy.lr import schedules as S
from lrstudy.spec import lr_scale
from lrstudy.spec import resolve as R
from lrstudy.spec import study as scenarios

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
    # the decay tutorial's own constants at its own 100 epochs: no rescaling
    sc = scenarios.load_study("seeds-original").scenarios["decay-time"]
    assert R.build_schedule(sc).args == {"initial": 0.5, "decay": 0.005}
    # unit "step": per total step
    built = R.build({"name": "exp_decay", "initial": 0.5, "k_per_total": 10.0},
                    steps_per_epoch=50, epochs=4)
    assert built.args == {"initial": 0.5, "k": pytest.approx(10.0 / 200)}


def test_tutorial_total_rescales_the_tutorials_curve_in_time():
    for epochs in (5, 8, 20, 100):
        sc = scenarios.load_study("seeds", {"epochs": epochs}).available["decay-step"]
        built = R.build_schedule(sc)
        assert built.args.get("time_scale", 1.0) == 100 / epochs
        # 0.5 * 0.8 ** floor(epoch / 10) over 100 epochs, at the tutorial's epoch e * 100 / E
        close(at(built.fn, np.arange(epochs)),
              [0.5 * 0.8 ** math.floor(e * 100 / epochs / 10) for e in range(epochs)])
    # per step: the formula of the tutorial's step t * N / total; fractions resolve against N
    spec = {"name": "warmup_cosine", "initial": 0.0, "peak": 1.0, "warmup_frac": 0.25,
            "steps_frac": 1.0, "tutorial_total": 400}
    built = R.build(spec, steps_per_epoch=10, epochs=10)
    assert built.args == {"initial": 0.0, "peak": 1.0, "warmup": 100, "steps": 400,
                          "time_scale": 4.0}
    close(at(built.fn, [0, 12, 25, 100]), [0.0, 0.48, 1.0, 0.0], atol=1e-7)


def test_cycles_end_the_last_cycle_on_the_last_step_at_base():
    for spe, epochs, cycles in ((391, 8, 2), (1563, 5, 2), (7, 3, 4), (10, 1, 1)):
        for name in ("triangular", "triangular2", "exp_range"):
            spec = {"name": name, "base": 0.001, "max_lr": 0.01, "cycles": cycles}
            if name == "exp_range":
                spec.update(gamma=0.9999, tutorial_total=7815)
            built = R.build(spec, steps_per_epoch=spe, epochs=epochs)
            curve = built.curve(spe, epochs)
            assert curve[-1] == np.float32(0.001), (name, spe, epochs)
            assert curve[0] == np.float32(0.001)
            # cycles whole cycles: 2 * cycles half-cycles of (total - 1) / (2 cycles) steps
            half = (spe * epochs - 1) / (2 * cycles)
            ends = np.round(half * np.arange(0, 2 * cycles + 1, 2)).astype(int)
            assert np.all(curve[ends] < 0.001 + 0.009 * 0.5 / half + 1e-9), name


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
    sc = scenarios.load_study("seeds").available["cyclical-from-finder"]
    assert R.build_schedule(sc, (2e-4, 3e-2)).args["base"] == 2e-4
    assert R.build_schedule(sc, (2e-4, 3e-2)).args["max_lr"] == 3e-2
    placeholder = R.build_schedule(sc).args  # while validating, before any range test
    assert (placeholder["base"], placeholder["max_lr"]) == R.PLACEHOLDER_BOUNDS
    one_cycle = scenarios.load_study("seeds").available["one-cycle-from-finder"]
    assert R.build_schedule(one_cycle, (2e-4, 3e-2)).args["max_lr"] == 3e-2
    assert R.build_schedule(scenarios.load_study("seeds").available["fixed-baseline"]) is None


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
    ({"name": "triangular", "base": 0.001, "max_lr": 0.01, "cycles": 0},
     r"^Schedule 'triangular': Argument `cycles` must be > 0\. Received: cycles=0$"),
    ({"name": "triangular", "base": 0.001, "max_lr": 0.01, "cycles": 1.5},
     r"^Schedule 'triangular': .*a positive integer\. Received: cycles=1\.5"),
    ({"name": "triangular", "base": 0.001, "max_lr": 0.01, "cycles": 2, "step_size": 5},
     r"^Schedule 'triangular': Arguments `cycles` and `step_size` are exclusive"),
    ({"name": "cosine", "initial": 0.1, "steps_frac": 1.0, "cycles": 2},
     r"^Schedule 'cosine': .*no argument `cycles`"),
    ({"name": "cosine", "initial": 0.1, "steps": 10, "tutorial_total": 0},
     r"^Schedule 'cosine': Argument `tutorial_total` must be > 0\. Received: tutorial_total=0"),
    ({"name": "cosine", "initial": 0.1, "steps": 10, "tutorial_total": "100"},
     r"tutorial_total='100'"),
    ({"name": "cosine", "initial": 0.1, "steps": 10, "tutorial_total": 100, "time_scale": 2.0},
     r"`tutorial_total` and `time_scale` are exclusive"),
    ({"name": "cosine", "initial": 0.1, "steps": 10, "time_scale": -1.0},
     r"^Schedule 'cosine': Argument `time_scale` must be > 0\. Received: time_scale=-1\.0"),
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
    assert set(R.PLATEAU_KEYS) == set(named) - {"verbose"} | {"patience_frac", "cooldown_frac"}


def test_plateau_args_resolve_patience_frac_against_the_epochs():
    sc = scenarios.load_study("benchmark-full", {"epochs": 10}).available["plateau"]
    assert R.plateau_args(sc) == {"monitor": "val_loss", "factor": 0.2, "patience": 3,
                                  "min_lr": 0.0001}
    assert sc.plateau["patience_frac"] == 0.3  # the scenario is not modified
    short = scenarios.load_study("benchmark-full", {"epochs": 2}).available["plateau"]
    assert R.plateau_args(short)["patience"] == 1  # a positive fraction keeps one epoch
    # the default study's rule, patience and cooldown as fractions that act at 8 epochs
    default = scenarios.load_study("seeds").scenarios["plateau"]
    assert R.plateau_args(default) == {"monitor": "val_loss", "factor": 0.2, "patience": 1,
                                       "cooldown": 0, "min_lr": 0.0001}
    longer = scenarios.load_study("seeds", {"epochs": 24}).scenarios["plateau"]
    assert R.plateau_args(longer)["patience"] == 3
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
    from lrstudy import cli_parser

    args = cli_parser.build_parser().parse_args(["find-lr"])
    assert {k: getattr(args, k) for k in R.FINDER_DEFAULTS} == R.FINDER_DEFAULTS
    signature = inspect.signature(finder_runs.run_finder).parameters
    assert {k: signature[k].default for k in R.FINDER_DEFAULTS} == R.FINDER_DEFAULTS
    assert R.FINDER_DEFAULTS["rule"] in suggestion_rules.RULES


def test_finder_args_merge_the_scenarios_table_over_the_defaults():
    sc = scenarios.load_study("seeds").available["cyclical-from-finder"]
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
    # the product for whole t; between, its Gamma-function interpolation
    "time_based": lambda initial, decay: lambda t: initial / (
        math.prod(1 + decay * k for k in range(1, int(t) + 1)) if t == int(t) else math.exp(
            t * math.log(decay) + math.lgamma(t + 1 + 1 / decay) - math.lgamma(1 + 1 / decay))),
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
    for sc in scenarios.load_study(study).available.values():
        built = R.build_schedule(sc)
        if built is None:
            continue
        epochs = sc.budget["epochs"]
        total = sc.steps_per_epoch * epochs if built.unit == "step" else epochs
        ts = [min(round(q * total), total - 1) for q in (0.25, 0.5, 0.75, 1.0)]
        args = {k: v for k, v in built.args.items() if k != "time_scale"}
        scale = built.args.get("time_scale", 1.0)  # the tutorial's formula at t * time_scale
        formula = CLOSED_FORMS[built.name](**args)

        def reference(t, formula=formula, scale=scale):
            return formula(float(np.float32(t * scale)) if scale != 1.0 else t)

        peak = float(built.curve(sc.steps_per_epoch, epochs).max())
        close(at(built.fn, ts), [reference(t) for t in ts], rtol=1e-6, atol=1e-7 * peak)
        if built.momentum is not None:  # one-cycle's momentum: 0.95 -> 0.85 -> 0.95
            momentum = _one_cycle(0.95, 0.85, 0.95, built.args["steps"],
                                  built.args.get("pct_start", 0.3), built.args.get("anneal", "cos"))
            close(at(built.momentum, ts), [momentum(t) for t in ts], rtol=1e-6)
        seen.add(built.name)
    assert seen == set(CLOSED_FORMS)


# ---------------------------------------------------------------------------------------------
# 6. The peak LR, a scenario scaled to another peak, the tuning grid


def with_schedule(spec: dict, epochs: int = 4) -> scenarios.Scenario:
    """A scenario on synthetic data (800 training images, batch 32: 25 steps an epoch)."""
    base = scenario("learning_rate = 0.1", epochs=epochs)
    return dataclasses.replace(base, learning_rate=None, schedule=spec)


#: every factory, in cases whose peak falls on a step (training of 100 steps, or 4 epochs)
PEAK_CASES = [
    {"name": "constant", "value": 0.02},
    {"name": "linear", "start": 0.001, "end": 0.01, "steps": 50},
    {"name": "linear", "start": 0.001, "end": 0.01, "steps": 300},  # training stops on the way
    {"name": "linear", "unit": "epoch", "start": 0.005, "end": 0.01, "steps": 4,
     "tutorial_total": 5},
    {"name": "polynomial", "initial": 0.1, "end": 0.0, "steps_frac": 1.0, "power": 2.0},
    {"name": "polynomial", "initial": 0.001, "end": 0.1, "steps": 200, "power": 0.5},
    {"name": "cosine", "initial": 0.1, "steps_frac": 1.0, "alpha": 0.1},
    {"name": "warmup_cosine", "initial": 1e-4, "peak": 0.01, "warmup_frac": 0.1, "steps_frac": 1.0},
    {"name": "warmup_cosine", "initial": 1e-4, "peak": 0.01, "warmup": 150, "steps": 400},
    {"name": "warmup_cosine", "initial": 1e-4, "peak": 0.01, "warmup": 0, "steps": 100},
    {"name": "warmup_stable_decay", "initial": 1e-4, "peak": 0.01, "warmup_frac": 0.1,
     "steps_frac": 1.0, "decay_frac": 0.2},
    {"name": "warmup_stable_decay", "initial": 1e-4, "peak": 0.01, "warmup": 0, "steps": 100,
     "decay": 20, "end": 0.02},
    {"name": "cosine_restarts", "initial": 0.1, "first_decay_steps": 10},
    {"name": "cosine_restarts", "initial": 0.1, "first_decay_steps": 10, "m_mul": 1.5,
     "alpha": 0.1},  # restarts at 10, 30, 70: the last one is the highest
    {"name": "cosine_restarts", "initial": 0.1, "first_decay_steps": 20, "t_mul": 1.0,
     "m_mul": 1.2},
    {"name": "exponential", "initial": 0.1, "decay_rate": 0.96, "decay_steps": 10},
    {"name": "exponential", "initial": 0.1, "decay_rate": 1.01, "decay_steps": 10},
    {"name": "exponential", "initial": 0.1, "decay_rate": 1.1, "decay_steps": 7, "staircase": True},
    {"name": "exp_decay", "unit": "epoch", "initial": 0.5, "k": 0.1, "tutorial_total": 100},
    {"name": "inverse_time", "initial": 0.1, "decay_rate": 0.01, "tutorial_total": 25000},
    {"name": "time_based", "unit": "epoch", "initial": 0.5, "decay": 0.005, "tutorial_total": 100},
    {"name": "step_decay", "unit": "epoch", "initial": 0.5, "drop": 0.8, "every": 10,
     "tutorial_total": 100},
    {"name": "step_decay", "initial": 0.5, "drop": 1.5, "every": 30},
    {"name": "piecewise", "boundaries": [10, 20, 30], "values": [0.003, 0.01, 0.005, 0.001]},
    {"name": "piecewise", "boundaries": [40, 200], "values": [0.003, 0.002, 0.01]},  # 0.01 never
    {"name": "piecewise", "boundaries": [1000, 2000, 3000],
     "values": [0.0003, 0.001, 0.0005, 0.0001], "tutorial_total": 4220},
    {"name": "triangular", "base": 0.001, "max_lr": 0.01, "step_size": 10},
    {"name": "triangular", "base": 0.001, "max_lr": 0.01, "step_size": 200},  # stops rising
    {"name": "triangular2", "base": 0.001, "max_lr": 0.01, "step_size": 25},
    {"name": "exp_range", "base": 0.001, "max_lr": 0.01, "step_size": 25, "gamma": 0.999},
    # (t / step_size) gamma ** t is largest at t = -1 / ln(gamma) = 5, before the first peak
    {"name": "exp_range", "base": 0.001, "max_lr": 0.01, "step_size": 25,
     "gamma": math.exp(-0.2)},
    {"name": "one_cycle", "max_lr": 0.1, "steps_frac": 1.0},
    {"name": "one_cycle", "max_lr": 0.1, "steps_frac": 1.0, "anneal": "linear", "pct_start": 0.5,
     "div_factor": 0.5},
    {"name": "one_cycle_momentum", "steps_frac": 1.0},
]


@pytest.mark.parametrize("spec", PEAK_CASES, ids=lambda spec: spec["name"])
def test_peak_lr_is_the_curves_maximum_in_closed_form(spec):
    sc = with_schedule(spec)
    curve = R.build_schedule(sc).curve(sc.steps_per_epoch, 4)
    assert lr_scale.peak_lr(sc) == pytest.approx(float(curve.max()), rel=1e-6)
    assert {c["name"] for c in PEAK_CASES} == set(S.SCHEDULES)


def test_peak_lr_of_every_catalogue_scenario_at_both_studies_budgets():
    """Equal to the curve's maximum to float32 round-off; where the peak falls between two
    steps (a fractional half-cycle) above it by less than one step's change."""
    for study in ("seeds", "seeds-original"):
        for sc in scenarios.load_study(study).available.values():
            if sc.finder is not None:
                with pytest.raises(ValueError, match="has no fixed peak learning rate"):
                    lr_scale.peak_lr(sc)
                continue
            peak = lr_scale.peak_lr(sc)
            built = R.build_schedule(sc)
            if built is None:
                assert peak == sc.learning_rate
                continue
            curve = built.curve(sc.steps_per_epoch, sc.budget["epochs"]).astype(float)
            top = int(np.argmax(curve))
            step = np.abs(np.diff(curve[max(0, top - 1):top + 2])).max(initial=0.0)
            assert curve[top] <= peak * (1 + 1e-6), sc.name
            assert peak - curve[top] <= step + 1e-6 * peak, sc.name
            if sc.schedule["name"] not in ("triangular", "triangular2", "exp_range"):
                assert peak == pytest.approx(curve[top], rel=1e-6), sc.name


def test_finder_fed_scenarios_have_no_peak_and_cannot_be_scaled():
    study = scenarios.load_study("seeds")
    for name in ("cyclical-from-finder", "one-cycle-from-finder"):
        with pytest.raises(ValueError, match=rf"^Scenario '{name}' has no fixed peak learning "
                                             r"rate: its learning rates come from the LR range"):
            lr_scale.peak_lr(study.available[name])
        with pytest.raises(ValueError, match="cannot be scaled"):
            lr_scale.scaled(study.available[name], 2.0)


#: every LR schedule (one_cycle_momentum is a momentum) with LR arguments of few digits, so
#: that factors 3 and 1/4 scale them exactly at 4 significant digits
LINEAR_CASES = {
    "constant": {"value": 0.01},
    "linear": {"start": 0.001, "end": 0.01, "steps_frac": 0.5},
    "polynomial": {"initial": 0.1, "end": 0.001, "steps_frac": 1.0, "power": 2.0},
    "cosine": {"initial": 0.1, "steps_frac": 1.0, "alpha": 0.1},
    "warmup_cosine": {"initial": 0.001, "peak": 0.1, "warmup_frac": 0.1, "steps_frac": 1.0},
    "warmup_stable_decay": {"initial": 0.001, "peak": 0.1, "warmup_frac": 0.1,
                            "steps_frac": 1.0, "decay_frac": 0.2, "end": 0.002},
    "cosine_restarts": {"initial": 0.1, "first_decay_steps": 7, "m_mul": 0.5, "alpha": 0.1},
    "exponential": {"initial": 0.1, "decay_rate": 0.9, "decay_steps": 10, "staircase": True},
    "exp_decay": {"initial": 0.5, "k": 0.03},
    "inverse_time": {"initial": 0.1, "decay_rate": 0.5, "decay_steps": 10},
    "time_based": {"unit": "epoch", "initial": 0.5, "decay": 0.1, "tutorial_total": 10},
    "step_decay": {"initial": 0.5, "drop": 0.5, "every": 20},
    "piecewise": {"boundaries": [20, 50], "values": [0.01, 0.05, 0.002]},
    "triangular": {"base": 0.001, "max_lr": 0.01, "cycles": 2},
    "triangular2": {"base": 0.001, "max_lr": 0.01, "step_size": 10},
    "exp_range": {"base": 0.001, "max_lr": 0.01, "cycles": 3, "gamma": 0.99,
                  "tutorial_total": 300},
    "one_cycle": {"max_lr": 0.1, "steps_frac": 1.0},
}
QUARTERS = (0.25, 0.5, 0.75, 1.0)


def _at_quarters(sc) -> np.ndarray:
    curve = R.build_schedule(sc).curve(sc.steps_per_epoch, sc.budget["epochs"]).astype(float)
    return curve[[min(int(q * len(curve)), len(curve) - 1) for q in QUARTERS]]


@pytest.mark.parametrize("name", sorted(LINEAR_CASES))
def test_every_schedule_is_linear_in_its_lr_arguments(name):
    assert set(LINEAR_CASES) == set(S.SCHEDULES) - {"one_cycle_momentum"}
    sc = with_schedule({"name": name, **LINEAR_CASES[name]})
    curve = R.build_schedule(sc).curve(sc.steps_per_epoch, 4).astype(float)
    for factor in (3.0, 0.25):
        bigger = lr_scale.scaled(sc, factor)
        scaled_curve = R.build_schedule(bigger).curve(sc.steps_per_epoch, 4)
        close(scaled_curve, factor * curve, rtol=1e-6, atol=1e-7 * factor * curve.max())
        close(_at_quarters(bigger), factor * _at_quarters(sc), rtol=1e-6,
              atol=1e-7 * factor * curve.max())
        assert lr_scale.peak_lr(bigger) == pytest.approx(factor * lr_scale.peak_lr(sc), rel=1e-9)


def test_scaled_multiplies_every_lr_and_nothing_else():
    for sc in scenarios.load_study("seeds").available.values():
        if sc.finder is not None:
            continue
        factor = 0.3162  # a grid point over a peak: 4 significant digits lose up to 5e-5
        out = lr_scale.scaled(sc, factor)
        assert out.name == sc.name and out.optimizer_args == sc.optimizer_args
        assert out.budget == sc.budget and out.finder == sc.finder
        assert lr_scale.peak_lr(out) == pytest.approx(factor * lr_scale.peak_lr(sc), rel=1e-4), sc.name
        if sc.learning_rate is not None:
            assert out.learning_rate == float(f"{sc.learning_rate * factor:.4g}")
        if sc.schedule is not None:
            for key, value in sc.schedule.items():
                if key not in S.LR_ARGUMENTS:  # durations, fractions, rates, momenta
                    assert out.schedule[key] == value, (sc.name, key)
            close(_at_quarters(out), factor * _at_quarters(sc), rtol=1e-4)
        if sc.plateau is not None:
            assert out.plateau == {**sc.plateau, "min_lr": float(f"{1e-4 * factor:.4g}")}
    assert sc.schedule == scenarios.load_study("seeds").available[sc.name].schedule  # unchanged


def test_scaled_rounds_to_4_significant_digits_so_equal_grid_points_are_equal_configs():
    study = scenarios.load_study("seeds")
    fixed, warm = study.available["fixed-baseline"], study.available["warmup-cosine"]
    assert lr_scale.scaled(fixed, 1 / 3).learning_rate == 0.0003333
    for peak in lr_scale.lr_grid(0.01, 5, 2):
        assert lr_scale.scaled(warm, peak / lr_scale.peak_lr(warm)).schedule["peak"] == peak
        assert lr_scale.scaled(fixed, peak / lr_scale.peak_lr(fixed)).learning_rate == peak
    one_cycle = study.available["one-cycle-constant-momentum"]
    sgd = study.available["fixed-sgd-momentum"]
    assert lr_scale.scaled(one_cycle, 0.1).schedule["max_lr"] == lr_scale.scaled(sgd, 1.0).learning_rate


@pytest.mark.parametrize("factor,message", [
    (0.0, r"^Argument `factor` must be > 0\. Received: factor=0\.0$"),
    (-2.0, r"factor=-2\.0"), (float("nan"), r"factor=nan"), (float("inf"), r"factor=inf"),
    (True, r"factor=True"), ("2", r"factor='2'"),
])
def test_scaled_refuses_a_bad_factor(factor, message):
    with pytest.raises(ValueError, match=message):
        lr_scale.scaled(scenario("learning_rate = 0.1"), factor)


def test_lr_grid_is_log_spaced_centred_and_rounded():
    assert lr_scale.lr_grid(0.001, 5, 2) == [0.0001, 0.0003162, 0.001, 0.003162, 0.01]
    assert lr_scale.lr_grid(0.01, 3, 2) == [0.001, 0.01, 0.1]
    assert lr_scale.lr_grid(0.0084021, 1, 2) == [0.008402]
    grid = lr_scale.lr_grid(0.0025, 7, 3)
    assert len(grid) == 7 and grid[3] == 0.0025
    assert grid[0] == pytest.approx(0.0025 / 10 ** 1.5, rel=1e-4)
    ratios = np.diff(np.log10(grid))
    close(ratios, np.full(6, 0.5), rtol=1e-3)
    for value in grid:
        assert value == float(f"{value:.4g}")


@pytest.mark.parametrize("args,message", [
    ((0.0, 5, 2), r"^Argument `center` must be > 0\. Received: center=0\.0$"),
    ((float("nan"), 5, 2), r"center=nan"),
    ((0.001, 0, 2), r"`points` must be > 0\. Received: points=0"),
    ((0.001, 2.5, 2), r"`points` must be a positive integer\. Received: points=2\.5"),
    ((0.001, 5, 0), r"`decades` must be > 0\. Received: decades=0"),
    ((0.001, 5, float("inf")), r"decades=inf"),
])
def test_lr_grid_refuses_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        lr_scale.lr_grid(*args)


def test_resolve_never_imports_scenarios():
    tree = ast.parse(Path(R.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported.update(f"{node.module}.{a.name}" for a in node.names)
    assert not {m for m in imported if "scenarios" in m}, imported


def test_the_modules_examples_hold():
    for module in (R, lr_scale):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__
