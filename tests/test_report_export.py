"""The report (:mod:`lrstudy.execution.report_run`): the summary notebook executed, exported to HTML
that reads as an answer (the verdict on the first screen, no code, no empty section, tables that
fit the page, the executed notebook linked) and logged as a summary run; refused, creating
nothing, without trials; the notebook run twice in one kernel."""

from __future__ import annotations

import html as htmllib
import os
import re
from pathlib import Path

import nbformat
import pytest
from report_store import STUDY, store  # noqa: F401 (fixture)
from test_ui import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

from lrstudy import report
from lrstudy.execution import kernels, report_run
from lrstudy.report.links import DEFAULT_UI, Links
from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Tag
from lrstudy.tracking.store import TAG

# the module fixtures run once: keep the module on one pytest-xdist worker
pytestmark = pytest.mark.xdist_group("report")
SCREEN = {"width": 1280, "height": 800}  # a laptop's first screen


def test_make_report_without_trials_names_study_and_store(store, tmp_path):
    with pytest.raises(report.NoTrialsError) as info:
        report_run.make_report("nope", store["uri"], out_dir=tmp_path)
    assert "'nope'" in str(info.value) and store["uri"] in str(info.value)
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def made(store, tmp_path_factory):
    """The synthetic study's report, made once."""
    out = tmp_path_factory.mktemp("made")
    return report_run.make_report(STUDY, store["uri"], out_dir=out)


@pytest.mark.slow
def test_make_report_executes_exports_and_logs(store, made):
    html = made
    assert html.name == "summary.html" and (html.parent / "summary.ipynb").exists()
    text = html.read_text()
    assert text.count("<img") >= 5
    assert "data:image/png;base64" in text
    assert "fixed-baseline" in text and "0.8200 ± 0.0497" in text
    client = store["client"]
    runs = tracking.search(client, [store["exp_id"]], f"tags.`{TAG}kind` = 'summary'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert artifacts == {"summary.html", "summary.ipynb", "benchmark_table.json", "verdict.md"}
    note = runs[0].data.tags[Tag.NOTE]
    # the whole verdict, which the note is while it fits MLflow's limit on a run tag
    assert client.download_artifacts(runs[0].info.run_id, "verdict.md") and note == Path(
        client.download_artifacts(runs[0].info.run_id, "verdict.md")).read_text()
    assert note.startswith("Best: warmup-linear")
    assert note == client.get_experiment(store["exp_id"]).tags[Tag.NOTE]  # one description
    # a study without tuning: its scenario runs show the LR the strategy ran at
    assert client.get_run(store["parents"]["fixed-baseline"]).data.params == {
        "optimizer": "adam", "schedule": "constant", "learning_rate": "0.001"}
    # the process that made it is of no interest once it ended
    assert not {Tag.HOST, Tag.PID, Tag.HEARTBEAT} & set(runs[0].data.tags)
    assert len(report.load_trials(STUDY, store["uri"])) == 10  # the summary run is no trial


@pytest.mark.slow
def test_the_html_has_no_code_and_no_empty_section_and_links_its_notebook(store, made):
    text = made.read_text()
    # a code cell's input is an editor area with highlighted source; markdown cells have none
    assert not re.search(r'class="[^"]*\b(jp-InputArea-editor|jp-InputPrompt|highlight)\b',
                         text)
    assert "report.load_trials" not in text and "notebook_params" not in text
    executed = nbformat.read(made.parent / "summary.ipynb", as_version=4)
    sources = "".join(c.source for c in executed.cells if c.cell_type == "code")
    assert "report.load_trials" in sources  # the code stays in the notebook beside it
    assert '<a href="summary.ipynb">summary.ipynb</a>' in text
    headings = re.findall(r"<h2[^>]*>(.*?)<", text)
    # this study has no claims, tuning nor demonstrations: their sections are not there
    assert not any(h.startswith(("Do the tutorials", "Tuning", "Demonstrations"))
                   for h in headings), headings
    assert headings[:2] == ["Verdict", "Leaderboard"]
    assert "Appendix: the benchmark table" in headings and "LR range tests" in headings
    assert "Raw numbers" not in headings  # the notebook's own, tagged remove_cell
    assert "Raw numbers" in "".join(c.source for c in executed.cells)
    # the leaderboard links each strategy to its scenario run in the UI the report names
    links = Links(DEFAULT_UI, store["exp_id"])
    for name, run_id in store["parents"].items():
        assert f'<a href="{htmllib.escape(links.run(run_id))}">{name}</a>' in text


@pytest.mark.slow
def test_the_first_screen_shows_the_verdict_and_no_code(made):
    """In headless Chromium, at a laptop's screen size: the answer ("Use ...") and the
    verdict's opening sentence are in the first viewport, no code anywhere, and no table
    wider than the page."""
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is needed (Debian package `chromium`)"
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=SCREEN)
            page.goto(made.as_uri())
            expect(page.get_by_role("heading", name="Verdict", exact=True)).to_be_in_viewport()
            expect(page.get_by_text("Use any of warmup-linear")).to_be_in_viewport()
            expect(page.get_by_text("Best: warmup-linear", exact=False)).to_be_in_viewport()
            assert page.locator(".jp-InputArea-editor, .jp-InputPrompt, .highlight").count() == 0
            # no line of the notebook's code, such as report.load_trials(study, uri)
            assert page.get_by_text(re.compile(r"report\.\w+\(")).count() == 0
            page.screenshot(path=str(ARTIFACTS / "report-first-screen.png"))
            width = page.evaluate("document.documentElement.clientWidth")
            rights = page.eval_on_selector_all(
                "table", "ts => ts.map(t => t.getBoundingClientRect().right)")
            assert len(rights) >= 5 and max(rights) <= width, (rights, width)
            assert page.evaluate("document.documentElement.scrollWidth") <= width
        finally:
            browser.close()


@pytest.mark.slow
def test_the_summary_notebook_runs_twice_in_one_kernel(store, tmp_path):
    """All its cells, then all of them again in the same kernel, as JupyterLab's "Run All"
    twice does: the second run ends as the first (papermill injects the parameters into the
    first copy; the second copy's parameters cell assigns the same values)."""
    notebook = nbformat.read(kernels.notebooks_dir() / "summary.ipynb", as_version=4)
    parameters = {"study": STUDY, "tracking_uri": store["uri"], "reference": "",
                  "margin": None, "mlflow_ui": DEFAULT_UI}
    assigned = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    notebook.cells += [nbformat.v4.new_code_cell(
        assigned if "parameters" in c.metadata.get("tags", []) else c.source)
        for c in notebook.cells if c.cell_type == "code"]
    doubled = tmp_path / "twice.ipynb"
    nbformat.write(notebook, doubled)
    kernels.execute(doubled, tmp_path / "out.ipynb", parameters, tmp_path)
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    verdicts = [o["data"]["text/markdown"] for c in executed.cells if c.cell_type == "code"
                for o in c.get("outputs", []) if "text/markdown" in o.get("data", {})
                and "**Use any of " in o["data"]["text/markdown"]]
    assert len(verdicts) == 2 and verdicts[0] == verdicts[1]
