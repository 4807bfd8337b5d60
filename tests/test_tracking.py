"""The owner of MLflow runs against a real sqlite store: how runs open and close (FINISHED,
FAILED, KILLED), heartbeats, dead and live runs on this host and on others, store paths."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from lrstudy import interrupts
from lrstudy.tracking import run_life
from lrstudy.tracking import store as tracking


@pytest.fixture
def exp(store):
    client = tracking.client(store)
    return client, tracking.experiment_id("t", store, client)


def test_sqlite_uris_are_parsed_in_one_place_and_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri("sqlite:///rel/mlflow.db") == \
        f"sqlite:///{tmp_path / 'rel' / 'mlflow.db'}"
    assert tracking.tracking_uri("x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    assert tracking.sqlite_path("sqlite:////a/b.db") == tracking.Path("/a/b.db")
    assert tracking.sqlite_path("http://127.0.0.1:5000") is None
    assert tracking.artifact_root("sqlite:////a/b.db") == tracking.Path("/a/artifacts")


def test_open_run_ends_finished_failed_or_killed(exp):
    client, exp_id = exp
    tags = tracking.run_tags("trial", "t", "sc", seed=0)
    with run_life.open_run(client, exp_id, tags, heartbeat=False) as ok:
        pass
    with pytest.raises(RuntimeError), run_life.open_run(client, exp_id, tags) as failed:
        raise RuntimeError("boom")
    with pytest.raises(KeyboardInterrupt), run_life.open_run(client, exp_id, tags) as killed:
        raise KeyboardInterrupt
    with run_life.open_run(client, exp_id, tags) as chosen:
        chosen.end_as("KILLED")
    statuses = [client.get_run(r.id).info.status for r in (ok, failed, killed, chosen)]
    assert statuses == ["FINISHED", "FAILED", "KILLED", "KILLED"]
    run = client.get_run(ok.id)
    assert run.data.tags["lrstudy.kind"] == "trial" and run.data.tags["lrstudy.seed"] == "0"
    assert run.data.tags["lrstudy.host"] == socket.gethostname()


def test_any_exception_that_comes_with_a_stop_signal_ends_killed(exp):
    """A signal inside TensorFlow's tracing may surface as another exception type: the
    signal count, not the type, decides."""
    client, exp_id = exp
    with pytest.raises(ValueError):
        with interrupts.stop_on_signals(), run_life.open_run(client, exp_id, {}) as run:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except KeyboardInterrupt:
                raise ValueError("what a C++ frame made of the interrupt") from None
    assert client.get_run(run.id).info.status == "KILLED"
    assert signal.getsignal(signal.SIGTERM) is not interrupts._handler  # handler put back


def test_a_discarded_run_is_deleted(exp):
    client, exp_id = exp
    with run_life.open_run(client, exp_id, {}) as run:
        run.discard()
    assert client.get_run(run.id).info.lifecycle_stage == "deleted"


class _Refusing:
    """A client whose store refuses to end runs (as a full disk does); the rest is MLflow's."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def set_terminated(self, run_id, status=None, end_time=None):
        raise OSError("database or disk is full")


def test_a_run_the_store_will_not_end_raises_unless_another_error_is_on_its_way(exp, caplog):
    """After a body that succeeded, a store that refuses the end is an error (its result never
    reached the store: whoever ran it must not count it done); while the body's own error is
    raised, it is only logged. Either way the run stays RUNNING, for the reaper."""
    client, exp_id = exp
    refusing = _Refusing(client)
    with pytest.raises(OSError, match="disk is full"):
        with run_life.open_run(refusing, exp_id, {}, heartbeat=False) as ok:
            pass
    with pytest.raises(RuntimeError, match="boom"):
        with run_life.open_run(refusing, exp_id, {}, heartbeat=False) as failed:
            raise RuntimeError("boom")
    assert f"could not end run {failed.id} as FAILED" in caplog.text
    assert [client.get_run(r.id).info.status for r in (ok, failed)] == ["RUNNING", "RUNNING"]


def test_trials_by_key_finds_the_same_runs_key_by_key_as_in_one_search(exp, monkeypatch):
    client, exp_id = exp
    made: dict[str, list] = {}
    for key in ("a", "b", "c"):
        for _ in range(2 if key == "b" else 1):
            tags = tracking.run_tags("trial", "t", "sc", run_key=key)
            made.setdefault(key, []).append(client.create_run(exp_id, tags=tags).info.run_id)
    # a run of another kind with a trial's key is no trial
    client.create_run(exp_id, tags=tracking.run_tags("scenario", "t", "sc", run_key="a"))

    def ids(grouped):
        return {k: sorted(r.info.run_id for r in runs) for k, runs in grouped.items()}

    expected = {k: sorted(v) for k, v in made.items() if k in ("a", "b")}
    assert ids(tracking.trials_by_key(client, exp_id, {"a", "b", "z"})) == expected
    monkeypatch.setattr(tracking, "KEYED_SEARCHES", 1)  # more keys: one search of every trial
    assert ids(tracking.trials_by_key(client, exp_id, {"a", "b", "z"})) == expected
    assert ids(tracking.trials_by_key(client, exp_id)) == {k: sorted(v) for k, v in made.items()}


def test_the_heartbeat_is_refreshed_while_the_run_is_open(exp, monkeypatch):
    monkeypatch.setenv(run_life.HEARTBEAT_INTERVAL_ENV, "0.2")
    client, exp_id = exp
    with run_life.open_run(client, exp_id, tracking.run_tags("trial", "t")) as run:
        first = float(client.get_run(run.id).data.tags[run_life.HEARTBEAT])
        time.sleep(1.0)
        later = float(client.get_run(run.id).data.tags[run_life.HEARTBEAT])
    assert later - first >= 0.4
    time.sleep(0.5)  # no beat after the run ended
    assert float(client.get_run(run.id).data.tags[run_life.HEARTBEAT]) == pytest.approx(
        later, abs=0.3)


def _running(client, exp_id, *, host, age, pid=None):
    tags = {**tracking.run_tags("trial", "t", "sc", run_key="k"), "lrstudy.host": host,
            run_life.HEARTBEAT: f"{time.time() - age:.3f}"}
    if pid is not None:
        tags["lrstudy.pid"] = str(pid)
    return client.create_run(exp_id, tags=tags).info.run_id


def _wait_for_zombie(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, f"process {pid} did not become a zombie"
        time.sleep(0.01)


def test_dead_and_live_runs_on_this_host_and_elsewhere(exp):
    client, exp_id = exp
    grace = run_life.heartbeat_grace()
    here = socket.gethostname()
    zombie = subprocess.Popen(["sleep", "60"])  # killed and not waited for: a zombie until
    zombie.kill()                                # its parent (this test) reaps it
    _wait_for_zombie(zombie.pid)
    runs = {
        "stale elsewhere": _running(client, exp_id, host="elsewhere", age=grace + 60),
        "fresh elsewhere": _running(client, exp_id, host="elsewhere", age=1),
        "stale here, pid alive": _running(client, exp_id, host=here, age=grace + 60,
                                          pid=os.getpid()),
        "fresh here, pid gone": _running(client, exp_id, host=here, age=1, pid=999999999),
        "fresh here, pid alive": _running(client, exp_id, host=here, age=1, pid=os.getpid()),
        "fresh here, pid a zombie": _running(client, exp_id, host=here, age=1, pid=zombie.pid),
    }
    reaped = {r.info.run_id for r in tracking.reap(client, exp_id)}
    zombie.wait()
    dead = {name for name, run_id in runs.items() if run_id in reaped}
    assert dead == {"stale elsewhere", "stale here, pid alive", "fresh here, pid gone",
                    "fresh here, pid a zombie"}
    for name, run_id in runs.items():
        assert client.get_run(run_id).info.status == ("KILLED" if name in dead else "RUNNING")


def test_the_grace_period_is_a_setting(exp, monkeypatch):
    client, exp_id = exp
    run_id = _running(client, exp_id, host="elsewhere", age=30)
    monkeypatch.setenv(run_life.HEARTBEAT_GRACE_ENV, "60")
    assert not run_life.is_dead(client.get_run(run_id))
    monkeypatch.setenv(run_life.HEARTBEAT_GRACE_ENV, "10")
    assert run_life.is_dead(client.get_run(run_id))


def test_a_claim_goes_to_the_earliest_live_run_and_never_to_a_dead_one(exp):
    client, exp_id = exp
    stale = _running(client, exp_id, host="elsewhere", age=run_life.heartbeat_grace() + 60)
    tags = tracking.run_tags("trial", "t", "sc", run_key="k")
    first = client.create_run(exp_id, tags=tags).info.run_id
    other_process = {**tags, "lrstudy.pid": str(os.getppid())}  # alive, on this host
    second = client.create_run(exp_id, tags=other_process).info.run_id
    assert tracking.claim(client, exp_id, "k", first)
    assert not tracking.claim(client, exp_id, "k", second)
    assert client.get_run(stale).info.status == "KILLED"


def test_a_ghost_run_of_this_process_does_not_win_the_claim(exp):
    """A create_run retried after an outage lost its answer leaves an earlier RUNNING run of
    this very process for the key: the claim deletes it and goes to the run we hold."""
    client, exp_id = exp
    tags = tracking.run_tags("trial", "t", "sc", run_key="g")
    ghost = client.create_run(exp_id, tags=tags).info.run_id
    ours = client.create_run(exp_id, tags=tags).info.run_id
    assert tracking.claim(client, exp_id, "g", ours)
    assert client.get_run(ghost).info.lifecycle_stage == "deleted"
    assert [r.info.run_id for r in tracking.trials_by_key(client, exp_id, {"g"})["g"]] == [ours]


CREATE = """
import sys, time
from lrstudy.tracking import run_life
from lrstudy.tracking import store as tracking
while time.time() < float(sys.argv[2]):  # start together
    time.sleep(0.001)
client = tracking.client(sys.argv[1])
print(len(client.search_experiments()))
"""


def test_a_new_sqlite_store_is_a_copy_of_an_empty_store_mlflow_made_once(tmp_path,
                                                                         monkeypatch):
    """The first new store makes the template (MLflow's own migrations); later ones copy it
    without migrating, and MLflow still gives each its Default experiment, where it would."""
    import mlflow.store.db.utils as db_utils

    monkeypatch.setenv("LRSTUDY_CACHE_DIR", str(tmp_path / "cache"))
    first = f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}"
    tracking.client(first).search_experiments()
    (template,) = (tmp_path / "cache").glob("mlflow-*.db")

    def no_migrations(engine):
        raise AssertionError("a store made from the template ran MLflow's migrations")

    monkeypatch.setattr(db_utils, "_initialize_tables", no_migrations)
    monkeypatch.chdir(tmp_path)
    second = f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    client = tracking.client(second)
    (default,) = client.search_experiments()
    assert (default.experiment_id, default.name) == ("0", "Default")
    assert default.artifact_location == str(tmp_path / "mlruns" / "0")  # MLflow's own choice
    exp_id = tracking.experiment_id("t", second, client)
    run = client.create_run(exp_id)
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    assert template.stat().st_size > 0 and not list((tmp_path / "b").glob(".*.new"))


def test_processes_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path):
    """MLflow creates a missing sqlite store on first use; without the lock in
    ``tracking.client`` two processes doing so at once fail (``_alembic_tmp_... exists``)."""
    import subprocess
    import sys
    import time

    for attempt in range(2):
        uri = f"sqlite:///{tmp_path / f'store{attempt}' / 'mlflow.db'}"
        start = time.time() + 6  # past every process's import of mlflow
        procs = [subprocess.Popen([sys.executable, "-c", CREATE, uri, str(start)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-1500:]
            assert out.strip() == "1"  # the Default experiment, created once


def test_a_dataset_two_trials_log_at_once_is_linked_to_both(store):
    """Two trials logging a dataset new to the store at once both insert it, and one loses on
    the key (seen with two kernels on PostgreSQL); it logs again, which links the dataset.
    The race depends on timing, so the losing insert is played here by a client whose first
    ``log_inputs`` raises what PostgreSQL's server said (a stand-in); the real sqlite store
    takes the second. Any other error is raised at once."""
    from mlflow.exceptions import MlflowException

    from lrstudy.data import datasets as data

    client = tracking.client(store)
    run_id = client.create_run(tracking.experiment_id("datasets", store, client)).info.run_id
    ds = data.load("synthetic", train_size=100, val_size=50)
    real, calls = client.log_inputs, []

    def racing(run_id, datasets):
        calls.append(run_id)
        if len(calls) == 1:
            raise MlflowException("BAD_REQUEST: (psycopg2.errors.UniqueViolation) duplicate key "
                                  'value violates unique constraint "dataset_pk"')
        return real(run_id, datasets=datasets)

    client.log_inputs = racing
    tracking.log_dataset(client, run_id, ds)
    assert len(calls) == 2
    assert [d.dataset.name for d in client.get_run(run_id).inputs.dataset_inputs] == [ds.name]

    def gone(run_id, datasets):
        calls.append(run_id)
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: run not found")

    client.log_inputs = gone
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        tracking.log_dataset(client, run_id, ds)
    assert len(calls) == 3
