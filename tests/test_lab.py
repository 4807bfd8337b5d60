"""JupyterLab, as a user drives it: a real ``jupyter lab`` server (loopback, a random port, a
token) and headless Chromium (Debian's, through Playwright) running all cells of
``scenario.ipynb`` twice in one kernel. Each time the figure is shown and no cell fails
(the parameter check of the second run sees the globals the first one left: issue 20)."""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, finished_trials
from test_ui import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, START_TIMEOUT_S, UI_TIMEOUT_MS,
                     free_port, require_chromium, start_ui)  # noqa: F401 (start_ui: a fixture)

JUPYTER = Path(sys.executable).parent / "jupyter"
RUN_TIMEOUT_S = 240  # one run of all cells: a kernel importing TensorFlow, 1 epoch, under load


def small_copy(directory: Path, store: str) -> Path:
    """scenario.ipynb with a tiny budget written into its parameters cell."""
    nb = json.loads((ROOT / "notebooks" / "scenario.ipynb").read_text())
    (cell,) = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    values = {"study": "smoke", "scenario": "fixed-baseline", "seeds": 1, "epochs": 1,
              "tracking_uri": store, "threads": 1}
    source = "".join(cell["source"])
    for name, value in values.items():
        source, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}".replace("'", '"'),
                            source, flags=re.M)
        assert n == 1, name
    cell["source"] = source
    path = directory / "scenario.ipynb"
    path.write_text(json.dumps(nb, indent=1))
    return path


def saved_outputs(path: Path) -> list[dict]:
    return [o for c in json.loads(path.read_text())["cells"] for o in c.get("outputs", [])]


@pytest.mark.slow
def test_lab_runs_all_cells_of_the_scenario_notebook_twice(tmp_path, store, start_ui):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    path = small_copy(notebooks, store)
    port, token = free_port(), secrets.token_hex(16)
    jupyter_dirs = {f"JUPYTER_{d}_DIR": str(tmp_path / "jupyter" / d.lower())
                    for d in ("CONFIG", "RUNTIME")}
    lab = start_ui("lab", "--no-browser", "--ip", "127.0.0.1", "--port", port,
                   f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebooks}",
                   f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", "--LabApp.news_url=",
                   *(["--allow-root"] if os.geteuid() == 0 else []), command=[JUPYTER],
                   env={**jupyter_dirs, "LRSTUDY_RUNS_DIR": str(tmp_path)})
    lab.wait_until_serving(port, path="/api")
    ARTIFACTS.mkdir(exist_ok=True)
    t0 = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            page.goto(f"http://127.0.0.1:{port}/lab/tree/scenario.ipynb?token={token}")
            notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
            prompts = notebook.locator(".jp-CodeCell .jp-InputPrompt")
            n_code = sum(c["cell_type"] == "code" for c in json.loads(path.read_text())["cells"])
            expect(prompts).to_have_count(n_code)
            # the kernel started and connected (a "Run All" before that runs nothing)
            expect(page.locator(".jp-StatusBar-TextItem", has_text="| Idle")).to_have_count(
                1, timeout=START_TIMEOUT_S * 1000)
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
    (trial,) = finished_trials(store, "smoke")  # recorded once; the second run skipped it
    assert trial.data.params["epochs"] == "1"
