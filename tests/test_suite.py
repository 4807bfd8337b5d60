"""A shrunken suite end to end: every strategy on two workloads of different tasks (a
classification and a regression) through papermill into MLflow, then the report's answer
across workloads (issue 37's shape on data that trains in seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import finished_trials, run_cli

pytestmark = pytest.mark.slow

SHRUNKEN = """
seeds = 2
reference = "fixed-baseline"
scenarios = ["fixed-baseline", "warmup-cosine", "prodigy", "fixed-from-finder-valley"]
workloads = ["small", "reg"]

[budget]
dataset = "synthetic"
val_size = 200
batch_size = 32
epochs = 2

[budgets.small]
model = "mlp128"

[budgets.reg]  # Friedman #1: scored by RMSE, lower is better
model = "mlp128"
dataset = "friedman1"
task = "regression"
train_size = 512
jit_compile = false

[competition]
untuned = ["prodigy"]
grid_points = 2
grid_decades = 1
tune_seeds = 1
extend_decades = 0
"""


def test_a_shrunken_suite_runs_and_reports_across_workloads(tmp_path, store):
    path = tmp_path / "shrunken.toml"
    path.write_text(SHRUNKEN)
    env = {"LRSTUDY_RUNS_DIR": str(tmp_path / "runs")}
    check = run_cli("check", "--study", path, check=True)
    for name in ("fixed-baseline@small", "prodigy@reg", "fixed-from-finder-valley@reg"):
        assert name in check.stdout
    run_cli("run", "--study", path, "--tracking-uri", store, "--quiet", env=env, check=True)
    trials = finished_trials(store, "shrunken")
    by = {}
    for r in trials:
        by.setdefault((r.data.tags["lrstudy.scenario"], r.data.tags["lrstudy.phase"]), []).append(r)
    for w in ("small", "reg"):
        assert len(by[(f"fixed-baseline@{w}", "tune")]) == 2  # 2 grid points x 1 seed
        assert len(by[(f"warmup-cosine@{w}", "final")]) == 2
        assert (f"prodigy@{w}", "tune") not in by  # nothing to tune
        assert len(by[(f"prodigy@{w}", "final")]) == 2
        finder = by[(f"fixed-from-finder-valley@{w}", "final")]
        assert {r.data.params["finder.twin"] for r in finder} == {f"fixed-baseline@{w}"}

    out = tmp_path / "report"
    proc = run_cli("report", "--study", path, "--tracking-uri", store, "--out", out,
                   check=True)
    html = Path(proc.stdout.strip().splitlines()[-1].split("report: ", 1)[1]).read_text()
    assert html.index("Across workloads") < html.index(">Verdict<")  # the answer across first
    for part in ("aggregate score", "Performance profiles", "Win / tie / loss",
                 "Tuning budget", "The LR range test calibrated"):
        assert part in html, part
    # one verdict per workload, each against its own reference
    assert "mlp128 on synthetic" in html and "mlp128 on friedman1" in html
    assert "fixed-baseline@small" in html and "fixed-baseline@reg" in html
    # each trial scored by its own task's test metric
    scored = {w: {k for r in trials if r.data.tags["lrstudy.scenario"].endswith(f"@{w}")
                  for k in r.data.metrics if k.startswith("test_")} for w in ("small", "reg")}
    assert "test_accuracy" in scored["small"] and "test_rmse" not in scored["small"]
    assert "test_rmse" in scored["reg"] and "test_accuracy" not in scored["reg"]

    # MLflow answers too: the summary run opens with the answer across workloads and keeps
    # its tables and figures; the experiment's description opens with it as well
    from lrstudy.report import publish
    from lrstudy.tracking import store as tracking
    from lrstudy.tracking.schema import Tag

    client = tracking.client(store)
    exp = client.get_experiment_by_name("shrunken")
    (summary,) = tracking.search(client, [exp.experiment_id], "tags.`lrstudy.kind` = 'summary'")
    note = summary.data.tags[Tag.NOTE]
    headline = note.split("\n\n", 1)[0]
    assert headline.startswith("**Across 2 workloads: ")
    assert "has the highest aggregate score" in headline or "no aggregate score" in headline
    assert headline.split("**")[1] in html  # "Across 2 workloads: <its best strategy>"
    assert exp.tags[Tag.NOTE] == note and "fixed-baseline@small" in note
    folder = publish.ACROSS_FOLDER
    logged = {f.path for f in client.list_artifacts(summary.info.run_id, folder)}
    for name in ("aggregate_score.csv", "aggregate_score.json", "performance_profile.csv",
                 "win_tie_loss.csv", "tuning_curves.csv", "calibration.csv", "answer.json",
                 "aggregate_score.png", "performance_profiles.png", "win_tie_loss.png",
                 "tuning_budget.png", "calibration.png"):
        assert f"{folder}/{name}" in logged, name
    # each workload's scenario runs carry their verdict against their own reference and
    # their share of the answer across
    scenario_runs = tracking.search(client, [exp.experiment_id],
                                    "tags.`lrstudy.kind` = 'scenario' and "
                                    "tags.`lrstudy.phase` = 'final'")
    by_name = {r.data.tags["lrstudy.scenario"]: r.data for r in scenario_runs}
    for w in ("small", "reg"):
        ours = by_name[f"warmup-cosine@{w}"]
        assert ours.tags[Tag.NOTE].split(": ")[0].endswith(f"against the reference fixed-baseline@{w}")
        assert {"performance_ratio", "normalized_score", "pairwise_wins"} <= set(ours.metrics)
        assert by_name[f"fixed-baseline@{w}"].tags[Tag.CALL] == "reference"
