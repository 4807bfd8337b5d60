"""A shrunken suite end to end: every strategy on two workloads through papermill into MLflow,
then the report's answer across workloads (issue 37's shape on data that trains in seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import finished_trials, run_cli

pytestmark = pytest.mark.slow

SHRUNKEN = """
seeds = 2
reference = "fixed-baseline"
scenarios = ["fixed-baseline", "warmup-cosine", "prodigy", "fixed-from-finder-valley"]
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
    for name in ("fixed-baseline@small", "prodigy@wide", "fixed-from-finder-valley@wide"):
        assert name in check.stdout
    run_cli("run", "--study", path, "--tracking-uri", store, "--quiet", env=env, check=True)
    trials = finished_trials(store, "shrunken")
    by = {}
    for r in trials:
        by.setdefault((r.data.tags["lrstudy.scenario"], r.data.tags["lrstudy.phase"]), []).append(r)
    for w in ("small", "wide"):
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
    assert "mlp128 on synthetic" in html and "mlp512_200 on synthetic" in html
    assert "fixed-baseline@small" in html and "fixed-baseline@wide" in html
