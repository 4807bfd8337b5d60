"""The report (:mod:`lrstudy.execution.report_run`): the summary notebook executed, exported to HTML
and logged as a summary run; refused, creating nothing, without trials."""

from __future__ import annotations

import pytest
from report_store import STUDY, store  # noqa: F401 (fixture)

from lrstudy import report
from lrstudy.execution import report_run
from lrstudy.tracking import store as tracking
from lrstudy.tracking.store import TAG

# the module fixture runs once: keep the module on one pytest-xdist worker
pytestmark = pytest.mark.xdist_group("report")


def test_make_report_without_trials_names_study_and_store(store, tmp_path):
    with pytest.raises(report.NoTrialsError) as info:
        report_run.make_report("nope", store["uri"], out_dir=tmp_path)
    assert "'nope'" in str(info.value) and store["uri"] in str(info.value)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_make_report_executes_exports_and_logs(store, tmp_path):
    html = report_run.make_report(STUDY, store["uri"], out_dir=tmp_path)
    assert html == tmp_path / "summary.html"
    text = html.read_text()
    assert text.count("<img") >= 5
    assert "data:image/png;base64" in text
    assert "fixed-baseline" in text and "0.8200 ± 0.0497" in text
    assert (tmp_path / "summary.ipynb").exists()
    client = store["client"]
    runs = tracking.search(client, [store["exp_id"]], f"tags.`{TAG}kind` = 'summary'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert artifacts == {"summary.html", "summary.ipynb", "benchmark_table.json"}
    assert runs[0].data.tags["mlflow.note.content"].startswith("Best: warmup-linear")
    assert len(report.load_trials(STUDY, store["uri"])) == 10  # the summary run is no trial
