"""A study with workloads: every strategy on every named budget, as the scenario "S@W"."""

from __future__ import annotations

import pandas as pd
import pytest

from lrstudy.report import verdict
from lrstudy.spec import competition
from lrstudy.spec import study as scenarios

SUITE = """
seeds = 2
reference = "fixed-baseline"
scenarios = ["fixed-baseline", "warmup-cosine", "prodigy", "fixed-from-finder-valley",
             "fixed-too-large"]
workloads = ["small", "wide"]

[budget]
dataset = "synthetic"
val_size = 200
batch_size = 32
epochs = 2

[budgets.small]
model = "mlp128"

[budgets.wide]
model = "mlp512_200"
epochs = 3

[competition]
demos = ["fixed-too-large"]
untuned = ["prodigy"]
grid_points = 3
tune_seeds = 2
"""


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "suite.toml"
    path.write_text(SUITE)
    return scenarios.load_study(str(path))


def test_each_strategy_runs_on_each_workload_with_its_budget(suite):
    names = [f"{s}@{w}" for w in ("small", "wide") for s in (
        "fixed-baseline", "warmup-cosine", "prodigy", "fixed-from-finder-valley",
        "fixed-too-large")]
    assert list(suite.scenarios) == names
    for name, sc in suite.scenarios.items():
        workload = name.split("@")[1]
        assert sc.budget["model"] == {"small": "mlp128", "wide": "mlp512_200"}[workload]
        assert sc.budget["epochs"] == {"small": 2, "wide": 3}[workload]
        assert scenarios.strategy_of(name) == name.split("@")[0]
    # a range-test-fed strategy's tuned twin is the twin on its own workload
    assert suite.scenarios["fixed-from-finder-valley@wide"].twin == "fixed-baseline@wide"
    # the same strategy on two workloads is two trials, not one
    keys = {competition.key_of(suite.scenarios[f"fixed-baseline@{w}"], 0, "final")
            for w in ("small", "wide")}
    assert len(keys) == 2


def test_roles_per_workload_and_prodigy_without_tuning(suite):
    comp = suite.competition
    roles = {n: comp.role(sc) for n, sc in suite.scenarios.items()}
    assert roles["fixed-too-large@wide"] == "demo"
    assert roles["prodigy@small"] == "untuned" and comp.phases(suite.scenarios["prodigy@small"]) == ("final",)
    assert roles["fixed-from-finder-valley@small"] == "finder"
    assert roles["warmup-cosine@small"] == "tuned"
    finals = competition.trials(comp, suite.scenarios["prodigy@wide"], "final", suite.seeds)
    assert [t.seed for t in finals] == [0, 1]
    assert {t.peak_lr for t in finals} == {1.0}  # its own settings: the multiplier 1.0
    tune = competition.trials(comp, suite.scenarios["warmup-cosine@small"], "tune", 0)
    assert len(tune) == 3 * 2


def test_the_verdict_compares_each_workload_with_its_own_reference():
    trials = pd.DataFrame({"scenario": ["fixed-baseline@small", "warmup-cosine@small"]})
    assert verdict.reference_of(trials, "fixed-baseline") == "fixed-baseline@small"
    assert verdict.reference_of(trials, "warmup-cosine") == "warmup-cosine@small"


@pytest.mark.parametrize("workloads, error", [
    ('["nosuch"]', "workload 'nosuch' is not a [budgets.*] table"),
    ('"small"', "workloads must be a list of [budgets.*] names"),
    ('["small", "small"]', "workloads names a budget twice"),
])
def test_bad_workloads_are_one_line(tmp_path, workloads, error):
    path = tmp_path / "bad.toml"
    path.write_text(SUITE.replace('workloads = ["small", "wide"]', f"workloads = {workloads}"))
    with pytest.raises(scenarios.SpecError, match=error.replace("[", r"\[").replace("]", r"\]")
                       .replace("*", r"\*")):
        scenarios.load_study(str(path))


def test_a_study_is_loaded_once_per_process_until_its_file_changes(tmp_path):
    """The runner and a kept kernel load a study once; an edited file is read again."""
    import os

    path = tmp_path / "suite.toml"
    path.write_text(SUITE)
    first = scenarios.load_study(str(path))
    assert scenarios.load_study(str(path)) is first
    assert scenarios.load_study(str(path), {"epochs": 1}) is not first  # other overrides
    path.write_text(SUITE.replace("seeds = 2", "seeds = 4"))
    os.utime(path, ns=(first_ns := path.stat().st_mtime_ns, first_ns + 1_000_000))
    again = scenarios.load_study(str(path))
    assert again is not first and again.seeds == 4


def test_a_study_on_a_users_data_is_loaded_every_time(tmp_path):
    (tmp_path / "data.csv").write_text("a,b,label\n" + "".join(
        f"{i % 7},{i % 5},{i % 2}\n" for i in range(60)))
    path = tmp_path / "mine.toml"
    path.write_text('scenarios = ["fixed-baseline"]\n[budget]\n'
                    'dataset = { csv = "data.csv", label = "label" }\n')
    assert scenarios.load_study(str(path)) is not scenarios.load_study(str(path))


def test_lrstudy_check_lists_the_suites_workloads_budgets_and_trials():
    from conftest import run_cli

    out = run_cli("check", "--study", "suite", check=True).stdout
    assert "= 1230 trials on 6 budget(s)" in out and "6 untuned" in out
    for label in ("mlp128 on fashion_mnist (50000 train / 10000 val), batch 128, 8 epochs",
                  "mlp512_200 on fashion_mnist (16000 train / 4000 val), batch 64, 5 epochs",
                  "cnn on fashion_mnist (1024 train / 2000 val)",
                  "convnet_bn on fashion_mnist (2048 train / 2000 val)",
                  "mlp128 on digits (1137 train / 300 val)",
                  "mlp128 on friedman1 (8000 train / 2000 val)"):
        assert label in out, label
    assert "prodigy@friedman1" in out and "trials per phase: demo 0, tune 810, final 420" in out
    # every model of known size: an estimate, with what the Keras stacks add without XLA
    text = " ".join(out.split())
    assert "estimated time: about " in text and "estimated time: none" not in text
    assert "trial-steps of budgets trained without XLA (jit_compile = false) add" in text


def test_the_built_in_datasets_sizes_and_tasks_are_the_loaders():
    from lrstudy.data import datasets
    from lrstudy.spec import budget

    assert set(budget.DATASET_SIZES) == set(datasets.DATASETS)
    for name in ("synthetic", "digits", "friedman1", "sequence"):  # generated or bundled
        assert budget.DATASET_SIZES[name] == datasets.pool_size(name), name
    assert set(budget.REGRESSION_DATASETS) == {
        n for n in datasets.DATASETS if datasets.task_of(n) == "regression"}


def test_a_built_in_regression_dataset_needs_its_task(tmp_path):
    path = tmp_path / "reg.toml"
    path.write_text('scenarios = ["fixed-baseline"]\n[budget]\ndataset = "friedman1"\n'
                    'val_size = 2000\n')
    with pytest.raises(scenarios.SpecError, match='friedman1 is a regression dataset: set '
                                                  'task = "regression"'):
        scenarios.load_study(str(path))
    path.write_text(path.read_text() + 'task = "regression"\n')
    (sc,) = scenarios.load_study(str(path)).scenarios.values()
    assert sc.task == "regression"


def test_suite_full_is_the_suite_at_fuller_budgets():
    """The same strategies on the same workloads (models, data, batch sizes, tasks), each
    workload on at least the suite's training set and for more epochs, more final seeds and
    a wider tuning grid; it loads, passes the deep checks and is listed by `lrstudy check`
    with an estimate (every model of known size)."""
    from conftest import run_cli

    from lrstudy.spec import cost

    suite, full = scenarios.load_study("suite"), scenarios.load_study("suite-full")
    # the suite's scenarios, and the Transformer's that do not fit the suite's hour
    assert set(suite.scenarios) < set(full.scenarios)
    assert {n.split("@")[1] for n in set(full.scenarios) - set(suite.scenarios)} == {
        "transformer-sequence"}
    assert full.reference == suite.reference and full.margin == suite.margin
    assert full.seeds > suite.seeds
    comp, small = full.competition, suite.competition
    assert set(small.untuned) < set(comp.untuned) and comp.tune_seeds == small.tune_seeds
    assert comp.grid_points > small.grid_points and comp.grid_decades > small.grid_decades
    for name, mine in suite.scenarios.items():
        sc = full.scenarios[name]
        for key in ("model", "dataset", "batch_size", "task", "jit_compile"):
            assert sc.budget[key] == mine.budget[key], (name, key)
        assert sc.train_size >= mine.train_size and sc.budget["epochs"] > mine.budget["epochs"]
        assert sc.twin == mine.twin
    scenarios.validate(full)
    plans = cost.plan(full.competition, list(full.scenarios.values()), full.seeds)
    assert cost.estimate(plans, 2, cpus=2).seconds is not None
    out = run_cli("check", "--study", "suite-full", check=True).stdout
    assert "= 2303 trials on 7 budget(s)" in out and "estimated time: about " in out
    assert "cnn on fashion_mnist (50000 train / 10000 val), batch 64, 12 epochs" in out
