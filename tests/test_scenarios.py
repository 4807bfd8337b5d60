"""Studies as data: the catalogue, the built-in studies, user files and their errors."""

from __future__ import annotations

import re

import pytest

from lrstudy.spec import resolve
from lrstudy.spec import study as scenarios

#: Every scenario the five tutorials demonstrate, and today's practice, by name.
REQUIRED = {
    "fixed-too-large", "fixed-large", "fixed-baseline", "fixed-small", "fixed-too-small",
    "fixed-sgd", "warmup-constant", "warmup-linear", "warmup-piecewise", "warmup-cosine",
    "decay-linear", "decay-time", "decay-exponential", "decay-step", "decay-keras-per-step",
    "decay-cosine", "decay-exponential-keras", "plateau", "adaptive-adam", "adaptive-adagrad",
    "adaptive-adadelta-default", "adaptive-adadelta", "adaptive-rmsprop", "adaptive-adamax",
    "adaptive-nadam", "cyclical-triangular", "cyclical-triangular2", "cyclical-exp-range",
    "one-cycle", "cyclical-from-finder", "one-cycle-from-finder", "linear-to-zero",
    "warmup-stable-decay", "adamw-cosine", "schedule-free",
}


def test_the_default_study_is_a_competition_over_the_whole_catalogue():
    study = scenarios.load_study("seeds")
    comp = study.competition
    assert study.seeds >= 5 and comp.grid_points >= 5 and comp.grid_decades >= 2
    assert study.reference == "fixed-baseline" and study.margin == 0.003
    # every scenario of the catalogue can be named with --scenarios, today's names included
    assert set(scenarios.catalogue()) <= set(study.available)
    assert REQUIRED <= set(study.available), REQUIRED - set(study.available)
    # what runs by default: the demonstrations, and at least one strategy of every family
    # plus today's practice
    default = study.scenarios.values()
    assert {sc.name for sc in default if comp.role(sc) == "demo"} == set(comp.demos)
    competing = [sc for sc in default if comp.role(sc) != "demo"]
    assert {sc.family for sc in competing} >= set(scenarios.FAMILIES) - {"finder"}
    assert any(sc.finder is not None for sc in competing)
    assert {"linear-to-zero", "warmup-stable-decay", "schedule-free"} <= set(study.scenarios)
    # one shared budget
    budgets = {tuple(sorted(sc.budget.items())) for sc in study.available.values()}
    assert len(budgets) == 1


def test_the_full_benchmark_runs_every_distinct_strategy():
    from lrstudy.execution import study_plan

    study = scenarios.load_study("benchmark-full")
    kept, merged = study_plan.distinct(study.select(None))
    assert study.seeds == 10 and study.competition.grid_points == 9 and not merged
    not_run = set(study.available) - set(study.scenarios)
    # what is left out trains what a selected scenario trains, at another centre of its grid
    assert not_run == {"fixed-large", "fixed-small", "warmup-constant", "adaptive-adam",
                       "decay-adam"}


def test_seeds_original_reproduces_each_familys_budget():
    study = scenarios.load_study("seeds-original")
    b = {name: sc.budget for name, sc in study.scenarios.items()}
    decay = b["decay-linear"]
    assert (decay["model"], decay["train_size"], decay["val_size"], decay["batch_size"],
            decay["epochs"]) == ("mlp512_200", 16000, 4000, 64, 100)
    fixed = b["fixed-baseline"]
    requested = fixed.get("dataset_substituted", "").split(" -> ")[0] or fixed["dataset"]
    assert (fixed["model"], requested, fixed["batch_size"], fixed["epochs"]) == (
        "cnn", "mnist", 250, 25)
    assert fixed["val_size"] == 12000  # 20% of 60k
    warm = b["warmup-linear"]
    assert (warm["model"], warm["dataset"], warm["batch_size"], warm["epochs"]) == (
        "mlp128", "fashion_mnist", 32, 5)
    plateau = b["plateau"]
    assert (plateau["model"], plateau["batch_size"], plateau["epochs"]) == ("mlp_dropout", 128, 10)
    sc = study.scenarios["decay-keras-per-step"]
    assert sc.steps_per_epoch == 250  # 16,000 images at batch 64: the trap's numbers
    assert study.scenarios["warmup-piecewise"].schedule["boundaries"] == [1000, 2000, 3000]


def test_lr_sweep_grid_is_configurable_up_to_deepobs(tmp_path):
    study = scenarios.load_study("lr-sweep")
    lrs = sorted(sc.learning_rate for sc in study.scenarios.values())
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    path = tmp_path / "sweep36.toml"
    path.write_text('[budget]\nepochs = 2\n[sweep]\noptimizer = "adam"\nmin = 1e-5\n'
                    'max = 100.0\npoints = 36\n')
    study = scenarios.load_study(str(path))
    lrs = sorted(sc.learning_rate for sc in study.scenarios.values())
    assert len(lrs) == 36 and lrs[0] == pytest.approx(1e-5) and lrs[-1] == pytest.approx(100)
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-3)  # log-spaced


def test_every_builtin_scenario_validates():
    for name in scenarios.study_names():
        study = scenarios.load_study(name)
        scenarios.validate(study)
        for sc in study.scenarios.values():
            built = resolve.build_schedule(sc)
            if built is not None:
                curve = built.curve(sc.steps_per_epoch, sc.budget["epochs"])
                assert len(curve) == sc.steps_per_epoch * sc.budget["epochs"]
                assert (curve > 0).all() or sc.schedule["name"] in ("polynomial", "linear")


@pytest.mark.parametrize("text, match", [
    ('seeds = 1\nbogus = 3\n', "unknown key 'bogus'"),
    ('[budget]\nepochz = 3\n', "unknown key 'epochz'"),
    ('[budget]\nepochs = "3"\n', "'epochs' must be an integer"),
    ('scenarios = ["nope"]\n', "unknown scenario 'nope'"),
    ('[scenario.fixed-baseline]\nlearnin_rate = 1\n', "unknown key 'learnin_rate'"),
    ('[scenario.x]\nfamily = "weird"\nlearning_rate = 0.1\n', "family must be one of"),
    ('[budget]\nepochs = 0\n', "epochs must be >= 1"),
    ('[budget]\ntrain_size = 70000\n', "train_size 70000 is larger than the data"),
    ('[budget]\ntrain_size = 100\nbatch_size = 500\n', "batch_size 500 is larger"),
    ('seeds = [1\n', "not valid TOML"),
])
def test_bad_study_files_name_the_file_and_key(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(scenarios.SpecError, match=re.escape(match)) as err:
        scenarios.load_study(str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("table, match", [
    ('optimizer = "adamw2"\nlearning_rate = 0.1', "unknown optimizer 'adamw2'"),
    ('learning_rate = 0.0', "learning_rate"),
    ('learning_rate = nan', "learning_rate"),
    ('schedule = { name = "nope" }', "nope"),
    ('schedule = { name = "triangular", base = 0.001, max_lr = 0.01, step_size = 0 }',
     "step_size"),
    ('schedule = { name = "one_cycle", max_lr = 0.1, steps_frac = 1.0, pct_start = 1.5 }',
     "pct_start"),
    ('schedule = { name = "exponential", initial = 0.1, decay_rate = 0.9, decay_steps = 0 }',
     "decay_steps"),
    ('learning_rate = 0.1\nplateau = { factor = 2.0 }', "factor"),
    ('schedule = { name = "cosine", initial = 0.1, steps_frac = 1.0 }\nplateau = { factor = 0.5 }',
     "ReduceLROnPlateau needs a plain learning rate"),
])
def test_bad_scenarios_are_rejected_before_training(tmp_path, table, match):
    path = tmp_path / "bad.toml"
    path.write_text(f'scenarios = ["x"]\n[budget]\ndataset = "synthetic"\nval_size = 200\n'
                    f'[scenario.x]\nfamily = "fixed"\n{table}\n')
    study = scenarios.load_study(str(path))
    with pytest.raises(scenarios.SpecError, match=re.escape(match)) as err:
        scenarios.validate(study)
    assert "scenario 'x'" in str(err.value) and "\n" not in str(err.value)


def test_list_shows_studies_and_scenarios(capsys):
    from lrstudy import cli

    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("seeds", "seeds-original", "smoke", "lr-sweep", "one-cycle-from-finder"):
        assert name in out


def test_list_into_a_reader_that_goes_away_stops_quietly():
    """`lrstudy list | head -1`: the pipe closes under it; no traceback, status 1."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "lrstudy", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1 and "Traceback" not in err and "BrokenPipe" not in err
