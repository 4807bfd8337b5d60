"""The fair benchmark: phases, grids, the validation winner, finals on fresh seeds, resume.

Unit tests on the competition's rules (with a real sqlite store holding hand-made runs), then
a tiny competition run for real through the command line: 3 strategies, 3 grid points,
3 final seeds, 2 epochs on 2,000 Fashion-MNIST images, checked from MLflow."""

from __future__ import annotations

import math

import pytest

from conftest import run_cli
from lrstudy import competition, resolve, scenarios, tracking

TINY_COMPETITION = """
description = "a tiny competition"
seeds = 3
scenarios = ["fixed-too-large", "fixed-baseline", "fixed-sgd", "warmup-cosine"]
reference = "fixed-baseline"

[competition]
demos = ["fixed-too-large"]
grid_points = 3
grid_decades = 2

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
    renamed = resolve.scaled(sc["fixed-baseline"], 1.0)
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
        val, test, diverged = plan[i]
        run = client.create_run(exp, tags={"lrstudy.kind": "trial", "lrstudy.run_key": trial.key,
                                           "lrstudy.diverged": diverged})
        client.log_metric(run.info.run_id, "val_accuracy", val)
        client.log_metric(run.info.run_id, "test_accuracy", test)
        assert competition.winner(comp, sc, client, exp) is None  # not all of them done
        client.set_terminated(run.info.run_id, "FINISHED")
    scores = competition.scores(comp, sc, client, exp)
    assert scores[grid[2].peak_lr] == -math.inf  # diverged: worst, whatever its accuracy
    assert competition.winner(comp, sc, client, exp) == grid[1].peak_lr


def all_trials(uri, study):
    client = tracking.client(uri)
    exp = client.get_experiment_by_name(study).experiment_id
    return tracking.search(client, [exp], "tags.`lrstudy.kind` = 'trial'")


@pytest.mark.slow
def test_a_tiny_competition_tunes_on_validation_then_runs_finals_and_resumes(tmp_path, store):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_COMPETITION)
    env = {"LRSTUDY_RUNS_DIR": str(tmp_path / "runs")}
    proc = run_cli("run", "--study", path, "--tracking-uri", store, "--quiet", env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    runs = all_trials(store, "tiny")
    assert all(r.info.status == "FINISHED" for r in runs)
    by_phase: dict[str, list] = {}
    for r in runs:
        by_phase.setdefault(r.data.tags["lrstudy.phase"], []).append(r)
    assert {p: len(v) for p, v in by_phase.items()} == {"demo": 1, "tune": 9, "final": 9}
    for r in by_phase["tune"]:  # never evaluated on the test set
        assert not any(k.startswith("test_") for k in r.data.metrics), r.data.metrics
    for name in ("fixed-baseline", "fixed-sgd", "warmup-cosine"):
        tune = [r for r in by_phase["tune"] if r.data.tags["lrstudy.scenario"] == name]
        final = [r for r in by_phase["final"] if r.data.tags["lrstudy.scenario"] == name]
        assert len(tune) == 3 and len(final) == 3
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
    assert "done        0" in again.stdout and "skipped    19" in again.stdout
    assert len(all_trials(store, "tiny")) == len(runs)
