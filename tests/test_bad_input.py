"""Bad input: one line on stderr naming the problem, exit status 2, nothing trained or lost.

Every case runs the real command line in a subprocess against its own copy of a temporary
store that already holds one FINISHED run (made with MlflowClient, no training). All cases
are launched once, concurrently on a small pool, by a module fixture; each test then asserts
on its own case: the exit status, stderr is exactly one non-empty line naming the offending
value, the pre-existing run is still there and FINISHED, and no other FINISHED run exists;
and the refusing process imported neither TensorFlow, Keras, Ray, MLflow's server nor
papermill (it runs under a small wrapper that writes what it imported to a file at exit).

The two papermill cases run ``python -m papermill notebooks/scenario.ipynb`` by hand: there
the check is the notebook's second cell (:func:`lrstudy.execution.notebook_params.check`), papermill's own exit
status is 1 and its stderr is a traceback, so they assert a non-zero status and the
``ParameterError`` naming the parameter instead (``lrstudy run`` never passes a user's
parameter through to papermill, so it has no such case).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from lrstudy.tracking.schema import Tag

# the module fixture runs once: keep the module on one pytest-xdist worker
pytestmark = pytest.mark.xdist_group("bad_input")

STUDY = "tiny"
TIMEOUT_S = 240
POOL = 4

# A tiny study on the synthetic data: were a case to train by mistake, it would do so quickly.
BASE_STUDY = """
description = "bad-input cases"
seeds = 1
scenarios = {scenarios}

[budget]
model = "mlp128"
dataset = "{dataset}"
train_size = {train_size}
val_size = {val_size}
batch_size = {batch_size}
epochs = {epochs}
steps_per_execution = 4
jit_compile = false
{extra}
"""


def study_text(scenarios='["x"]', dataset="synthetic", train_size=0, val_size=200,
               batch_size=32, epochs=1, extra="", scenario=None) -> str:
    """A study file; ``scenario`` is the body of a ``[scenario.x]`` table (family fixed)."""
    text = BASE_STUDY.format(scenarios=scenarios, dataset=dataset, train_size=train_size,
                             val_size=val_size, batch_size=batch_size, epochs=epochs,
                             extra=extra)
    if scenario is not None:
        text += f'\n[scenario.x]\nfamily = "fixed"\n{scenario}\n'
    return text


VALID_X = 'optimizer = "adam"\nlearning_rate = 0.001'


@dataclasses.dataclass
class Case:
    id: str
    args: list                    # after `python -m lrstudy`; {study} {store} {tmp} filled in
    names: list                   # substrings the stderr line must contain
    study: str | None = None      # the text of {study} (tiny.toml in the case's directory)
    env: dict = dataclasses.field(default_factory=dict)
    papermill: bool = False       # args are papermill's, not lrstudy's
    setup: object = None          # setup(case_dir) -> extra env, run before the command
    no_tf_env: bool = False       # run without TF_CPP_MIN_LOG_LEVEL: cli.main must set it


def _run_args(*extra):
    return ["run", "--study", "{study}", "--tracking-uri", "{store}", "--quiet", *extra]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


FASHION = dict(dataset="fashion_mnist", train_size=2000, val_size=1000,
               scenarios='["fixed-baseline"]')


def _empty_dirs(case_dir: Path, subs=("data", "cache", "keras")) -> dict:
    for sub in subs:
        (case_dir / sub).mkdir()
    return {}


CORRUPTED = "t10k-labels-idx1-ubyte.gz"  # verified last: the three good ones pass first


def _corrupted_data(case_dir: Path) -> dict:
    """The four files under their real names: three links to Debian's copies, one corrupted.

    With an empty ``LRSTUDY_CACHE_DIR`` the machine's array cache is not used, so the files
    are verified; the corrupted copy is reported, never stepped over to the Debian copy.
    """
    from lrstudy.data.fashion_mnist import DEBIAN_DIR, FASHION_MNIST_SHA256

    if not all((DEBIAN_DIR / name).is_file() for name in FASHION_MNIST_SHA256):
        pytest.skip(f"needs Debian's dataset-fashion-mnist in {DEBIAN_DIR}")
    _empty_dirs(case_dir)
    for name in FASHION_MNIST_SHA256:
        if name == CORRUPTED:
            (case_dir / "data" / name).write_bytes(b"\x1f\x8b not the real bytes " * 100)
        else:
            (case_dir / "data" / name).symlink_to(DEBIAN_DIR / name)
    return {}


def _unwritable_store(case_dir: Path) -> dict:
    # We run as root, and root ignores permission bits: a read-only directory would still be
    # written. No one can create a directory under a regular file, root included (ENOTDIR),
    # so a store at <file>/sub/mlflow.db cannot be created by anybody.
    (case_dir / "afile").write_text("a regular file, not a directory\n")
    return {}


def _user_data(case_dir: Path) -> dict:
    """Small bad (and good) data files beside the study, for the user-data cases."""
    import numpy as np

    rows = "\n".join(f"{i % 7},{i % 5 / 4},{i % 2}" for i in range(60))
    (case_dir / "good.csv").write_text("a,b,y\n" + rows + "\n")
    (case_dir / "text.csv").write_text("a,colour,y\n" + "\n".join(
        f"{i},{'red' if i % 2 else 'blue'},{i % 2}" for i in range(60)) + "\n")
    (case_dir / "nan.csv").write_text("a,b,y\n" + rows.replace("3,0.75,1", "3,,1", 1) + "\n")
    (case_dir / "float_labels.csv").write_text("a,b,y\n" + "\n".join(
        f"{i},{i / 3},{i / 7}" for i in range(60)) + "\n")
    (case_dir / "small.csv").write_text("a,b,y\n" + "\n".join(rows.splitlines()[:20]) + "\n")
    (case_dir / "header_only.csv").write_text("a,b,y\n")
    x = np.ones((50, 4), np.float32)
    x[7, 2] = np.inf
    np.savez(case_dir / "inf.npz", x_train=x, y_train=np.arange(50) % 2)
    np.savez(case_dir / "shapes.npz", x_train=np.ones((50, 4)), y_train=np.arange(50) % 2,
             x_test=np.ones((10, 5)), y_test=np.arange(10) % 2)
    for name in ("cat", "dog"):
        (case_dir / "images" / name).mkdir(parents=True)
    (case_dir / "images" / "cat" / "a.png").write_bytes(b"not read: the dog class is empty")
    return {}


def _user_model(source: str):
    """A setup writing ``bad_models.py`` (``source``) on the path of the command."""
    def setup(case_dir: Path) -> dict:
        (case_dir / "bad_models.py").write_text(source)
        return {"PYTHONPATH": str(case_dir)}
    return setup


BUILD = "\n\ndef build(input_shape, num_classes):\n    raise AssertionError('never built')\n"


def data_study(dataset: str, **kwargs) -> str:
    """A study on a user's data: ``dataset`` is the TOML value of the budget's key."""
    return study_text(scenario=VALID_X, **kwargs).replace('dataset = "synthetic"',
                                                          f"dataset = {dataset}")


DATA_ENV = {"LRSTUDY_DATA_DIR": "{tmp}/data", "LRSTUDY_CACHE_DIR": "{tmp}/cache",
            "KERAS_HOME": "{tmp}/keras"}

CASES = [
    # ---- papermill by hand (slowest: a kernel imports TensorFlow): launched first --------------
    Case("papermill-wrong-type",
         ["{nb}", "{tmp}/out.ipynb", "-p", "epochs", "abc", "-p", "tracking_uri", "{store}",
          "-p", "study", "{study}", "-p", "scenario", "x"],
         ["ParameterError", "'epochs'", "'abc'"], study=study_text(scenario=VALID_X),
         papermill=True),
    Case("papermill-unknown-parameter",
         ["{nb}", "{tmp}/out.ipynb", "-p", "nosuch", "1", "-p", "tracking_uri", "{store}",
          "-p", "study", "{study}", "-p", "scenario", "x"],
         ["ParameterError", "'nosuch'"], study=study_text(scenario=VALID_X), papermill=True),
    # ---- names: checked by scenarios.validate, from data (no Keras) -----------------------------
    # Run without TF_CPP_MIN_LOG_LEVEL: were TensorFlow imported, its C++ logging would print
    # lines of its own on stderr.
    Case("unknown-optimizer", _run_args(), ["'nosuchopt'", "tiny.toml"],
         study=study_text(scenario='optimizer = "nosuchopt"\nlearning_rate = 0.01'),
         no_tf_env=True),
    Case("unknown-model", _run_args(), ["nosuchmodel"],
         study=study_text(scenario=VALID_X + '\nbudget = { model = "nosuchmodel" }')),
    Case("unknown-schedule", _run_args(), ["nosuchsched"],
         study=study_text(scenario='schedule = { name = "nosuchsched", initial = 0.1 }')),
    Case("missing-claims-file", _run_args(), ["nosuch_claims.toml", "does not exist"],
         study='claims = "nosuch_claims.toml"\n' + study_text(scenario=VALID_X)),
    Case("unknown-split", _run_args(), ["split", "'keras'"],
         study=study_text(scenario=VALID_X, extra='split = "keras"')),
    Case("unknown-family", _run_args("--families", "nosuch"), ["unknown family", "'nosuch'"],
         study=study_text(scenario=VALID_X)),
    # ---- learning rates ------------------------------------------------------------------------
    Case("lr-zero", _run_args(), ["learning_rate=0"],
         study=study_text(scenario="learning_rate = 0.0")),
    Case("lr-negative", _run_args(), ["learning_rate=-0.01"],
         study=study_text(scenario="learning_rate = -0.01")),
    Case("lr-nan", _run_args(), ["learning_rate=nan"],
         study=study_text(scenario="learning_rate = nan")),
    Case("lr-inf", _run_args(), ["learning_rate=inf"],
         study=study_text(scenario="learning_rate = inf")),
    # ---- schedule arguments out of range -------------------------------------------------------
    Case("step-size-frac-zero", _run_args(), ["triangular", "step_size"],
         study=study_text(scenario='optimizer = "sgd"\nschedule = { name = "triangular", '
                                   'base = 0.001, max_lr = 0.01, step_size_frac = 0.0 }')),
    Case("step-size-zero", _run_args(), ["triangular", "step_size=0"],
         study=study_text(scenario='optimizer = "sgd"\nschedule = { name = "triangular", '
                                   'base = 0.001, max_lr = 0.01, step_size = 0 }')),
    Case("pct-start-zero", _run_args(), ["one_cycle", "pct_start=0"],
         study=study_text(scenario='optimizer = "sgd"\nschedule = { name = "one_cycle", '
                                   'max_lr = 0.1, steps_frac = 1.0, pct_start = 0.0 }')),
    Case("pct-start-above-one", _run_args(), ["one_cycle", "pct_start=1.5"],
         study=study_text(scenario='optimizer = "sgd"\nschedule = { name = "one_cycle", '
                                   'max_lr = 0.1, steps_frac = 1.0, pct_start = 1.5 }')),
    Case("decay-steps-zero", _run_args(), ["exponential", "decay_steps=0"],
         study=study_text(scenario='optimizer = "sgd"\nschedule = { name = "exponential", '
                                   'initial = 0.1, decay_rate = 0.96, decay_steps = 0 }')),
    # ---- the store -----------------------------------------------------------------------------
    Case("unwritable-store",
         ["run", "--study", "{study}", "--tracking-uri", "sqlite:///{tmp}/afile/sub/mlflow.db",
          "--quiet"], ["{tmp}/afile/sub/mlflow.db"],
         study=study_text(scenario=VALID_X), setup=_unwritable_store),
    Case("unreachable-server",
         ["run", "--study", "{study}", "--tracking-uri", "http://127.0.0.1:{port}", "--quiet"],
         ["http://127.0.0.1:{port}", "unreachable"], study=study_text(scenario=VALID_X)),
    # ---- data (no Keras needed: the data check comes first) ------------------------------------
    Case("corrupted-dataset-file", _run_args(),
         ["{tmp}/data/" + CORRUPTED, "SHA-256"], study=study_text(**FASHION),
         env=DATA_ENV, setup=_corrupted_data),
    Case("no-dataset-no-network", _run_args(), ["fashion_mnist", "{tmp}/data"],
         study=study_text(**FASHION),
         env={**DATA_ENV, "LRSTUDY_DATA_CANDIDATES_ONLY": "1",
              # a proxy nobody listens on: no byte ever leaves this machine, online or not
              "https_proxy": "http://127.0.0.1:{port}", "HTTPS_PROXY": "http://127.0.0.1:{port}",
              "no_proxy": "", "NO_PROXY": ""},
         setup=_empty_dirs),
    # ---- a user's data: loaded and checked with the study, before any training ----------------
    Case("data-missing-file", _run_args(), ["nosuch.csv", "does not exist"],
         study=data_study('{ csv = "nosuch.csv", label = "y" }', val_size=10)),
    Case("data-missing-column", _run_args(), ["good.csv", "'price'"],
         study=data_study('{ csv = "good.csv", label = "price" }', val_size=10),
         setup=_user_data),
    Case("data-non-numeric-feature", _run_args(), ["text.csv", "'colour'", "not numeric"],
         study=data_study('{ csv = "text.csv", label = "y" }', val_size=10), setup=_user_data),
    Case("data-nan-feature", _run_args(), ["nan.csv", "NaN"],
         study=data_study('{ csv = "nan.csv", label = "y" }', val_size=10), setup=_user_data),
    Case("data-inf-feature", _run_args(), ["inf.npz", "infinite", "row 7"],
         study=data_study('{ npz = "inf.npz" }', val_size=10), setup=_user_data),
    Case("data-non-integer-labels", _run_args(), ["float_labels.csv", "non-integer"],
         study=data_study('{ csv = "float_labels.csv", label = "y" }', val_size=10),
         setup=_user_data),
    Case("data-fewer-rows-than-a-batch", _run_args(), ["batch_size 32", "12 examples"],
         study=data_study('{ csv = "small.csv", label = "y" }', val_size=4), setup=_user_data),
    Case("data-train-test-shapes-differ", _run_args(), ["shapes.npz", "x_test", "(5,)"],
         study=data_study('{ npz = "shapes.npz" }', val_size=10), setup=_user_data),
    Case("data-empty-class-directory", _run_args(), ["images", "'dog'", "no images"],
         study=data_study('{ images = "images" }', val_size=10), setup=_user_data),
    Case("data-csv-header-only", _run_args(), ["header_only.csv", "no rows"],
         study=data_study('{ csv = "header_only.csv", label = "y" }', val_size=10),
         setup=_user_data),
    # a study naming only catalogue scenarios: its error names one of them (OWN_SCENARIO_CASES)
    Case("data-error-in-a-catalogue-only-study", _run_args(),
         ["good.csv", "'price'", "scenario 'fixed-baseline'"],
         study=study_text(scenarios='["fixed-baseline"]', val_size=10).replace(
             'dataset = "synthetic"', 'dataset = { csv = "good.csv", label = "price" }'),
         setup=_user_data),
    Case("budget-error-in-a-catalogue-only-study", _run_args(),
         ["batch_size 5000", "800", "scenario 'fixed-baseline'"],
         study=study_text(scenarios='["fixed-baseline"]', batch_size=5000)),
    Case("data-regression-on-a-classification-dataset", _run_args(),
         ["synthetic", "'regression'"], study=study_text(scenario=VALID_X,
                                                          extra='task = "regression"')),
    Case("data-unknown-task", _run_args(), ["task", "'clustering'"],
         study=data_study('{ csv = "good.csv", label = "y" }', val_size=10,
                          extra='task = "clustering"'), setup=_user_data),
    # ---- the study file (no Keras needed) ------------------------------------------------------
    Case("unknown-study", ["run", "--study", "nosuchstudy", "--tracking-uri", "{store}"],
         ["'nosuchstudy'"]),
    Case("unknown-scenario", _run_args("--scenarios", "nope"), ["'nope'"],
         study=study_text(scenario=VALID_X)),
    Case("unknown-dataset", _run_args(), ["'nosuchdata'"],
         study=study_text(scenario=VALID_X + '\nbudget = { dataset = "nosuchdata" }')),
    Case("epochs-zero-in-file", _run_args(), ["tiny.toml", "epochs", "0"],
         study=study_text(epochs=0, scenario=VALID_X)),
    Case("batch-larger-than-train-set", _run_args(), ["batch_size 5000", "800"],
         study=study_text(batch_size=5000, scenario=VALID_X)),
    Case("train-size-larger-than-data", _run_args(), ["train_size 5000", "synthetic"],
         study=study_text(train_size=5000, scenario=VALID_X)),
    Case("malformed-toml", _run_args(), ["tiny.toml", "not valid TOML"],
         study=study_text(scenario=VALID_X) + "\n[scenario.y\nfamily = 'fixed'\n"),
    Case("empty-study-file", _run_args(), ["tiny.toml", "names no scenarios", "scenarios = ["],
         study=""),
    Case("blank-study-file", _run_args(), ["tiny.toml", "names no scenarios"], study="\n"),
    Case("comments-only-study-file", _run_args(), ["tiny.toml", "names no scenarios"],
         study="# my study, to be written\n\n"),
    # ---- a user's model module (its source is parsed; imported when it cannot be) -------------
    Case("model-module-raises-at-import", _run_args(),
         ["'bad_models:build'", "bad_models.py", "RuntimeError: boom"],
         study=study_text(scenario=VALID_X + '\nbudget = { model = "bad_models:build" }'),
         setup=_user_model('raise RuntimeError("boom")' + BUILD)),
    Case("model-module-imports-a-missing-package", _run_args(),
         ["'bad_models:build'", "ModuleNotFoundError", "'nosuch_package_of_a_user'"],
         study=study_text(scenario=VALID_X + '\nbudget = { model = "bad_models:build" }'),
         setup=_user_model("import nosuch_package_of_a_user" + BUILD)),
    Case("model-function-missing", _run_args(), ["'bad_models:build'", "defines no 'build'"],
         study=study_text(scenario=VALID_X + '\nbudget = { model = "bad_models:build" }'),
         setup=_user_model("def other(input_shape, num_classes):\n    pass\n")),
    Case("unknown-key-in-study", _run_args(), ["tiny.toml", "'colour'"],
         study='colour = "red"\n' + study_text(scenario=VALID_X)),
    Case("unknown-key-in-scenario", _run_args(), ["tiny.toml", "'x'", "'learnig_rate'"],
         study=study_text(scenario='learnig_rate = 0.01')),
    Case("unknown-reference-in-study", _run_args(), ["tiny.toml", "reference", "'nope'"],
         study='reference = "nope"\n' + study_text(scenario=VALID_X)),
    Case("margin-out-of-range-in-study", _run_args(), ["tiny.toml", "margin", "5"],
         study="margin = 5\n" + study_text(scenario=VALID_X)),
    # ---- the report --------------------------------------------------------------------------
    Case("report-unknown-reference",
         ["report", "--study", STUDY, "--tracking-uri", "{store}", "--reference", "nope",
          "--out", "{tmp}/report"], ["reference 'nope'", "'tiny'"]),
    Case("report-margin-out-of-range",
         ["report", "--study", STUDY, "--tracking-uri", "{store}", "--margin", "5"],
         ["--margin", "5"]),
    # ---- command-line numbers (argparse, no import of anything heavy) --------------------------
    Case("epochs-zero-flag", _run_args("--epochs", "0"), ["--epochs", "0"],
         study=study_text(scenario=VALID_X)),
    Case("epochs-not-a-number", _run_args("--epochs", "abc"), ["--epochs", "'abc'"],
         study=study_text(scenario=VALID_X)),
    Case("seeds-zero", _run_args("--seeds", "0"), ["--seeds", "0"],
         study=study_text(scenario=VALID_X)),
    Case("workers-negative", _run_args("--workers", "-1"), ["--workers", "-1"],
         study=study_text(scenario=VALID_X)),
    Case("stack-zero", _run_args("--stack", "0"), ["--stack", "auto, off or a positive", "'0'"],
         study=study_text(scenario=VALID_X)),
]


@dataclasses.dataclass
class Result:
    case: Case
    returncode: int
    stderr: str
    stdout: str
    seconds: float
    store: str
    names: list
    dir: Path


def _template_store(base: Path) -> tuple[str, str]:
    """A sqlite store holding one FINISHED trial of study ``tiny``; (db path, run id)."""
    from lrstudy.tracking import store as tracking

    db = base / "template" / "mlflow.db"
    db.parent.mkdir(parents=True)
    uri = f"sqlite:///{db}"
    client = tracking.client(uri)
    exp_id = tracking.experiment_id(STUDY, uri, client)
    run = client.create_run(exp_id, run_name="pre-existing", tags={
        Tag.STUDY: STUDY, Tag.SCENARIO: "x",
        Tag.FAMILY: "fixed", Tag.KIND: "trial",
        Tag.SEED: "0", Tag.RUN_KEY: "0123456789abcdef",
        Tag.DIVERGED: "false"})
    client.log_metric(run.info.run_id, "test_accuracy", 0.5)
    client.set_terminated(run.info.run_id, "FINISHED")
    return str(db), run.info.run_id


def _fill(value: str, subs: dict) -> str:
    for key, sub in subs.items():
        value = value.replace("{" + key + "}", sub)
    return value


HEAVY = ("tensorflow", "keras", "ray", "mlflow.server", "papermill")
# ``python -m lrstudy ARGS``, then the heavy modules it imported, written to a file at exit
WRAPPER = ("import runpy, sys\n"
           "report, sys.argv = sys.argv[1], ['lrstudy'] + sys.argv[2:]\n"
           "try:\n    runpy.run_module('lrstudy', run_name='__main__')\n"
           "finally:\n    open(report, 'w').write(' '.join(m for m in %r if m in sys.modules))\n"
           % (HEAVY,))


def _launch(case: Case, case_dir: Path, template_db: str, port: int) -> Result:
    case_dir.mkdir(parents=True)
    store_db = case_dir / "store" / "mlflow.db"
    store_db.parent.mkdir()
    shutil.copy(template_db, store_db)
    subs = {"store": f"sqlite:///{store_db}", "tmp": str(case_dir), "port": str(port),
            "nb": str(ROOT / "notebooks" / "scenario.ipynb"), "study": str(case_dir / "tiny.toml")}
    if case.study is not None:
        (case_dir / "tiny.toml").write_text(case.study)
    env = {"LRSTUDY_RUNS_DIR": str(case_dir / "runs"), "MLFLOW_TRACKING_URI": subs["store"]}
    env.update({k: _fill(v, subs) for k, v in case.env.items()})
    if case.setup is not None:
        env.update(case.setup(case_dir))
    args = [_fill(a, subs) for a in case.args]
    t0 = time.perf_counter()
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    if case.no_tf_env:
        full_env.pop("TF_CPP_MIN_LOG_LEVEL")
    cmd = ([sys.executable, "-m", "papermill", "--cwd", str(case_dir), *args] if case.papermill
           else [sys.executable, "-c", WRAPPER, str(case_dir / "imported"), *args])
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    return Result(case, proc.returncode, proc.stderr, proc.stdout, time.perf_counter() - t0,
                  subs["store"], [_fill(n, subs) for n in case.names], case_dir)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("bad_input")
    template_db, run_id = _template_store(base)
    port = _closed_port()
    with cf.ThreadPoolExecutor(POOL) as pool:
        futures = {c.id: pool.submit(_launch, c, base / c.id, template_db, port) for c in CASES}
        out = {}
        for cid, fut in futures.items():
            try:
                out[cid] = fut.result()
            except BaseException as exc:  # noqa: BLE001 - reported by the case's own test
                out[cid] = exc
    return {"cases": out, "run_id": run_id}


def _result(results, case_id: str) -> Result:
    res = results["cases"][case_id]
    if isinstance(res, BaseException):
        raise res
    return res


def _assert_store_untouched(uri: str, run_id: str) -> None:
    from lrstudy.tracking import store as tracking

    client = tracking.client(uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    # No FINISHED run, and indeed no run of any status: nothing started before the check.
    assert [r.info.run_id for r in tracking.search(client, exp_ids)] == [run_id]


def _describe(res: Result) -> str:
    return (f"case {res.case.id}: exit {res.returncode} in {res.seconds:.1f} s\n"
            f"--- stderr ---\n{res.stderr}\n--- stdout ---\n{res.stdout[-2000:]}")


CLI_CASES = [c.id for c in CASES if not c.papermill]
PAPERMILL_CASES = [c.id for c in CASES if c.papermill]


def test_there_are_enough_cases():
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id", CLI_CASES)
def test_bad_input_is_one_line_exit_2_and_nothing_trained(results, case_id):
    res = _result(results, case_id)
    assert res.returncode == 2, _describe(res)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), _describe(res)
    assert lines[0].startswith("lrstudy: error: "), _describe(res)
    for name in res.names:
        assert name in lines[0], f"{name!r} not named\n{_describe(res)}"
    _assert_store_untouched(res.store, results["run_id"])


@pytest.mark.parametrize("case_id", CLI_CASES)
def test_bad_input_is_refused_before_tensorflow_ray_or_a_server_is_imported(results, case_id):
    res = _result(results, case_id)
    imported = (res.dir / "imported").read_text().split()
    assert imported == [], f"the refusing process imported {imported}\n{_describe(res)}"


@pytest.mark.parametrize("case_id", PAPERMILL_CASES)
def test_papermill_bad_parameter_stops_before_training(results, case_id):
    res = _result(results, case_id)
    assert res.returncode != 0, _describe(res)  # papermill's own status: 1
    notebook = (res.dir / "out.ipynb").read_text()  # the executed notebook shows the error
    for name in res.names:
        assert name in res.stderr, f"{name!r} not named\n{_describe(res)}"
        assert name in notebook, f"{name!r} not in the output notebook"
    _assert_store_untouched(res.store, results["run_id"])


OWN_SCENARIO_CASES = ["data-error-in-a-catalogue-only-study",
                      "budget-error-in-a-catalogue-only-study"]


@pytest.mark.parametrize("case_id", OWN_SCENARIO_CASES)
def test_an_error_names_only_scenarios_of_the_users_study(results, case_id):
    """The study checks every catalogue scenario (``--scenarios`` may name any), but an error
    names a scenario the study runs, never one of the catalogue it does not mention."""
    from lrstudy.spec import study as scenarios

    res = _result(results, case_id)
    assert res.returncode == 2, _describe(res)
    named = set(re.findall(r"scenario '([^']+)'", res.stderr))
    assert named and named <= {"fixed-baseline"}, _describe(res)
    assert not named & (set(scenarios.catalogue()) - {"fixed-baseline"}), _describe(res)


@pytest.mark.parametrize("case_id", ["unreachable-server", "unwritable-store"])
def test_bad_store_fails_fast(results, case_id):
    res = _result(results, case_id)
    assert res.returncode == 2, _describe(res)
    # A closed port refuses at once: a few seconds of Python start-up even on a busy machine,
    # never a connection time-out.
    assert res.seconds < 20, _describe(res)
