"""The notebooks: committed clean, one parameters cell of literals, no functions; and real
papermill executions (as a person types them) read back from MLflow."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, finished_trials

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def papermill(notebook: str, out: Path, *params, timeout=600):
    args = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / notebook), str(out),
            "--no-progress-bar"]
    for name, value in params:
        args += ["-p", name, str(value)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=out.parent)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_clean_with_one_literal_parameters_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and not c.get("execution_count") for c in code)
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    for stmt in ast.parse("".join(tagged[0]["source"])).body:
        assert isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
    for cell in code:
        source = "\n".join(line for line in "".join(cell["source"]).splitlines()
                           if not line.startswith("%"))
        for node in ast.walk(ast.parse(source)):
            assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Lambda,
                                         ast.AsyncFunctionDef)), f"{path.name} defines code"


@pytest.mark.slow
def test_scenario_notebook_by_hand_records_the_trial(tmp_path, store):
    out = tmp_path / "out.ipynb"
    proc = papermill("scenario.ipynb", out, ("study", "smoke"), ("scenario", "fixed-baseline"),
                     ("epochs", 1), ("tracking_uri", store))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (trial,) = finished_trials(store, "smoke")
    tags, params, metrics = trial.data.tags, trial.data.params, trial.data.metrics
    assert tags["lrstudy.scenario"] == "fixed-baseline" and tags["lrstudy.family"] == "fixed"
    assert tags["lrstudy.kind"] == "trial" and tags["lrstudy.seed"] == "0"
    assert tags["lrstudy.diverged"] == "false" and len(tags["lrstudy.run_key"]) == 16
    assert params["optimizer"] == "adam" and params["epochs"] == "1"
    assert params["model"] == "mlp128" and params["dataset"] == "fashion_mnist"
    assert params["train_size"] == "2000" and params["batch_size"] == "64"
    from lrstudy.tracking import store as tracking

    client = tracking.client(store)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_time_s"):
        assert [m.step for m in client.get_metric_history(trial.info.run_id, key)] == [0], key
    for key in ("test_accuracy", "test_loss", "train_time_s"):
        assert key in metrics
    # the parent scenario run groups it (opened by the notebook when run by hand)
    parent = client.get_run(tags["mlflow.parentRunId"])
    assert parent.data.tags["lrstudy.kind"] == "scenario" and parent.info.status == "FINISHED"
    # the executed notebook holds the figure and the table
    executed = out.read_text()
    assert "image/png" in executed and "test_accuracy" in executed


@pytest.mark.slow
@pytest.mark.parametrize("param, value, message", [
    ("epochs", "abc", "parameter 'epochs' must be int"),
    ("nosuch", "1", "has no parameter 'nosuch'"),
])
def test_scenario_notebook_rejects_bad_parameters(tmp_path, store, param, value, message):
    out = tmp_path / "out.ipynb"
    proc = papermill("scenario.ipynb", out, ("study", "smoke"), ("tracking_uri", store),
                     (param, value))
    assert proc.returncode != 0
    assert "ParameterError" in proc.stderr and message in proc.stderr
    assert finished_trials(store, "smoke") == []


@pytest.mark.slow
def test_schedules_gallery_notebook(tmp_path):
    out = tmp_path / "gallery.ipynb"
    proc = papermill("schedules.ipynb", out, ("study", "seeds"), ("epochs", 4))
    assert proc.returncode == 0, proc.stderr[-2000:]
    nb = json.loads(out.read_text())
    images = [o for c in nb["cells"] for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert "one-cycle" in out.read_text() and "decay-keras-per-step" in out.read_text()


@pytest.mark.slow
def test_lr_range_test_notebook_records_curve_and_suggestions(tmp_path, store):
    out = tmp_path / "finder.ipynb"
    proc = papermill("lr_range_test.ipynb", out, ("study", "finder-test"),
                     ("train_size", 2000), ("val_size", 1000), ("num_it", 40),
                     ("batch_size", 32), ("tracking_uri", store))
    assert proc.returncode == 0, proc.stderr[-2000:]
    from lrstudy.tracking import store as tracking

    client = tracking.client(store)
    exp = client.get_experiment_by_name("finder-test")
    (run,) = client.search_runs([exp.experiment_id], "tags.`lrstudy.kind` = 'lr_range_test'")
    assert run.info.status == "FINISHED" and run.data.tags["lrstudy.family"] == "finder"
    m = run.data.metrics
    for rule in ("steepest", "valley", "minimum"):
        assert 1e-7 <= m[f"suggestion_{rule}"] <= 10
    assert m["finder_max_lr"] == pytest.approx(m["suggestion_valley"])
    assert m["finder_base_lr"] == pytest.approx(m["finder_max_lr"] / 10)
    lrs = [p.value for p in client.get_metric_history(run.info.run_id, "finder_lr")]
    assert 2 < len(lrs) <= 40 and lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-7)
    assert "image/png" in out.read_text()
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"finder.json", "lr_range_test.png"} <= arts
