"""lrstudy installed as a user installs it: a fresh virtual environment that shares nothing with
this one (no system site-packages), this checkout installed into it, the ``lrstudy`` command
used from a directory outside the checkout.

The installer is uv (``uv venv``, ``uv pip install .``), the lock as constraints (``-c``, its
hashes verified, so no resolution happens) and uv's cache: ``pip install .`` of the same set
took 5 minutes on this 2-core machine under load, uv 15 s with a warm cache (40 s cold).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY_STUDY

UV = Path(sys.executable).parent / "uv"
# not part of a user's copy of the project (and large, or in the way of a clean build)
NOT_SOURCE = (".git", ".venv", "build", "*.egg-info", "__pycache__", "mlruns", "runs", "reports",
              "bench", "test-artifacts", ".hypothesis", ".pytest_cache", ".ipynb_checkpoints")
HEAVY = "tensorflow, keras, mlflow, papermill, nbclient, ipykernel, jupyterlab, seaborn, statsmodels"


def run(args, cwd, env, timeout=300):
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with this checkout (a copy of its sources) installed: (venv, env, elsewhere)."""
    base = tmp_path_factory.mktemp("install")
    source = base / "lrstudy-src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    venv = base / "venv"
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "LRSTUDY_HOME")}
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    proc = run([UV, "venv", "-q", "--python", sys.executable, venv], elsewhere, env)
    assert proc.returncode == 0, proc.stderr
    proc = run([UV, "pip", "install", "-q", "--python", venv / "bin" / "python", source,
                "-c", ROOT / "requirements.txt"], elsewhere, env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    return venv, env, elsewhere


@pytest.mark.slow
def test_installed_lrstudy_command_works_outside_the_checkout(installed):
    venv, env, elsewhere = installed
    lrstudy = venv / "bin" / "lrstudy"
    proc = run([lrstudy, "--help"], elsewhere, env)
    assert proc.returncode == 0 and "usage: lrstudy" in proc.stdout, proc.stderr
    # the packaged studies
    proc = run([lrstudy, "check", "--study", "smoke"], elsewhere, env)
    assert proc.returncode == 0, proc.stderr
    assert "study smoke: 3 scenarios x 2 seeds = 6 trials" in proc.stdout
    # bad input: one line, exit 2
    proc = run([lrstudy, "run", "--study", "nosuch"], elsewhere, env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "nosuch" in proc.stderr


@pytest.mark.slow
def test_installed_package_has_its_data_and_its_dependencies(installed):
    venv, env, elsewhere = installed
    script = (f"import {HEAVY}\n"
              "import lrstudy, lrstudy.execution.report_run\n"
              "from lrstudy.execution import kernels\n"
              "from lrstudy.spec import study as scenarios\n"
              "print(lrstudy.__file__)\n"
              "print(kernels.notebooks_dir())\n"
              "print(scenarios.STUDIES_DIR)\n")
    proc = run([venv / "bin" / "python", "-c", script], elsewhere, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    package, notebooks, studies = (Path(line) for line in proc.stdout.split())
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    assert package.parent == site / "lrstudy"
    # the notebooks the CLI runs are the installed copies, not the checkout's
    assert notebooks == site / "lrstudy" / "notebooks"
    assert {p.name for p in notebooks.glob("*.ipynb")} == {
        p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert {p.name for p in studies.glob("*.toml")} == {
        p.name for p in (ROOT / "lrstudy" / "studies").glob("*.toml")}
    # every module of the checkout is installed (pyproject.toml lists the subpackages)
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lrstudy").rglob("*.py")}
    assert modules <= {p.relative_to(site).as_posix() for p in package.parent.rglob("*.py")}




@pytest.mark.slow
def test_installed_lrstudy_runs_and_reports_a_study_outside_the_checkout(installed):
    """``lrstudy run`` and ``lrstudy report`` of a non-editable install, in a directory of the
    user's: the kernels run the installed notebooks, the report finds the installed
    summary.ipynb (not the checkout's), and everything lands under that directory."""
    venv, env, elsewhere = installed
    lrstudy = venv / "bin" / "lrstudy"
    (elsewhere / "tiny.toml").write_text(TINY_STUDY)
    proc = run([lrstudy, "run", "--study", "tiny.toml", "--quiet"], elsewhere, env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    proc = run([lrstudy, "report", "--study", "tiny"], elsewhere, env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    html = Path(proc.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert html.is_file() and html.is_relative_to(elsewhere) and html.name == "summary.html"
    assert (elsewhere / "mlruns" / "mlflow.db").is_file()
