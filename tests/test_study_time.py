"""``bench/study_time.py``: a study's wall time over its stacks' steady training time, read
from a store written here with known times (no training)."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import study_time  # noqa: E402

from lrstudy.tracking.schema import Tag  # noqa: E402

T0 = 1_700_000_000_000  # ms


def _run(client, exp, kind, start_s, end_s, parent=None, metrics=None, stack_size=None):
    tags = {Tag.KIND: kind}
    if parent:
        tags[Tag.PARENT_RUN] = parent
    if stack_size:
        tags[Tag.STACK_SIZE] = str(stack_size)
    run = client.create_run(exp, start_time=T0 + int(start_s * 1000), tags=tags)
    for key, value in (metrics or {}).items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, "FINISHED", end_time=T0 + int(end_s * 1000))
    return run.info.run_id


@pytest.fixture
def study_store(tmp_path):
    """Two executions side by side: A trains a stack of three (one copy diverged and
    stopped early), then one trial alone; B one trial alone (its first epoch's compile not
    told apart); the report's summary run comes later and is no part of the study."""
    from lrstudy.tracking import store as tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    exp = client.create_experiment("seeds")
    a = _run(client, exp, "scenario", 0, 100)
    b = _run(client, exp, "scenario", 10, 90)
    for i, train in enumerate((40.0, 40.0, 30.0)):
        _run(client, exp, "trial", 1 + i, 50 - i, parent=a, stack_size=3,
             metrics={"train_time_s": train, "compile_time_s": 2.0})
    _run(client, exp, "trial", 51, 95, parent=a, stack_size=1,
         metrics={"train_time_s": 30.0, "compile_time_s": 1.0})
    _run(client, exp, "trial", 11, 80, parent=b, stack_size=1, metrics={"train_time_s": 60.0})
    _run(client, exp, "summary", 200, 300)
    return uri


def test_a_stack_counts_once_at_its_longest_copy_and_the_span_is_the_study_runs(study_store):
    out = study_time.study_time(study_store, "seeds")
    assert (out["trials"], out["stacks"], out["largest_stack"]) == (5, 3, 3)
    assert out["steady_s"] == pytest.approx(40 + 30 + 60)
    assert out["compile_s"] == pytest.approx(2 + 1)
    assert out["wall_s"] == out["span_s"] == pytest.approx(100)
    assert out["wall_source"] == "the store's span"
    assert out["idle_s"] == pytest.approx(0)
    assert out["executions_at_once"] == 2 and out["executions"] == 2
    assert out["wall_over_steady"] == pytest.approx(100 / 130)
    assert out["wall_over_steady_per_worker"] == pytest.approx(200 / 130)
    assert out["trials_without_compile_split"] == 1
    assert out["stack_size_tag_mismatches"] == 0


def test_the_commands_wall_replaces_the_span(study_store):
    out = study_time.study_time(study_store, "seeds", wall_s=130.0)
    assert out["wall_source"] == "the command" and out["wall_over_steady"] == pytest.approx(1)


def test_a_pause_between_executions_is_idle_time_of_the_span(tmp_path):
    from lrstudy.tracking import store as tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    exp = client.create_experiment("seeds")
    for start in (0, 100):  # a study resumed after a pause of 80 s
        parent = _run(client, exp, "scenario", start, start + 20)
        _run(client, exp, "trial", start + 1, start + 19, parent=parent,
             metrics={"train_time_s": 10.0})
    out = study_time.study_time(uri, "seeds")
    assert out["span_s"] == pytest.approx(120) and out["idle_s"] == pytest.approx(80)


def test_an_unknown_study_is_named(study_store):
    with pytest.raises(ValueError, match="no study 'nope'"):
        study_time.study_time(study_store, "nope")
