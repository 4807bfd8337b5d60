"""The study runner end to end: papermill executions into a real sqlite store, resume without
duplicates, failure isolation, SIGKILL/SIGTERM, parallel writers."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, finished_trials, run_cli

pytestmark = pytest.mark.slow

SMALL = """
description = "small study for runner tests"
seeds = 2
scenarios = ["fixed-baseline", "fixed-sgd", "warmup-piecewise"]

[budget]
model = "mlp128"
dataset = "synthetic"
val_size = 200
batch_size = 32
epochs = 3
"""


def all_runs(uri, study, kind="trial"):
    from lrstudy.tracking import store as tracking

    client = tracking.client(uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        return []
    return tracking.search(client, [exp.experiment_id], f"tags.`lrstudy.kind` = '{kind}'")


def injected_parameters(notebook: Path) -> str:
    """The source of the parameters cell papermill injected into an executed notebook."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    (cell,) = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    return cell.source


def statuses_by_key(uri, study):
    out = collections.defaultdict(list)
    for run in all_runs(uri, study):
        out[run.data.tags["lrstudy.run_key"]].append(run.info.status)
    return out


@pytest.mark.xdist_group("smoke")  # one worker runs the smoke study once for these
def test_smoke_study_runs_every_trial_once_with_every_point(smoke_store):
    from lrstudy.spec import study as scenarios
    from lrstudy.tracking import store as tracking

    uri = smoke_store["uri"]
    study = scenarios.load_study("smoke")
    keys = {tracking.run_key(sc.key_config(), s) for sc in study.scenarios.values()
            for s in range(study.seeds)}
    by_key = statuses_by_key(uri, "smoke")
    assert set(by_key) == keys and all(v == ["FINISHED"] for v in by_key.values())
    # two workers wrote into one sqlite store at once: no metric point is missing
    client = tracking.client(uri)
    for run in finished_trials(uri, "smoke"):
        sc = study.scenarios[run.data.tags["lrstudy.scenario"]]
        steps = client.get_metric_history(run.info.run_id, "step_learning_rate")
        assert len(steps) == sc.steps_per_epoch * sc.budget["epochs"]
        assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2
        assert run.data.tags["lrstudy.stack_size"] == "2"  # --stack auto: both seeds at once
    parents = all_runs(uri, "smoke", "scenario")
    assert sorted(p.data.tags["lrstudy.scenario"] for p in parents) == sorted(study.scenarios)
    for parent in parents:
        assert parent.info.status == "FINISHED"
        names = [a.path for a in client.list_artifacts(parent.info.run_id)]
        name = parent.data.tags["lrstudy.scenario"]
        assert names == [f"{name}.ipynb", f"{name}.ipynb.log"]  # the notebook, its kernel's log
    for sc in study.scenarios:
        assert (smoke_store["dir"] / "runs" / tracking.store_label(uri) / "smoke"
                / f"{sc}.ipynb").exists()
    assert "done        6" in smoke_store["stdout"]
    # kernels talk over IPC sockets, so ipykernel has no unencrypted-TCP warning to print
    assert "without encryption" not in smoke_store["stderr"]


@pytest.mark.xdist_group("smoke")  # one worker runs the smoke study once for these
def test_rerun_skips_finished_trials(smoke_store, tmp_path):
    before = len(all_runs(smoke_store["uri"], "smoke"))
    proc = run_cli("run", "--study", "smoke", "--tracking-uri", smoke_store["uri"], "--quiet",
                   env={"LRSTUDY_RUNS_DIR": str(tmp_path)}, check=True)
    assert "skipped     6" in proc.stdout
    assert len(all_runs(smoke_store["uri"], "smoke")) == before
    assert not list(tmp_path.rglob("*.ipynb"))  # not even a kernel was started


def test_a_failing_scenario_does_not_stop_the_others(tmp_path, store):
    study = tmp_path / "mixed.toml"
    study.write_text(SMALL.replace('"warmup-piecewise"', '"broken"') + """
[scenario.broken]
family = "fixed"
optimizer = "adam"
learning_rate = 0.001
budget = { model = "broken_models:explodes", dataset = "synthetic", val_size = 200 }
""")
    env = {"PYTHONPATH": str(ROOT / "tests" / "fixtures"), "LRSTUDY_RUNS_DIR": str(tmp_path)}
    proc = run_cli("run", "--study", study, "--tracking-uri", store, "--quiet", "--seeds", "1",
                   env=env)
    assert proc.returncode == 1
    assert "1 scenario(s) failed: broken" in proc.stderr
    done = {r.data.tags["lrstudy.scenario"] for r in finished_trials(store, "mixed")}
    assert done == {"fixed-baseline", "fixed-sgd"}
    (parent,) = [p for p in all_runs(store, "mixed", "scenario")
                 if p.data.tags["lrstudy.scenario"] == "broken"]
    assert parent.info.status == "FAILED"
    assert "broken on purpose" in parent.data.tags["lrstudy.error"]
    from lrstudy.tracking import store as tracking

    error_nb = tmp_path / tracking.store_label(store) / "mixed" / "broken.ipynb"
    assert error_nb.exists() and "broken on purpose" in error_nb.read_text()

    arts = [a.path for a in tracking.client(store).list_artifacts(parent.info.run_id)]
    assert arts == ["broken.ipynb", "broken.ipynb.log"]
    assert "FAILED broken" in proc.stdout


def test_the_local_executor_starts_jobs_by_priority_then_submission():
    """Tunings first, then finals, then demonstrations, each in submission order (what
    :attr:`lrstudy.execution.runner.Job.priority` asks), whatever order they came in."""
    import threading

    from lrstudy.execution.executors import LocalExecutor
    from lrstudy.execution.runner import Job

    started, busy, gate = [], threading.Event(), threading.Event()

    def fn(job):
        started.append((job.phase, job.scenario))
        busy.set()
        gate.wait(60)  # the first job holds the only worker until every job is queued

    pool = LocalExecutor(fn, workers=1, warm=False)  # fn runs no notebook
    jobs = [Job("s", "s", f"{phase}-{i}", 1, {}, "", 1, "", phase=phase)
            for i, phase in enumerate(["demo", "tune", "final", "demo", "final", "tune"])]
    futures = [pool.submit(jobs[0], priority=jobs[0].priority)]
    assert busy.wait(60)
    futures += [pool.submit(job, priority=job.priority) for job in jobs[1:]]
    gate.set()
    for fut in futures:
        fut.result(timeout=60)
    pool.shutdown()
    assert started == [("demo", "demo-0"), ("tune", "tune-1"), ("tune", "tune-5"),
                       ("final", "final-2"), ("final", "final-4"), ("demo", "demo-3")]


def test_the_local_executor_returns_with_its_warmed_kernels_started():
    """The pool comes back once each worker has started its kernel, so that the runner's own
    imports (MLflow's, as it opens the store) never delay a kernel's start; and starting one
    imports no papermill (its engine is imported by the first execution)."""
    from lrstudy.execution.executors import LocalExecutor

    pool = LocalExecutor(lambda job: None, workers=2, warm=True)
    try:
        assert len(pool.kernels()) == 2
    finally:
        pool.shutdown(cancel=True, grace=5.0)
    assert pool.kernels() == []
    code = ("import sys\nfrom lrstudy.execution import kernels\n"
            "with kernels.kept_kernel(warm=True):\n    pass\n"
            "print(sorted(m for m in ('papermill', 'mlflow', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]"]


def test_a_final_starts_when_its_own_tuning_ends_not_after_every_tuning(tmp_path):
    """``follow`` submits what ``then`` releases as each job ends: here tune-b cannot end
    until final-a, released by tune-a's end, has run (with a barrier after every tuning it
    would never end, and the test would time out)."""
    import threading

    from lrstudy.execution import runner
    from lrstudy.execution.executors import LocalExecutor

    final_a_ran = threading.Event()

    def fn(job):
        if job.scenario == "b":
            assert final_a_ran.wait(60), "final-a did not start while tune-b ran"
        if (job.scenario, job.phase) == ("a", "final"):
            final_a_ran.set()
        return runner.JobResult(job.scenario, True, "", phase=job.phase)

    def job(name, phase):
        return runner.Job("s", "s", name, 1, {}, "", 1, "", phase=phase)

    pool = LocalExecutor(fn, workers=2, warm=False)  # fn runs no notebook
    watch = runner.StoreWatch(f"sqlite:///{tmp_path / 'unused.db'}")  # not http: no calls
    results = runner.follow(pool, [job("a", "tune"), job("b", "tune")], watch, lambda: None,
                            then=lambda r: [job("a", "final")] if (r.scenario, r.phase) == ("a", "tune")
                            else [])
    pool.shutdown()
    assert sorted((r.scenario, r.phase) for r in results) == [
        ("a", "final"), ("a", "tune"), ("b", "tune")]


#: A kernel of its own, as papermill starts one (no warm-up, no wipe), executing
#: ``notebooks/scenario.ipynb`` once per scenario named on the command line.
OWN_KERNEL = """
import json, sys
from lrstudy.execution import kernels
out, params = sys.argv[1], json.loads(sys.argv[2])
for name in sys.argv[3:]:
    kernels.execute(kernels.notebooks_dir() / "scenario.ipynb", f"{out}/{name}.ipynb",
                    {**params, "scenario": name})
"""


def test_a_worker_keeps_its_kernel_and_each_execution_starts_afresh(tmp_path, store):
    """With one worker, the three scenarios run one after another in one kernel, warmed
    before the first; each execution starts as on a kernel of its own (its cells count from
    1, nothing left of the previous notebook's names) and trains exactly what a kernel of its
    own, neither warmed nor wiped, trains: the first (after the warm-up) and the third
    (after two wipes)."""
    import json

    import nbformat

    from lrstudy.tracking import store as tracking
    from lrstudy.tracking.schema import Tag

    study = tmp_path / "kept.toml"
    study.write_text(SMALL)
    runs = tmp_path / "runs"
    run_cli("run", "--study", study, "--tracking-uri", store, "--quiet", "--seeds", "1",
            "--workers", "1", env={"LRSTUDY_RUNS_DIR": str(runs)}, check=True)
    trials = finished_trials(store, "kept")
    assert len(trials) == 3
    assert len({r.data.tags[Tag.PID] for r in trials}) == 1  # one kernel for the three
    for name in ("fixed-baseline", "fixed-sgd", "warmup-piecewise"):
        nb = nbformat.read(runs / tracking.store_label(store) / "kept" / f"{name}.ipynb", 4)
        counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
        assert counts == list(range(1, len(counts) + 1)), (name, counts)

    alone = f"sqlite:///{tmp_path / 'alone' / 'mlflow.db'}"  # each in a kernel of its own
    params = {"study": str(study), "seeds": 1, "tracking_uri": alone, "threads": 1}
    proc = subprocess.run([sys.executable, "-c", OWN_KERNEL, str(tmp_path / "alone"),
                           json.dumps(params), "fixed-baseline", "warmup-piecewise"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    solos = {r.data.tags["lrstudy.scenario"]: r for r in finished_trials(alone, "kept")}
    assert len({r.data.tags[Tag.PID] for r in solos.values()}) == 2
    for name in ("fixed-baseline", "warmup-piecewise"):
        solo = solos[name]
        (kept,) = [r for r in trials if r.data.tags["lrstudy.scenario"] == name]
        assert solo.data.tags[Tag.PID] != kept.data.tags[Tag.PID]
        assert solo.data.tags["lrstudy.run_key"] == kept.data.tags["lrstudy.run_key"]
        for key in ("loss", "val_loss", "test_loss", "test_accuracy"):
            assert solo.data.metrics[key] == kept.data.metrics[key], (name, key)


#: The first cell after the parameters of :func:`test_a_warmed_kernel_...`: what the kernel
#: holds before the notebook has imported anything.
KERNEL_STATE = """
import gc, json, os, sys
print(json.dumps({
    "modules": {m: m in sys.modules
                for m in ("tensorflow", "keras", "mlflow", "lrstudy.training.fitting")},
    "missing": [m for m in {warm!r} if m not in sys.modules],
    "names": sorted(n for n in globals() if not n.startswith("_")),
    "cwd": os.getcwd(), "count": get_ipython().execution_count,
    "frozen": gc.get_freeze_count()}))
"""


def test_a_warmed_kernel_has_tensorflow_imported_before_its_first_notebook(tmp_path):
    """A kept kernel warmed as its worker starts: its first notebook finds TensorFlow, Keras
    and MLflow imported (not lrstudy.training.fitting, whose import is a trial's first
    moment), and otherwise what a kernel of its own has: the same names, its own working
    directory, its cells counted from 1. A kernel of its own has imported none of them. The
    warmed kernel's imported objects are frozen out of the garbage collector's walks (what
    keeps its fresh starts' collections short); a kernel of its own froze nothing."""
    import json

    import nbformat

    from lrstudy.execution import kernels

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(
                    KERNEL_STATE.replace("{warm!r}", repr(kernels.WARM_MODULES)))]
    nbformat.write(nb, tmp_path / "state.ipynb")

    def state(out: Path) -> dict:
        kernels.execute(tmp_path / "state.ipynb", out, {"x": 1}, cwd=tmp_path)
        cell = nbformat.read(out, 4).cells[-1]
        (line,) = [o["text"] for o in cell.outputs if o.get("name") == "stdout"]
        return json.loads(line)

    with kernels.kept_kernel(warm=True):
        warmed = state(tmp_path / "warmed" / "state.ipynb")
    own = state(tmp_path / "own" / "state.ipynb")
    assert warmed["modules"] == {"tensorflow": True, "keras": True, "mlflow": True,
                                 "lrstudy.training.fitting": False}, warmed
    assert warmed["missing"] == [], warmed  # every module of the warm-up imported
    assert not any(own["modules"].values()), own
    assert warmed["names"] == own["names"]
    assert warmed["cwd"] == own["cwd"] == str(tmp_path)
    assert warmed["count"] == own["count"]
    assert warmed["frozen"] > 100_000 and own["frozen"] == 0, (warmed["frozen"], own["frozen"])


def _wait_for(predicate, timeout=300.0, every=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def _start_run(study, store, tmp_path, *extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "LRSTUDY_RUNS_DIR": str(tmp_path)}
    return subprocess.Popen(
        [sys.executable, "-m", "lrstudy", "run", "--study", str(study), "--tracking-uri", store,
         "--quiet", *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def test_sigkill_then_resume_finishes_every_trial_exactly_once(tmp_path, store):
    study = tmp_path / "small.toml"
    study.write_text(SMALL)
    # kill the runner twice at different points: after the first finished trial, then after
    # the fourth; each time at least one trial is mid-flight
    for after in (1, 4):
        proc = _start_run(study, store, tmp_path)
        assert _wait_for(lambda: len(finished_trials(store, "small")) >= after
                         or proc.poll() is not None)
        proc.kill()
        proc.wait(timeout=30)
        time.sleep(2.0)  # the kernels notice their parent is gone and exit
    proc = _start_run(study, store, tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    by_key = statuses_by_key(store, "small")
    assert len(by_key) == 6
    for key, statuses in by_key.items():
        assert statuses.count("FINISHED") == 1, (key, statuses)
        assert "RUNNING" not in statuses, (key, statuses)
    # the summary's own query counts each trial once
    from lrstudy import report

    trials = report.load_trials("small", tracking_uri=store)
    assert len(trials) == 6 and trials["run_id"].is_unique


def test_sigterm_stops_cleanly_and_leaves_nothing_running(tmp_path, store):
    study = tmp_path / "small.toml"
    # trials long enough that the one seen RUNNING still runs when the signal lands
    study.write_text(SMALL.replace("epochs = 3", "epochs = 60"))
    proc = _start_run(study, store, tmp_path, "--workers", "1")
    assert _wait_for(lambda: any(r.info.status == "RUNNING" for r in all_runs(store, "small"))
                     or proc.poll() is not None)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    statuses = [r.info.status for r in all_runs(store, "small")]
    assert "KILLED" in statuses and "RUNNING" not in statuses
    parents = [r.info.status for r in all_runs(store, "small", "scenario")]
    assert "RUNNING" not in parents


def test_four_processes_write_to_one_sqlite_store(tmp_path, store):
    study = tmp_path / "four.toml"
    study.write_text("""
seeds = 1
scenarios = ["fixed-baseline", "fixed-sgd", "adaptive-rmsprop", "adaptive-adagrad"]
[budget]
dataset = "synthetic"
val_size = 200
batch_size = 16
epochs = 4
jit_compile = false
""")
    code = ("import sys; from lrstudy.execution import scenario_run; "
            "scenario_run.run_scenario(sys.argv[1], sys.argv[2], 1, tracking_uri=sys.argv[3])")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    # create the store and experiment first, as the runner does, then race four writers
    from lrstudy.tracking import store as tracking

    tracking.experiment_id("four", store)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(study), name, store], env=env,
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for name in ("fixed-baseline", "fixed-sgd", "adaptive-rmsprop", "adaptive-adagrad")]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
    trials = finished_trials(store, "four")
    assert len(trials) == 4
    client = tracking.client(store)
    for run in trials:
        steps = client.get_metric_history(run.info.run_id, "step_loss")
        assert [m.step for m in steps] == list(range(4 * 50))  # 800 images / 16 x 4 epochs
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 4


def test_killing_a_kernel_fails_its_scenario_only_and_resume_finishes(tmp_path, store):
    study = tmp_path / "small.toml"
    study.write_text(SMALL)
    proc = _start_run(study, store, tmp_path, "--workers", "1")
    running = []

    def a_trial_runs():
        running[:] = [r for r in all_runs(store, "small") if r.info.status == "RUNNING"]
        return bool(running) or proc.poll() is not None

    assert _wait_for(a_trial_runs)
    assert running, proc.communicate()[1][-2000:]  # the runner ended before any trial ran
    victim = running[0]
    os.kill(int(victim.data.tags["lrstudy.pid"]), signal.SIGKILL)  # the notebook's kernel
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1  # the study went on, then named the failure
    killed_scenario = victim.data.tags["lrstudy.scenario"]
    assert f"failed: {killed_scenario}" in err
    from lrstudy.tracking import store as tracking

    assert tracking.client(store).get_run(victim.info.run_id).info.status == "KILLED"
    others = {r.data.tags["lrstudy.scenario"] for r in finished_trials(store, "small")}
    assert others >= {"fixed-baseline", "fixed-sgd", "warmup-piecewise"} - {killed_scenario}
    rerun = _start_run(study, store, tmp_path)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-2000:]
    by_key = statuses_by_key(store, "small")
    assert len(by_key) == 6 and all(s.count("FINISHED") == 1 for s in by_key.values())


@pytest.mark.xdist_group("smoke")  # one worker runs the smoke study once for these
def test_the_summary_report_of_the_smoke_study(smoke_store, tmp_path):
    proc = run_cli("report", "--study", "smoke", "--tracking-uri", smoke_store["uri"],
                   "--out", tmp_path, "--mlflow-ui", "http://mlflow.example:5999", check=True)
    html = Path(proc.stdout.strip().splitlines()[-1].split("report: ", 1)[1])
    assert html.exists() and html.parent == tmp_path
    # the verdict is printed too, before the path
    assert "\nverdict:\n  Best: " in proc.stdout
    text = html.read_text()
    assert text.count("<img") >= 5  # curves, LR per step, sensitivity, range tests, accuracy
    for scenario in ("fixed-baseline", "fixed-too-large", "warmup-cosine"):
        assert scenario in text
    assert 'href="http://mlflow.example:5999/#/experiments/' in text  # --mlflow-ui's links
    from lrstudy.tracking import store as tracking

    client = tracking.client(smoke_store["uri"])
    exp = client.get_experiment_by_name("smoke")
    (summary,) = client.search_runs([exp.experiment_id], "tags.`lrstudy.kind` = 'summary'")
    names = {a.path for a in client.list_artifacts(summary.info.run_id)}
    assert any(n.endswith(".html") for n in names) and any(n.endswith(".ipynb") for n in names)


USER_MODEL = '''
import keras


def tiny(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(num_classes)])
'''


def test_paths_and_user_models_are_resolved_from_the_callers_directory(tmp_path, store):
    """Kernels run in notebooks/: a relative LRSTUDY_DATA_DIR or LRSTUDY_CACHE_DIR, and a
    model module importable only from where the command was typed, must still work there."""
    from lrstudy.data import fashion_mnist

    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    source = fashion_mnist.fashion_mnist_dir(download=False)
    for name in fashion_mnist.FASHION_MNIST_SHA256:
        (work / "data" / name).symlink_to(source / name)
    (work / "my_models.py").write_text(USER_MODEL)
    (work / "study.toml").write_text(
        'seeds = 1\nscenarios = ["fixed-baseline"]\n[budget]\nmodel = "my_models:tiny"\n'
        'dataset = "fashion_mnist"\ntrain_size = 1000\nval_size = 1000\nbatch_size = 100\n'
        'epochs = 1\n')
    env = {**os.environ, "LRSTUDY_DATA_DIR": "data", "LRSTUDY_CACHE_DIR": "cache",
           "LRSTUDY_DATA_CANDIDATES_ONLY": "1", "LRSTUDY_RUNS_DIR": str(tmp_path / "runs")}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-m", "lrstudy", "run", "--study", "study.toml",
                           "--tracking-uri", store, "--quiet"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run,) = finished_trials(store, "study")
    assert run.data.params["model"] == "my_models:tiny"
    # one scenario, so one execution at a time: its kernel gets every core, not 1 of 2 workers'
    from lrstudy.tracking import store as tracking

    executed = tmp_path / "runs" / tracking.store_label(store) / "study" / "fixed-baseline.ipynb"
    assert f"threads = {os.cpu_count()}\n" in injected_parameters(executed)
    assert (work / "cache").is_dir()  # the relative cache was made where the command ran
    assert not (ROOT / "notebooks" / "cache").exists()
    # a model that cannot be found is refused before any training, naming it
    (work / "study.toml").write_text((work / "study.toml").read_text().replace(
        "my_models:tiny", "my_modles:tiny"))
    proc = subprocess.run([sys.executable, "-m", "lrstudy", "run", "--study", "study.toml",
                           "--tracking-uri", store, "--quiet"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "my_modles" in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_kernels_share_the_cores_among_the_executions_that_can_run_at_once(monkeypatch):
    """Threads per kernel: the cores over the executions at once, which are the workers but
    never more than the scenarios (a scenario's phases run one after the other)."""
    from lrstudy.execution import runner

    assert runner.concurrent_workers(2, ["a"]) == 1
    assert runner.concurrent_workers(2, ["a", "b", "c"]) == 2
    assert runner.concurrent_workers(4, []) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    for var in (*runner.THREAD_VARS, *runner.PATH_VARS, "PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL",
                "TF_FORCE_GPU_ALLOW_GROWTH"):  # what kernel_environment sets, restored after
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:
            monkeypatch.delenv(var, raising=False)
    assert runner.kernel_environment([], runner.concurrent_workers(2, ["a"]), 0) == 8
    assert os.environ["TF_NUM_INTRAOP_THREADS"] == "8"
    assert runner.kernel_environment([], runner.concurrent_workers(2, ["a", "b"]), 0) == 4
    assert runner.kernel_environment([], 2, 3) == 3  # --threads given: kept


def test_a_job_may_run_any_scenario_its_study_makes_available():
    """``--scenarios`` may name a catalogue scenario the study does not run by default (the
    default study runs a subset); the kernel's job must find it there too."""
    from lrstudy.execution import runner
    from lrstudy.spec import study as scenarios

    study = scenarios.load_study("seeds")
    name = next(n for n in study.available if n not in study.scenarios)
    job = runner.Job(study="seeds", study_name="seeds", scenario=name, seeds=1, overrides={},
                     tracking_uri="", threads=1, output="")
    assert runner.scenario_of(job).name == name
