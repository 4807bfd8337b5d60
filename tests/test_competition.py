"""The fair benchmark: phases, grids, the validation winner, finals on fresh seeds, resume.

Unit tests on the competition's rules (with a real sqlite store holding hand-made runs), then
a tiny competition run for real through the command line: 3 strategies, 3 grid points,
3 final seeds, 2 epochs on 2,000 Fashion-MNIST images, checked from MLflow."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from conftest import run_cli

from lrstudy.spec import competition, lr_scale, resolve
from lrstudy.spec import study as scenarios
from lrstudy.tracking import store as tracking

TINY_COMPETITION = """
description = "a tiny competition"
seeds = 3
scenarios = ["fixed-too-large", "fixed-baseline", "fixed-sgd", "warmup-cosine"]
reference = "fixed-baseline"

[competition]
demos = ["fixed-too-large"]
grid_points = 3
grid_decades = 2
tune_seeds = 1
extend_decades = 0

[budget]
model = "mlp128"
dataset = "fashion_mnist"
train_size = 2000
val_size = 1000
batch_size = 64
epochs = 2
"""


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_COMPETITION)
    return scenarios.load_study(str(path))


def test_roles_phases_and_the_grid(study):
    comp = study.competition
    sc = study.scenarios
    assert comp.role(sc["fixed-too-large"]) == "demo"
    assert comp.phases(sc["fixed-baseline"]) == ("tune", "final")
    assert comp.grid(sc["fixed-baseline"]) == pytest.approx([1e-4, 1e-3, 1e-2])
    tune = competition.trials(comp, sc["fixed-baseline"], "tune", study.seeds)
    assert [t.peak_lr for t in tune] == pytest.approx([1e-4, 1e-3, 1e-2])
    assert {t.seed for t in tune} == {competition.TUNE_SEED_BASE}  # never a final seed
    assert not any(t.evaluate_test for t in tune)  # tuning never sees the test set
    assert [t.scenario.learning_rate for t in tune] == pytest.approx([1e-4, 1e-3, 1e-2])
    # a schedule is scaled as a whole: every LR of warmup-cosine moves with its peak
    w = competition.trials(comp, sc["warmup-cosine"], "tune", study.seeds)
    assert [t.scenario.schedule["peak"] / t.scenario.schedule["initial"] for t in w] == \
        pytest.approx([100.0] * 3)
    assert len({t.key for t in tune + w}) == 6
    with pytest.raises(competition.CompetitionError, match="tuning has not finished"):
        competition.trials(comp, sc["fixed-baseline"], "final", study.seeds)
    finals = competition.trials(comp, sc["fixed-baseline"], "final", study.seeds, 0.01)
    assert [t.seed for t in finals] == [0, 1, 2] and all(t.evaluate_test for t in finals)
    # equal configs are one trial: the key ignores names and words, not the phase
    renamed = lr_scale.scaled(sc["fixed-baseline"], 1.0)
    assert competition.key_of(renamed, 0, "final") == competition.key_of(
        study.available["adaptive-adam"], 0, "final")
    assert competition.key_of(renamed, 0, "final") != competition.key_of(renamed, 0, "demo")


@pytest.mark.parametrize("table, message", [
    ({"grid_points": 0}, "grid_points"), ({"grid_decades": math.nan}, "grid_decades"),
    ({"demos": "x"}, "demos"), ({"colour": 1}, "unknown key"), ({"tune_seeds": 10**6}, "tune"),
])
def test_bad_competition_tables_are_refused(table, message):
    with pytest.raises(competition.CompetitionError, match=message):
        competition.parse("s.toml [competition]", table)


def plant(client, exp, trial, val, diverged="false", test=0.5):
    """A hand-made FINISHED tuning run of ``trial`` (its test accuracy planted elsewhere)."""
    run = client.create_run(exp, tags={"lrstudy.kind": "trial", "lrstudy.run_key": trial.key,
                                       "lrstudy.diverged": diverged})
    client.log_metric(run.info.run_id, "val_accuracy", val)
    client.log_metric(run.info.run_id, "test_accuracy", test)
    client.set_terminated(run.info.run_id, "FINISHED")


def test_the_winner_is_the_best_validation_score_and_a_diverged_point_scores_worst(
        study, store):
    """Hand-made FINISHED tuning runs: the test accuracies are planted to point elsewhere,
    and the winner follows validation only."""
    comp, sc = study.competition, study.scenarios["fixed-sgd"]
    client = tracking.client(store)
    exp = tracking.experiment_id("tiny", store, client)
    grid = competition.trials(comp, sc, "tune", 3)
    plan = {0: (0.80, 0.99, "false"), 1: (0.85, 0.10, "false"), 2: (0.95, 0.50, "true")}
    for i, trial in enumerate(grid):
        assert competition.winner(comp, sc, client, exp) is None  # not all of them done
        val, test, diverged = plan[i]
        plant(client, exp, trial, val, diverged, test)
    tuned = competition.tuning(comp, sc, client, exp)
    assert tuned.scores[grid[2].peak_lr] == [-math.inf]  # diverged: worst, whatever its accuracy
    assert tuned.winner == grid[1].peak_lr and not tuned.capped


def test_the_winner_has_the_best_mean_over_the_tuning_seeds(study, store):
    """Three tuning seeds a point: the point with one lucky seed loses to the steadier one."""
    comp = dataclasses.replace(study.competition, tune_seeds=3)
    sc = study.scenarios["fixed-baseline"]
    client = tracking.client(store)
    exp = tracking.experiment_id("tiny", store, client)
    grid = competition.trials(comp, sc, "tune", 3)
    assert len(grid) == 9 and {t.seed for t in grid} == {1000, 1001, 1002}
    vals = {0: [0.80, 0.80, 0.80], 1: [0.90, 0.70, 0.70], 2: [0.82, 0.83, 0.84]}
    for i, trial in enumerate(grid):
        plant(client, exp, trial, vals[i // 3][i % 3])
    tuned = competition.tuning(comp, sc, client, exp)
    assert tuned.winner == grid[6].peak_lr  # mean 0.83, not the single 0.90
    assert tuned.scores[grid[3].peak_lr] == pytest.approx([0.90, 0.70, 0.70])


@pytest.mark.parametrize("peak_at, extended, capped", [
    (None, (0, 2), True),   # still rising at the cap: the edge winner is capped
    (1, (0, 2), False),     # the optimum one step above the grid: found, then interior
])
def test_the_grid_grows_beyond_an_edge_winner_up_to_its_cap(study, store, peak_at, extended,
                                                            capped):
    """A planted score that rises with the LR: the grid grows one step at a time above its
    top (3 points over 2 decades: 1 decade a step; extend_decades 2: 2 steps at most)."""
    comp = dataclasses.replace(study.competition, extend_decades=2.0)
    sc = study.scenarios["fixed-baseline"]
    client = tracking.client(store)
    exp = tracking.experiment_id("tiny", store, client)
    top = max(comp.grid(sc))

    def score(lr):  # rising in log LR, or peaked at the peak_at-th step above the grid
        steps = math.log10(lr / top)
        return 0.5 + 0.1 * (steps if peak_at is None else -abs(steps - peak_at))

    rounds = 0
    while (tuned := competition.tuning(comp, sc, client, exp)).pending:
        rounds += 1
        for trial in competition.trials(comp, sc, "tune", 3, points=list(tuned.pending)):
            plant(client, exp, trial, score(trial.peak_lr))
    assert rounds == 3  # the grid, then one point per extension step
    assert tuned.points == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert tuned.extended == extended and tuned.capped == capped
    assert tuned.winner == pytest.approx(1.0 if peak_at is None else 0.1)


def test_a_regression_competition_tunes_on_validation_rmse(study, store):
    """Lower is better: the point with the smallest val_rmse wins (not the smallest LR)."""
    comp, sc = study.competition, study.scenarios["fixed-baseline"]
    sc = dataclasses.replace(sc, budget={**sc.budget, "task": "regression"})
    client = tracking.client(store)
    exp = tracking.experiment_id("tiny", store, client)
    grid = competition.trials(comp, sc, "tune", 3)
    for trial, rmse in zip(grid, (0.9, 0.3, 0.6)):
        run = client.create_run(exp, tags={"lrstudy.kind": "trial",
                                           "lrstudy.run_key": trial.key,
                                           "lrstudy.diverged": "false"})
        client.log_metric(run.info.run_id, "val_rmse", rmse)
        client.set_terminated(run.info.run_id, "FINISHED")
    assert competition.winner(comp, sc, client, exp) == grid[1].peak_lr


def all_trials(uri, study):
    client = tracking.client(uri)
    exp = client.get_experiment_by_name(study).experiment_id
    return tracking.search(client, [exp], "tags.`lrstudy.kind` = 'trial'")


@pytest.mark.slow
def test_a_tiny_competition_tunes_on_validation_then_runs_finals_and_resumes(tmp_path, store):
    """The grid may grow by one step (1 decade) past each edge: wherever the winner sits, the
    finals run at the best of every point tried, and an edge winner is capped."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_COMPETITION.replace("extend_decades = 0", "extend_decades = 1"))
    env = {"LRSTUDY_RUNS_DIR": str(tmp_path / "runs")}
    proc = run_cli("run", "--study", path, "--tracking-uri", store, "--quiet", env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    runs = all_trials(store, "tiny")
    assert all(r.info.status == "FINISHED" for r in runs)
    by_phase: dict[str, list] = {}
    for r in runs:
        by_phase.setdefault(r.data.tags["lrstudy.phase"], []).append(r)
    assert len(by_phase["demo"]) == 1 and len(by_phase["final"]) == 9
    for r in by_phase["tune"]:  # never evaluated on the test set
        assert not any(k.startswith("test_") for k in r.data.metrics), r.data.metrics
    client = tracking.client(store)
    for phase, curves in (("tune", False), ("final", True), ("demo", True)):
        arts = {a.path for a in client.list_artifacts(by_phase[phase][0].info.run_id)}
        assert {"config.json", "model_summary.txt"} <= arts, (phase, arts)
        assert ("curves.png" in arts) == curves, (phase, arts)  # no PNG per tuning point
    for name in ("fixed-baseline", "fixed-sgd", "warmup-cosine"):
        tune = [r for r in by_phase["tune"] if r.data.tags["lrstudy.scenario"] == name]
        final = [r for r in by_phase["final"] if r.data.tags["lrstudy.scenario"] == name]
        lrs = sorted(float(r.data.params["peak_lr"]) for r in tune)
        assert 3 <= len(tune) <= 5 and len(final) == 3
        initial = scenarios.load_study(str(path)).competition.grid(
            scenarios.load_study(str(path)).scenarios[name])
        grown = {"below": lrs[0] < 0.99 * min(initial), "above": lrs[-1] > 1.01 * max(initial)}
        params = final[0].data.params
        assert (int(params["tune.extended_below"]), int(params["tune.extended_above"])) == \
            (int(grown["below"]), int(grown["above"]))
        won = float(params["peak_lr"])
        assert params["tune.capped"] == str(won in (lrs[0], lrs[-1])).lower()
        if won == lrs[0]:  # an edge winner is capped: its side grew as far as allowed
            assert grown["below"]
        if won == lrs[-1]:
            assert grown["above"]
        def score(r):
            diverged = r.data.tags["lrstudy.diverged"] == "true"
            return -math.inf if diverged else r.data.metrics["val_accuracy"]
        best = max(tune, key=lambda r: (score(r), -float(r.data.params["peak_lr"])))
        assert {r.data.params["peak_lr"] for r in final} == {best.data.params["peak_lr"]}
        assert sorted(int(r.data.tags["lrstudy.seed"]) for r in final) == [0, 1, 2]
        assert all("test_accuracy" in r.data.metrics for r in final)
    # resume: a finished study trains nothing
    again = run_cli("run", "--study", path, "--tracking-uri", store, "--quiet", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "done        0" in again.stdout
    assert f"skipped  {len(runs):4d}" in again.stdout
    assert len(all_trials(store, "tiny")) == len(runs)


def test_a_tuning_stack_gives_each_copy_what_it_trains_alone():
    """A strategy's grid x tuning seeds trains as one stack (each copy its own LR curve and
    seed); each copy's per-step losses and epoch metrics equal those of the same trial
    trained alone, to a relative 1e-5."""
    from lrstudy.tracking import metric_sink
    from lrstudy.training import fitting

    spec = scenarios.load_study("seeds", {"epochs": 2, "train_size": 2000})
    comp = dataclasses.replace(spec.competition, grid_points=2, tune_seeds=2)
    trials = competition.trials(comp, spec.scenarios["warmup-cosine"], "tune", 0)
    assert len({(t.peak_lr, t.seed) for t in trials}) == 4
    sinks = [metric_sink.MetricSink(None) for _ in trials]
    stacked = fitting.fit_stack([(t.scenario, t.seed, t.evaluate_test) for t in trials], sinks)
    assert len(stacked) == 4
    for trial, sink in zip(trials, sinks):
        alone = metric_sink.MetricSink(None)
        fitting.fit_scenario(trial.scenario, trial.seed, alone, evaluate_test=False)
        for key in ("step_loss", "step_learning_rate", "loss", "val_loss", "val_accuracy"):
            got, want = sink.points[key], alone.points[key]
            assert [s for s, _ in got] == [s for s, _ in want], key
            assert np.allclose([v for _, v in got], [v for _, v in want], rtol=1e-5,
                               atol=0), key


@pytest.mark.slow
def test_the_default_studys_plateau_rule_fires_in_most_finals():
    """At the default budget (8 epochs of 50,000 images) the default study's plateau rule
    lowers the LR in most of 5 seeds (patience 1/8 of training; the tutorial's 3 of 10 epochs
    fired in 2 of 5 finals)."""
    from lrstudy.tracking import metric_sink
    from lrstudy.training import fitting

    sc = scenarios.load_study("seeds").scenarios["plateau"]
    assert resolve.plateau_args(sc)["patience"] == 1
    sinks = [metric_sink.MetricSink(None) for _ in range(5)]
    fitting.fit_stack([(sc, seed, False) for seed in range(5)], sinks)
    fired = [min(v for _, v in s.points["learning_rate"]) < sc.learning_rate * 0.999
             for s in sinks]
    assert sum(fired) >= 3, fired
