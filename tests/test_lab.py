"""JupyterLab, as a user drives it: a real ``jupyter lab`` server (loopback, a random port, a
token) rooted at a copy of the project's layout, as ``make lab`` roots it at the project, and
headless Chromium (Debian's, through Playwright) running all cells of ``scenario.ipynb``, at
its committed small budget, twice in one kernel. Each time the figure is shown and no cell
fails (the parameter check of the second run sees the globals the first one left: issue 20).
Without a browser: what ``make lab`` opens, and that scenario.ipynb's defaults are small."""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, finished_trials
from test_ui import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    START_TIMEOUT_S,
    UI_TIMEOUT_MS,
    free_port,
    require_chromium,
    start_ui,  # noqa: F401 (a fixture)
)

JUPYTER = Path(sys.executable).parent / "jupyter"
RUN_TIMEOUT_S = 240  # one run of all cells: a kernel importing TensorFlow, 2 epochs, under load


def parameters_cell(path: Path) -> dict:
    """The values of a notebook's ``parameters`` cell (plain literals)."""
    nb = json.loads(path.read_text())
    (cell,) = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    return {stmt.targets[0].id: ast.literal_eval(stmt.value)
            for stmt in ast.parse("".join(cell["source"])).body}


def store_copy(directory: Path, store: str) -> Path:
    """scenario.ipynb as committed, but for its store (a test's own) and one thread."""
    nb = json.loads((ROOT / "notebooks" / "scenario.ipynb").read_text())
    (cell,) = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    source = "".join(cell["source"])
    for name, value in {"tracking_uri": store, "threads": 1}.items():
        source, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}".replace("'", '"'),
                            source, flags=re.M)
        assert n == 1, name
    cell["source"] = source
    path = directory / "scenario.ipynb"
    path.write_text(json.dumps(nb, indent=1))
    return path


def test_scenario_notebook_defaults_are_one_small_scenario():
    """Opened and run as committed, scenario.ipynb trains one scenario on a small budget: one
    seed of a study without a competition (no tuning grid), 2 epochs or fewer on at most
    2,000 examples."""
    from lrstudy.spec import study as scenarios

    values = parameters_cell(ROOT / "notebooks" / "scenario.ipynb")
    assert values["seeds"] == 1 and values["phase"] == "" and values["grid_points"] == 0
    overrides = {k: values[k] for k in ("epochs", "train_size", "batch_size") if values[k]}
    spec = scenarios.load_study(values["study"], overrides)
    (sc,) = spec.select([values["scenario"]])
    assert spec.competition is None, f"study {values['study']!r} tunes before it trains"
    assert sc.budget["epochs"] <= 2 and 0 < sc.train_size <= 2000, sc.budget_label


def test_make_lab_is_rooted_at_the_project_and_opens_start_here():
    recipe = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout  # what `make lab` would run, not run
    root = re.search(r"--notebook-dir[= ](\S+)", recipe).group(1)
    assert (ROOT / root).resolve() == ROOT, recipe
    page = re.search(r"--LabApp.default_url=/lab/tree/(\S+)", recipe).group(1)
    assert page == "notebooks/start_here.ipynb" and (ROOT / page).is_file(), recipe


def saved_outputs(path: Path) -> list[dict]:
    return [o for c in json.loads(path.read_text())["cells"] for o in c.get("outputs", [])]


@pytest.mark.slow
def test_lab_runs_all_cells_of_the_scenario_notebook_twice(tmp_path, store, start_ui):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    # the project's layout: the lab is rooted at the project, as `make lab` roots it
    project = tmp_path / "project"
    notebooks = project / "notebooks"
    notebooks.mkdir(parents=True)
    (project / "runs").mkdir()
    path = store_copy(notebooks, store)
    port, token = free_port(), secrets.token_hex(16)
    jupyter_dirs = {f"JUPYTER_{d}_DIR": str(tmp_path / "jupyter" / d.lower())
                    for d in ("CONFIG", "RUNTIME")}
    lab = start_ui("lab", "--no-browser", "--ip", "127.0.0.1", "--port", port,
                   f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={project}",
                   f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", "--LabApp.news_url=",
                   *(["--allow-root"] if os.geteuid() == 0 else []), command=[JUPYTER],
                   env={**jupyter_dirs, "LRSTUDY_RUNS_DIR": str(project / "runs")})
    lab.wait_until_serving(port, path="/api")
    ARTIFACTS.mkdir(exist_ok=True)
    t0 = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/scenario.ipynb?token={token}")
            notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
            prompts = notebook.locator(".jp-CodeCell .jp-InputPrompt")
            n_code = sum(c["cell_type"] == "code" for c in json.loads(path.read_text())["cells"])
            expect(prompts).to_have_count(n_code)
            # the kernel started and connected (a "Run All" before that runs nothing)
            expect(page.locator(".jp-StatusBar-TextItem", has_text="| Idle")).to_have_count(
                1, timeout=START_TIMEOUT_S * 1000)
            # the file browser's root is the project: runs/ beside notebooks/
            page.locator(".jp-BreadCrumbs-home").first.click()
            listing = page.locator(".jp-DirListing-itemText")
            for name in ("notebooks", "runs"):
                expect(listing.filter(has_text=re.compile(rf"^{name}$"))).to_have_count(1)
            for attempt in (1, 2):
                page.get_by_role("menuitem", name="Run", exact=True).click()
                page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
                last = f"[{attempt * n_code}]:"  # the count of this run, in the same kernel
                failed = notebook.locator(".jp-OutputArea-output",
                                          has_text="Traceback (most recent call last)")
                try:  # the last cell executed, or a cell failed (then run all stops)
                    expect(prompts.last.filter(has_text=last).or_(failed).first).to_be_attached(
                        timeout=RUN_TIMEOUT_S * 1000)
                    expect(prompts.last).to_have_text(last)
                finally:
                    page.screenshot(path=str(ARTIFACTS / f"lab-scenario-run{attempt}.png"))
                    # what JupyterLab holds, saved: no error output
                    page.keyboard.press("Control+s")
                    expect(page.locator(".jp-mod-dirty")).to_have_count(0)
                    errors = [o for o in saved_outputs(path) if o["output_type"] == "error"]
                    assert errors == [], f"run {attempt}: {errors[0]['ename']}: {errors[0]['evalue']}"
                # the figure is shown, and saved with the outputs
                expect(notebook.locator(".jp-OutputArea-output img")).to_have_count(1)
                expect(notebook.locator(".jp-OutputArea-output img")).to_be_visible()
                assert sum("image/png" in o.get("data", {}) for o in saved_outputs(path)) == 1
        finally:
            browser.close()
    print(f"JupyterLab: two runs of all cells in {time.monotonic() - t0:.0f} s")
    defaults = parameters_cell(ROOT / "notebooks" / "scenario.ipynb")
    (trial,) = finished_trials(store, defaults["study"])  # once; the second run skipped it
    assert trial.data.tags["lrstudy.scenario"] == defaults["scenario"]
