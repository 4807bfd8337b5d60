"""Studies as data: the catalogue, the built-in studies, user files and their errors."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from lrstudy import scenarios

SHARED = Path(__file__).resolve().parents[2] / "shared" / "scenarios.md"


def catalogue_names_in_markdown() -> set[str]:
    """Scenario names from the first column of ../shared/scenarios.md's tables."""
    names = set()
    for line in SHARED.read_text().splitlines():
        m = re.match(r"\|\s*([a-z][a-z0-9-]*(?:,\s*[a-z][a-z0-9-]*)*)\s*\|", line)
        if m and m.group(1) not in ("name", "scenario"):
            names.update(n.strip() for n in m.group(1).split(","))
    return {n for n in names if "-" in n or n in ("plateau",)} - {
        "warmup-tutorial", "decay-tutorial", "fixed-tutorial", "tf-tutorial"}


def test_seeds_lists_every_scenario_of_the_catalogue():
    study = scenarios.load_study("seeds")
    assert study.seeds >= 3
    assert set(scenarios.catalogue()) <= set(study.scenarios)
    if SHARED.exists():
        missing = catalogue_names_in_markdown() - set(study.scenarios)
        assert not missing, missing
    # one shared budget
    budgets = {tuple(sorted(sc.budget.items())) for sc in study.scenarios.values()}
    assert len(budgets) == 1


def test_seeds_original_reproduces_each_familys_budget():
    study = scenarios.load_study("seeds-original")
    b = {name: sc.budget for name, sc in study.scenarios.items()}
    decay = b["decay-linear"]
    assert (decay["model"], decay["train_size"], decay["val_size"], decay["batch_size"],
            decay["epochs"]) == ("mlp512_200", 16000, 4000, 64, 100)
    fixed = b["fixed-baseline"]
    assert (fixed["model"], fixed["dataset"], fixed["batch_size"], fixed["epochs"]) == (
        "cnn", "mnist", 250, 25)
    assert fixed["val_size"] == 12000  # 20% of 60k
    warm = b["warmup-linear"]
    assert (warm["model"], warm["dataset"], warm["batch_size"], warm["epochs"]) == (
        "mlp128", "fashion_mnist", 32, 5)
    plateau = b["plateau"]
    assert (plateau["model"], plateau["batch_size"], plateau["epochs"]) == ("mlp_dropout", 128, 10)
    # the tutorial's own constants where they are tied to its epochs
    sc = study.scenarios["decay-time"]
    spec = scenarios.resolve_per_total(sc.schedule, scenarios.schedule_total(sc))
    assert spec["decay"] == pytest.approx(0.5 / 100)
    sc = study.scenarios["decay-keras-per-step"]
    assert sc.steps_per_epoch == 250  # 16,000 images at batch 64: the trap's numbers
    assert study.scenarios["warmup-piecewise"].schedule["boundaries"] == [1000, 2000, 3000]


def test_fractions_keep_the_shape_when_the_budget_changes():
    for epochs in (5, 20):
        sc = scenarios.load_study("seeds", {"epochs": epochs}).scenarios["decay-step"]
        built = scenarios.build_schedule(sc)
        # 0.5 * 0.8 ** floor(epoch / (epochs / 10)): ten drops over training
        assert float(built.fn(epochs - 1)) == pytest.approx(
            0.5 * 0.8 ** math.floor((epochs - 1) / max(1, round(epochs / 10))), rel=1e-6)


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
            built = scenarios.build_schedule(sc)
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
    ('[budget]\nepochs = 0\n', "epochs must be > 0"),
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
