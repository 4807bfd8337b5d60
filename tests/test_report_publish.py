"""The verdict in the MLflow UI (:mod:`lrstudy.report.publish`), on a small competition whose
numbers are planted: each final scenario run gets the params a reader compares strategies by
(only those it lacks: params are written once), its difference to the reference with the
interval, the call and a one-line description; the experiment's description is the verdict
with the leaderboard as a Markdown table linking the runs; tuning runs are left alone."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.entities import Metric, Param

from lrstudy import report
from lrstudy.execution import report_run
from lrstudy.report import publish
from lrstudy.report.links import Links
from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Tag

pytestmark = pytest.mark.xdist_group("publish")
STUDY = "contest"
SEEDS = 4
SEED_EFFECT = np.array([0.002, -0.001, 0.0, 0.003])
FINAL = {"ref": (0.880, 1e-3, "constant"), "other": (0.890, 3e-3, "warmup_cosine")}


@pytest.fixture(scope="module")
def contest(tmp_path_factory):
    """Two strategies, each tuned (a tuning scenario run, two grid points on two tuning seeds)
    and then run on 4 final seeds; ``other`` beats ``ref`` by exactly one point on every
    seed. ``other``'s final scenario run already has ``schedule`` set, to another value."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('publish') / 'mlflow.db'}"
    client = tracking.client(uri)
    exp_id = tracking.experiment_id(STUDY, uri, client)
    client.set_experiment_tag(exp_id, Tag.REFERENCE, "ref")
    client.set_experiment_tag(exp_id, Tag.MARGIN, "0.003")
    scenario_runs = {}
    for name, (accuracy, peak, schedule) in FINAL.items():
        for phase in ("tune", "final"):
            run_id = client.create_run(exp_id, tags={
                Tag.KIND: "scenario", Tag.STUDY: STUDY, Tag.SCENARIO: name, Tag.PHASE: phase,
                "mlflow.runName": f"{name}-{phase}"}).info.run_id
            client.set_terminated(run_id, "FINISHED")
            scenario_runs[name, phase] = run_id
            grid = [(peak, s) for s in range(2)] + [(peak / 10, s) for s in range(2)] \
                if phase == "tune" else [(peak, s) for s in range(SEEDS)]
            for lr, seed in grid:
                _trial(client, exp_id, name, phase, seed, lr, schedule, accuracy,
                       scenario_runs[name, phase])
    client.log_param(scenario_runs["other", "final"], "schedule", "set-before")
    return {"uri": uri, "client": client, "exp_id": exp_id, "runs": scenario_runs}


def _trial(client, exp_id, name, phase, seed, lr, schedule, accuracy, parent):
    run_id = client.create_run(exp_id, tags={
        Tag.KIND: "trial", Tag.STUDY: STUDY, Tag.SCENARIO: name, Tag.FAMILY: "fixed",
        Tag.PHASE: phase, Tag.SEED: str(seed), Tag.RUN_KEY: f"{name}-{phase}-{lr}-{seed}",
        Tag.DIVERGED: "false", Tag.PARENT_RUN: parent}).info.run_id
    params = {"optimizer": "adam", "schedule": schedule, "learning_rate": lr / 100,
              "peak_lr": lr, "model": "mlp128", "dataset": "fashion_mnist", "train_size": 1000,
              "batch_size": 64, "epochs": 2, "seed": seed, "num_classes": 10,
              "init_weights_sha": f"w{seed}", "batch_order_sha": f"b{seed}"}
    metrics = [Metric("val_accuracy", accuracy - 0.01, 0, 1)]
    if phase == "final":
        params["tune.seeds"] = 2
        metrics += [Metric("test_accuracy", accuracy + SEED_EFFECT[seed], 0, 2),
                    Metric("train_time_s", 10.0, 0, 2)]
    client.log_batch(run_id, metrics=metrics,
                     params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run_id, "FINISHED")


def test_final_scenario_runs_carry_params_the_difference_and_the_call(contest):
    text, _, reference, margin, _ = report_run.publish_verdict(STUDY, contest["uri"])
    assert (reference, margin) == ("ref", 0.003) and text.startswith("Best: other")
    client, runs = contest["client"], contest["runs"]
    other = client.get_run(runs["other", "final"]).data
    ref = client.get_run(runs["ref", "final"]).data
    # the tuned peak LR and the tuning seeds, as the finals logged them; a param set before
    # stays as it was (MLflow refuses a second value)
    assert other.params == {"optimizer": "adam", "schedule": "set-before", "peak_lr": "0.003",
                            "tune.seeds": "2"}
    assert ref.params == {"optimizer": "adam", "schedule": "constant", "peak_lr": "0.001",
                          "tune.seeds": "2"}
    # +1 point on every seed: the interval has no width
    assert (other.metrics["diff_vs_reference"], other.metrics["diff_ci_low"],
            other.metrics["diff_ci_high"]) == pytest.approx((1.0, 1.0, 1.0))
    assert other.tags[Tag.CALL] == "better" and ref.tags[Tag.CALL] == "reference"
    assert other.tags[Tag.NOTE] == ("**better** against the reference ref: +1.00 points "
                                    "[+1.00, +1.00] (simultaneous 95% interval, 4 paired seeds).")
    assert "diff_vs_reference" not in ref.metrics
    for name in FINAL:  # the tuning's scenario runs hold no verdict
        tuned = client.get_run(runs[name, "tune"]).data
        assert not tuned.params and not tuned.metrics and Tag.CALL not in tuned.tags
    # a second report writes nothing twice and fails on nothing
    report_run.publish_verdict(STUDY, contest["uri"])
    assert client.get_run(runs["other", "final"]).data.params == other.params


def test_the_experiment_describes_the_verdict_with_the_leaderboard(contest):
    _, _, _, _, markdown = report_run.publish_verdict(STUDY, contest["uri"])
    client, runs, exp_id = contest["client"], contest["runs"], contest["exp_id"]
    assert client.get_experiment(exp_id).tags[Tag.NOTE] == markdown
    trials = report.phases(report.load_trials(STUDY, contest["uri"]))["ranked"]
    found = report.verdicts(trials, "ref", 0.003)
    board = report.leaderboard_table(report.benchmark_table(trials, "ref", 0.003, found),
                                     trials, Links("", exp_id))
    assert markdown == publish.verdict_markdown(found, board)
    headline, table, details = markdown.split("\n\n")
    assert headline == report.verdict_headline(found) and headline.startswith("Best: other")
    assert details.strip() == report.verdict_details(found)
    rows = table.splitlines()
    assert rows[0].startswith("| rank | strategy | runs | test accuracy |") and len(rows) == 4
    # inside the UI the links are relative to it, open the training view and are named apart
    # from the runs list's own links, which carry the runs' names
    link = f"#/experiments/{exp_id}/runs/{runs['other', 'final']}?workflowType=machine_learning"
    assert rows[2].startswith(f"| 1 | other | [run]({link}) · [4 seeds](#/experiments/{exp_id}"
                              "/runs?workflowType=machine_learning&searchFilter=")
    assert "| +1.00 [+1.00, +1.00] | better | 0.003 | 10.0 |" in rows[2]
    assert "| reference | reference | 0.001 |" in rows[3]


def test_a_description_longer_than_mlflow_takes_is_cut_at_a_line_and_says_where_the_rest_is(
        store):
    """A suite's verdict with its leaderboards exceeded MLflow's 20,000 characters on an
    experiment tag and its report failed; the description is now cut at a line, and says
    where the whole text is."""
    lines = [f"| strategy-{i}@workload | +0.{i % 10} | [-0.1, +0.2] |" for i in range(900)]
    markdown = "\n".join(lines)
    assert len(markdown) > 20_000
    assert publish.within("short\ntext", 100, "elsewhere") == "short\ntext"
    cut = publish.within(markdown, 20_000, "the summary run's verdict.md")
    assert len(cut) <= 20_000 and cut.endswith("the whole text is the summary run's verdict.md)")
    kept = cut.split("\n\n... (cut")[0].split("\n")
    assert kept == lines[:len(kept)] and len(kept) > 400  # whole lines, nearly all that fit
    client = tracking.client(store)
    exp_id = tracking.experiment_id("long", store, client)
    publish.describe_experiment(client, exp_id, markdown)  # MLflow refused it before
    assert client.get_experiment(exp_id).tags[Tag.NOTE] == cut
