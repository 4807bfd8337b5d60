"""Shared fixtures: temporary MLflow stores, study files, the smoke study run once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A tiny study on the synthetic data (20 features, binary labels): trains in a second.
TINY = """
description = "tiny synthetic study for unit tests"
seeds = 1
scenarios = {scenarios}

[budget]
model = "mlp128"
dataset = "synthetic"
val_size = 200
batch_size = 32
epochs = {epochs}
steps_per_execution = {spe}
jit_compile = false
{extra}
"""


IGNORED_GROUPS: list[str] = []  # set on a pytest-xdist worker whose loadgroup lost our marks


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Notice a pytest-xdist run that ignores our ``xdist_group`` marks.

    ``make test`` runs ``-n 2 --dist loadgroup`` so that tests sharing one expensive fixture
    (the smoke-study store, the bad-input runs, the servers) stay on one worker. xdist does it
    by suffixing node ids with ``@group``; under pytest 9.2 that suffix silently stopped taking
    effect (pytest-dev/pytest-xdist#1386) and each worker ran those fixtures again.
    """
    if getattr(config.option, "loadgroup", False):
        IGNORED_GROUPS[:] = [i.nodeid for i in items
                             if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]


#: A study of one tiny scenario (300 images, one epoch), for tests of what surrounds training.
TINY_STUDY = """description = "one tiny scenario"
seeds = 1
scenarios = ["fixed-baseline"]
reference = "fixed-baseline"

[budget]
model = "mlp128"
dataset = "fashion_mnist"
train_size = 300
val_size = 200
batch_size = 64
epochs = 1
"""


@pytest.fixture(autouse=True)
def _xdist_groups_honoured(request):
    """Fail grouped tests, before their shared fixtures run, when loadgroup ignored them."""
    if IGNORED_GROUPS and request.node.get_closest_marker("xdist_group"):
        pytest.fail(f"--dist loadgroup ignored the xdist_group mark of {IGNORED_GROUPS[0]} "
                    "(pytest-dev/pytest-xdist#1386): use the pytest pinned in requirements.txt",
                    pytrace=False)


@pytest.fixture
def store(tmp_path) -> str:
    """A fresh sqlite tracking store in a temporary directory."""
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


@pytest.fixture
def write_study(tmp_path):
    def write(scenarios='["fixed-baseline"]', epochs=3, spe=4, extra="", name="tiny"):
        path = tmp_path / f"{name}.toml"
        path.write_text(TINY.format(scenarios=scenarios, epochs=epochs, spe=spe,
                                    extra=textwrap.dedent(extra)))
        return path
    return write


def run_cli(*args, env=None, timeout=900, check=False):
    """``python -m lrstudy ARGS`` in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "lrstudy", *map(str, args)], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lrstudy {' '.join(map(str, args))} exited "
                             f"{proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory):
    """The built-in smoke study, run once through the real CLI into its own store."""
    base = tmp_path_factory.mktemp("smoke")
    uri = f"sqlite:///{base / 'mlflow.db'}"
    proc = run_cli("run", "--study", "smoke", "--tracking-uri", uri, "--quiet",
                   env={"LRSTUDY_RUNS_DIR": str(base / "runs")}, check=True)
    return {"uri": uri, "dir": base, "stdout": proc.stdout, "stderr": proc.stderr}


def finished_trials(uri: str, study: str):
    from lrstudy.tracking import store as tracking

    client = tracking.client(uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        return []
    return tracking.search(client, [exp.experiment_id],
                           "tags.`lrstudy.kind` = 'trial' and attributes.status = 'FINISHED'")
