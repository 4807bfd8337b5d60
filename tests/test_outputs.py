"""Nothing lost: a study's executed notebooks and report are filed under the store as well as
the study (``runs/<store>/<study>``, ``reports/<store>/<study>``), so two studies of the same
name on two stores keep both; the report's header names its store, study, trials and date."""

from __future__ import annotations

import doctest
import shutil

import pytest

from conftest import ROOT, TINY_STUDY, run_cli
from lrstudy.report import frames
from lrstudy.tracking import store as tracking



def test_store_labels_tell_stores_apart_and_name_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    a, b = f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}", f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    assert tracking.store_label(None) == "default"
    assert tracking.store_label(a) != tracking.store_label(b)
    assert tracking.store_label(a).startswith("mlflow-")
    assert tracking.store_label("http://127.0.0.1:5000").startswith("127.0.0.1-5000-")
    assert doctest.testmod(tracking).failed == 0
    assert doctest.testmod(frames).failed == 0


@pytest.mark.slow
def test_two_studies_of_one_name_on_two_stores_keep_both_notebooks_and_reports(tmp_path):
    home = tmp_path / "home"  # a project of its own ($LRSTUDY_HOME), with the notebooks
    shutil.copytree(ROOT / "notebooks", home / "notebooks")
    (home / "tiny.toml").write_text(TINY_STUDY)
    env = {"LRSTUDY_HOME": str(home)}
    stores = [f"sqlite:///{tmp_path / name / 'mlflow.db'}" for name in ("one", "two")]
    for uri in stores:
        proc = run_cli("run", "--study", home / "tiny.toml", "--tracking-uri", uri, "--quiet",
                       "--report", env=env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    reports = []
    for uri in stores:
        label = tracking.store_label(uri)
        notebook = home / "runs" / label / "tiny" / "fixed-baseline.ipynb"
        report = home / "reports" / label / "tiny" / "summary.html"
        assert notebook.is_file() and report.is_file(), sorted(map(str, home.rglob("*")))
        reports.append(report.read_text())
    # each report names its own store in its header, with the study and its trials
    for uri, html in zip(stores, reports):
        assert f"study &#x27;tiny&#x27; on the store {uri}" in html or \
            f"study 'tiny' on the store {uri}" in html
        assert "1 finished trials" in html
    assert not (home / "runs" / "tiny").exists() and not (home / "reports" / "tiny").exists()
