"""A study with workloads in the MLflow UI (lrstudy.report.publish, lrstudy.execution.report_run)
on a planted store: two workloads of different tasks, each strategy's scenario run judged
against its own workload's reference in its own metric, its share of the answer across
workloads on it, and the answer across workloads opening the descriptions and kept, as
tables and figures, on the summary run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Metric, Param

from lrstudy.execution import report_run
from lrstudy.report import publish
from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Tag

pytestmark = pytest.mark.xdist_group("publish_workloads")
STUDY = "two-workloads"
SEEDS = 4
SEED_EFFECT = np.array([0.002, -0.001, 0.0, 0.003])
#: per workload: its dataset, task and each strategy's test score (accuracy, or RMSE)
WORKLOADS = {"cls": ("digits", "classification", {"fixed-baseline": 0.88, "warmup-cosine": 0.89}),
             "reg": ("friedman1", "regression", {"fixed-baseline": 0.30, "warmup-cosine": 0.28})}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Each strategy's final scenario run on each workload and its 4 final seeds:
    warmup-cosine beats fixed-baseline by exactly 1 point on ``cls`` and by exactly 0.02 RMSE
    on ``reg``, seed by seed."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('publish_workloads') / 'mlflow.db'}"
    client = tracking.client(uri)
    exp_id = tracking.experiment_id(STUDY, uri, client)
    client.set_experiment_tag(exp_id, Tag.REFERENCE, "fixed-baseline")
    client.set_experiment_tag(exp_id, Tag.MARGIN, "0.003")
    runs = {}
    for workload, (dataset, task, scores) in WORKLOADS.items():
        for strategy, score in scores.items():
            name = f"{strategy}@{workload}"
            runs[name] = client.create_run(exp_id, tags={
                Tag.KIND: "scenario", Tag.STUDY: STUDY, Tag.SCENARIO: name,
                Tag.PHASE: "final", "mlflow.runName": f"{name}-final"}).info.run_id
            client.set_terminated(runs[name], "FINISHED")
            for seed in range(SEEDS):
                _trial(client, exp_id, name, seed, dataset, task, score, runs[name])
    return {"uri": uri, "client": client, "exp_id": exp_id, "runs": runs}


def _trial(client, exp_id, name, seed, dataset, task, score, parent):
    run_id = client.create_run(exp_id, tags={
        Tag.KIND: "trial", Tag.STUDY: STUDY, Tag.SCENARIO: name, Tag.FAMILY: "fixed",
        Tag.PHASE: "final", Tag.SEED: str(seed), Tag.RUN_KEY: f"{name}-{seed}",
        Tag.DIVERGED: "false", Tag.PARENT_RUN: parent}).info.run_id
    params = {"optimizer": "adam", "peak_lr": 1e-3, "learning_rate": 1e-3, "model": "mlp128",
              "dataset": dataset, "train_size": 1000, "batch_size": 64, "epochs": 2,
              "seed": seed, "num_classes": 10 if task == "classification" else 1,
              "init_weights_sha": f"w{seed}", "batch_order_sha": f"b{seed}"}
    if task == "regression":  # a classification's trials carry no task param
        params["task"] = task
    metric = "test_accuracy" if task == "classification" else "test_rmse"
    effect = SEED_EFFECT[seed] if task == "classification" else -SEED_EFFECT[seed]
    metrics = [Metric(metric, score + effect, 0, 0), Metric("train_time_s", 10.0, 0, 0)]
    client.log_batch(run_id, metrics=metrics,
                     params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run_id, "FINISHED")


@pytest.fixture(scope="module")
def published(suite):
    return report_run._publish(STUDY, suite["uri"], suite["client"], suite["exp_id"], None,
                               None)


def test_each_workload_against_its_own_reference_in_its_own_metric(suite, published):
    client, runs = suite["client"], suite["runs"]
    data = {name: client.get_run(run_id).data for name, run_id in runs.items()}
    cls, reg = data["warmup-cosine@cls"], data["warmup-cosine@reg"]
    assert cls.metrics["diff_vs_reference"] == pytest.approx(1.0)  # points
    assert cls.tags[Tag.NOTE].startswith(
        "**better** against the reference fixed-baseline@cls: +1.00 points [+1.00, +1.00]")
    assert reg.metrics["diff_vs_reference"] == pytest.approx(-0.02)  # the RMSE's change
    assert reg.metrics["test_rmse_mean"] == pytest.approx(0.28 - SEED_EFFECT.mean())
    assert "test_accuracy_mean" not in reg.metrics
    assert reg.tags[Tag.NOTE].startswith(
        "**better** against the reference fixed-baseline@reg: -0.02 RMSE change")
    for workload in WORKLOADS:
        ref = data[f"fixed-baseline@{workload}"]
        assert ref.tags[Tag.CALL] == "reference" and ref.tags[Tag.REFERENCE] == "true"
        assert "diff_vs_reference" not in ref.metrics


def test_each_scenario_run_carries_its_share_of_the_answer_across(suite, published):
    client, runs = suite["client"], suite["runs"]
    data = {name: client.get_run(run_id).data.metrics for name, run_id in runs.items()}
    for workload in WORKLOADS:
        best, ref = data[f"warmup-cosine@{workload}"], data[f"fixed-baseline@{workload}"]
        assert best["performance_ratio"] == 1.0 and ref["performance_ratio"] > 1.0
        assert best["normalized_score"] == pytest.approx(1.0)
        assert ref["normalized_score"] == pytest.approx(0.0, abs=1e-9)
        assert (best["pairwise_wins"], best["pairwise_losses"]) == (1.0, 0.0)
        assert (ref["pairwise_wins"], ref["pairwise_losses"]) == (0.0, 1.0)
    # the error ratio in each workload's own metric: 12 / 11 (errors of accuracy), 0.30 / 0.28
    cls, reg = data["fixed-baseline@cls"], data["fixed-baseline@reg"]
    assert cls["performance_ratio"] == pytest.approx(
        (1 - 0.88 - SEED_EFFECT.mean()) / (1 - 0.89 - SEED_EFFECT.mean()))
    assert reg["performance_ratio"] == pytest.approx(
        (0.30 - SEED_EFFECT.mean()) / (0.28 - SEED_EFFECT.mean()))


def test_the_answer_across_opens_the_descriptions(suite, published):
    text, _, reference, _, markdown, across, headline = published
    assert reference == "fixed-baseline" and across.workloads == ("cls", "reg")
    assert headline.startswith("**Across 2 workloads: warmup-cosine** has the highest "
                               "aggregate score")
    assert text.startswith(headline + "\n\n")
    assert markdown.startswith(headline + "\n\n")
    assert suite["client"].get_experiment(suite["exp_id"]).tags[Tag.NOTE] == markdown
    # each workload's leaderboard in its own metric: no RMSE read as an accuracy
    rows = {line.split(" | ")[2]: line for line in markdown.splitlines()
            if line.startswith("| ") and "@" in line}
    header = next(line for line in markdown.splitlines() if line.startswith("| rank"))
    assert "| test accuracy / RMSE | vs reference |" in header
    rmse = 0.28 - SEED_EFFECT.mean()
    assert f"| {rmse:.4f} ± " in rows["warmup-cosine@reg"]
    assert "| -0.02 [-0.02, -0.02] | better |" in rows["warmup-cosine@reg"]
    assert "orderByKey=metrics.%60test_rmse%60&orderByAsc=true" in rows["warmup-cosine@reg"]
    assert f"| {0.89 + SEED_EFFECT.mean():.4f} ± " in rows["warmup-cosine@cls"]
    assert "| +1.00 [+1.00, +1.00] | better |" in rows["warmup-cosine@cls"]
    assert "orderByKey=metrics.%60test_accuracy%60" in rows["warmup-cosine@cls"]


def test_the_summary_run_keeps_the_answer_across_as_tables_and_figures(suite, published,
                                                                         tmp_path):
    text, table, _, _, markdown, across, headline = published
    page = tmp_path / "summary.html"
    page.write_text("<html></html>")
    client = suite["client"]
    run_id = report_run._log_summary(STUDY, suite["exp_id"], client, [page], markdown, table,
                                     None, across, headline)
    run = client.get_run(run_id)
    assert run.data.tags[Tag.NOTE] == markdown and run.info.status == "FINISHED"
    folder = publish.ACROSS_FOLDER
    logged = {f.path for f in client.list_artifacts(run_id, folder)}
    for name in ("aggregate_score", "normalized_scores", "performance_ratios",
                 "performance_profile", "pairwise_calls", "win_tie_loss", "calibration"):
        assert f"{folder}/{name}.csv" in logged, name
    for name in ("aggregate_score", "performance_profiles", "win_tie_loss"):
        assert f"{folder}/{name}.png" in logged, name
    assert {f"{folder}/aggregate_score.json", f"{folder}/answer.json"} <= logged
    def read(name):
        return Path(client.download_artifacts(run_id, f"{folder}/{name}",
                                              str(tmp_path))).read_text()

    answer = json.loads(read("answer.json"))
    assert answer["headline"] == headline and answer["workloads"] == ["cls", "reg"]
    assert answer["aggregate_score"][0]["strategy"] == "warmup-cosine"
    csv = read("aggregate_score.csv").splitlines()
    assert csv[0] == "strategy,iqm,low,high,seeds,workloads"
    assert csv[1].startswith("warmup-cosine,1.0,")
