"""Trace once (issue 40): a stack shape or a probe is traced once per process, however many
trials or stacks pass through it (lrstudy.training.traces), with the results trials trained
one by one or on a fresh engine give; and no retracing warning reaches a study's kernel
logs or executed notebooks, where a deliberate retrace's warning does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import finished_trials
from test_stack import close, fit_alone, fit_stacked

from lrstudy.spec import lr_scale
from lrstudy.spec import study as scenarios
from lrstudy.training import effective_step, stacking, traces
from lrstudy.training import vector_stack as vstack

FUNCTIONS = ("VectorStack._run", "VectorStack._eval_batch", "VectorStack._probe_step",
             "StepSizeProbe._probe")

RETRACING = re.compile("retracing", re.IGNORECASE)


def fresh_engines() -> None:
    """A process without engines (as a new one): every signature traces anew."""
    vstack.ENGINES.clear()
    effective_step.ENGINES.clear()


def counts() -> dict:
    return {name: traces.traces(name) for name in FUNCTIONS}


def untimed(points: dict) -> dict:
    """A sink's points but the times (``*_time_s``)."""
    return {k: v for k, v in points.items() if not k.endswith("_time_s")}


@pytest.fixture
def tiny(write_study):
    """fixed-baseline (Adam at a constant LR) and warmup-cosine (Adam on a per-step
    schedule) of the tiny synthetic study, 2 epochs: stacks of either are of one signature."""
    path = write_study(scenarios='["fixed-baseline", "warmup-cosine"]', epochs=2)
    spec = scenarios.load_study(str(path))
    return spec.scenarios["fixed-baseline"], spec.scenarios["warmup-cosine"]


def test_stacks_of_one_signature_trace_once_and_train_as_alone(tiny):
    """Two stacks of one signature (other LRs, schedules and seeds) train with one trace of
    the loop, the validation and the probe; the second gives what it gives on an engine of
    its own (a fresh process's), and its copies what Keras's fit gives them one by one, each
    step at its own schedule's LR."""
    fixed, cosine = tiny
    first = [(fixed, 0, True), (lr_scale.scaled(fixed, 3), 1, False)]
    second = [(cosine, 2, True), (lr_scale.scaled(cosine, 1 / 3), 3, False)]
    fresh_engines()
    base = counts()
    fit_stacked(first)
    reused = fit_stacked(second)
    assert {k: v - base[k] for k, v in counts().items()} == {
        "VectorStack._run": 1, "VectorStack._eval_batch": 1, "VectorStack._probe_step": 1,
        "StepSizeProbe._probe": 0}
    fresh_engines()
    alone_engine = fit_stacked(second)
    for (a, _), (b, _) in zip(reused, alone_engine):
        # nothing of the first stack's state left in the engine (times aside)
        assert untimed(a.points) == untimed(b.points)
    for (s_sink, s_out), (a_sink, a_out) in zip(reused, fit_alone(second)):
        for key in ("val_loss", "val_accuracy", "loss", "learning_rate", "effective_lr_p50"):
            assert close(s_sink.points[key], a_sink.points[key]), key
        assert close(s_sink.points["step_learning_rate"], a_sink.points["step_learning_rate"],
                     rel=1e-6)
        assert s_out["params"] == a_out["params"]
    # Keras's fit of those two trials: their probes share one trace as well
    assert counts()["StepSizeProbe._probe"] - base["StepSizeProbe._probe"] == 1


def test_stacks_of_one_signature_taking_turns_train_as_one_after_the_other(tiny):
    """Two stacks of one signature alive at once, epoch by epoch in turns (as make bench
    runs them), share the engine: each gives what it gives alone."""
    fixed, cosine = tiny
    groups = [[(fixed, 0, True), (lr_scale.scaled(fixed, 3), 1, False)],
              [(cosine, 0, True), (lr_scale.scaled(cosine, 1 / 3), 1, False)]]
    alone = [fit_stacked(trials) for trials in groups]
    from lrstudy import determinism
    from lrstudy.tracking import metric_sink
    from lrstudy.training import fitting

    assert not fixed.budget["jit_compile"]
    fresh_engines()
    base = counts()

    sinks, runs = [], []
    with determinism.op_determinism(enabled=True):  # as fit_stack trains them (no XLA here)
        for trials in groups:
            ss = [metric_sink.MetricSink(None) for _ in trials]
            prepared = [fitting.prepare_fit(sc, seed, sink, pipeline=False)
                        for (sc, seed, _), sink in zip(trials, ss)]
            stacked = stacking.stack_of(prepared, fitting.steps_per_execution(trials[0][0]))
            assert isinstance(stacked, vstack.VectorStack)
            sinks.append(ss)
            runs.append(stacking.train(stacked, prepared))
        for _ in range(2):
            for run in runs:
                next(run)
        for run in runs:
            for _ in run:
                pass
    assert counts()["VectorStack._run"] - base["VectorStack._run"] == 1
    for ss, ref in zip(sinks, alone):
        for sink, (ref_sink, _) in zip(ss, ref):
            for key in ("val_loss", "loss", "step_learning_rate", "effective_lr_p50"):
                assert sink.points[key] == ref_sink.points[key], key


def test_a_second_trace_of_one_signature_logs_a_retracing_warning(caplog):
    """The line a test looks for: a function of one signature traced again (a new function
    made for it, as each stack made its own before) logs ``retracing``."""
    import tensorflow as tf

    signature = ("test", object())
    for _ in range(2):
        fn = traces.function(lambda x: x + 1, "demo", signature)
        fn(tf.constant(1.0))
    assert traces.traces("demo", signature) == 2
    assert any(RETRACING.search(r.getMessage()) for r in caplog.records
               if r.name == traces.__name__)


# ---- through the runner: a kept kernel's logs and notebooks ------------------------------------

def retracing_lines(directory: Path) -> list[str]:
    """Every line matching ``retracing`` in the kernel logs (``*.ipynb.log``) and in the
    outputs of the executed notebooks (``*.ipynb``) under ``directory``."""
    found = []
    for log in sorted(directory.rglob("*.ipynb.log")):
        found += [f"{log.name}: {line}" for line in log.read_text(errors="replace").splitlines()
                  if RETRACING.search(line)]
    for nb in sorted(directory.rglob("*.ipynb")):
        for cell in json.loads(nb.read_text()).get("cells", []):
            for out in cell.get("outputs", []):
                text = out.get("text") or "".join(out.get("traceback", []))
                for value in (out.get("data") or {}).values():
                    text = f"{text}\n{value if isinstance(value, str) else ''.join(value)}"
                text = "".join(text) if isinstance(text, list) else text
                found += [f"{nb.name}: {line}" for line in text.splitlines()
                          if RETRACING.search(line)]
    return found


STUDY = """
description = "two scenarios of one stack signature, one kept kernel"
seeds = 5
scenarios = ["fixed-baseline", "warmup-cosine"]
reference = "fixed-baseline"

[budget]
model = "mlp128"
dataset = "synthetic"
val_size = 200
batch_size = 32
epochs = 3
steps_per_execution = 4
jit_compile = true
"""


@pytest.mark.slow
def test_a_stacked_study_in_one_kept_kernel_logs_no_retracing(tmp_path, store, monkeypatch):
    """Two scenarios of one stack signature run one after the other in one kept kernel (one
    worker) through the runner and papermill, each as stacks of 2, 2 and 1 (5 seeds, stacks
    of 2): six stacks of two shapes in one process, where stacks that each traced their own
    functions made TensorFlow warn of ``VectorStack._probe_step`` and ``_eval_batch``
    retracing in the second notebook's outputs. No line of a kernel log and no output of an
    executed notebook says ``retracing`` now, and the second execution compiles nothing."""
    from lrstudy.execution import runner
    from lrstudy.tracking.schema import Tag

    runs = tmp_path / "runs"
    monkeypatch.setenv("LRSTUDY_RUNS_DIR", str(runs))
    study = tmp_path / "once.toml"
    study.write_text(STUDY)
    runner.run_study(str(study), workers=1, tracking_uri=store, progress=False, stack="2",
                     overrides={"epochs": 2, "train_size": 512})
    trials = finished_trials(store, "once")
    assert len(trials) == 10
    assert len({r.data.tags[Tag.PID] for r in trials}) == 1  # one kernel for both executions
    assert sorted(r.data.tags["lrstudy.stack_size"] for r in trials) == ["1"] * 2 + ["2"] * 8
    logs = sorted(p.name for p in runs.rglob("*.ipynb.log"))
    assert logs == ["fixed-baseline.ipynb.log", "warmup-cosine.ipynb.log"]
    assert retracing_lines(runs) == []
    # the second execution traced and compiled nothing: its first epochs cost no more than
    # the others (compile_time_s), where the first stack of each shape paid its compile
    compile_s = {(r.data.tags["lrstudy.scenario"], int(r.data.tags["lrstudy.seed"])):
                 r.data.metrics["compile_time_s"] for r in trials}
    first = min(compile_s[("fixed-baseline", 0)], compile_s[("fixed-baseline", 4)])
    assert max(s for (sc, _), s in compile_s.items() if sc == "warmup-cosine") < first / 2


RETRACE = """\
import tensorflow as tf
from lrstudy.training import traces

for _ in range(2):  # lrstudy's line: a function of one signature made and traced again
    traces.function(lambda x: x + 1, "deliberate", ("one signature",))(tf.constant(1.0))

def plain(x):
    return x + 1

for _ in range(6):  # TensorFlow's own: a tf.function made again in a loop
    tf.function(plain, autograph=False)(tf.constant(1.0))
"""


@pytest.mark.slow
def test_a_deliberate_retrace_in_a_kept_kernel_is_found(tmp_path):
    """The check above can fail: in a kept kernel (the runner's, logging as it does), an
    execution after a first one (which imports lrstudy's training as a scenario does)
    retraces on purpose, and both lrstudy's warning and TensorFlow's are found."""
    import nbformat

    from lrstudy.execution import kernels

    def notebook(name, source):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(source)]
        path = tmp_path / "in" / f"{name}.ipynb"
        path.parent.mkdir(exist_ok=True)
        nbformat.write(nb, path)
        return path

    first = notebook("first", "from lrstudy.execution import scenario_run")
    second = notebook("second", RETRACE)
    out = tmp_path / "out"
    with kernels.kept_kernel():
        kernels.execute(first, out / "first.ipynb", {}, cwd=tmp_path)
        kernels.execute(second, out / "second.ipynb", {}, cwd=tmp_path)
    lines = retracing_lines(out)
    assert any("deliberate retracing" in line for line in lines), lines
    assert any("triggered tf.function retracing" in line for line in lines), lines
    assert not any(line.startswith("first") for line in lines)
