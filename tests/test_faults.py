"""Faults a study survives, with no run lost: a signal at every moment of a trial's life,
trials left RUNNING by processes on other hosts (dead or alive, told apart by heartbeats), the
tracking server going away and coming back or not, a full disk under the store.

Everything is real: MLflow stores, papermill kernels, an ``mlflow server``; the one stand-in
is a TCP proxy between the study and the server, so the test can cut the connection and
restore it in an instant (the server process itself keeps running, as in a network outage).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, TINY, finished_trials, run_cli

pytestmark = pytest.mark.slow

TWO_SEEDS = TINY.format(scenarios='["fixed-baseline", "warmup-cosine"]', epochs=2, spe=4,
                        extra="").replace("seeds = 1", "seeds = 2")


def trials(uri, study):
    from lrstudy.tracking import store as tracking

    client = tracking.client(uri)
    exp = client.get_experiment_by_name(study)
    if exp is None:
        return []
    return tracking.search(client, [exp.experiment_id], "tags.`lrstudy.kind` = 'trial'")


def by_key(uri, study) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for run in trials(uri, study):
        out.setdefault(run.data.tags["lrstudy.run_key"], []).append(run.info.status)
    return out


def assert_each_trial_finished_once(uri, study, n, output=""):
    keys = by_key(uri, study)
    assert len(keys) == n, keys
    for key, statuses in keys.items():
        assert statuses.count("FINISHED") == 1 and "RUNNING" not in statuses, \
            (key, statuses, output[-2000:])


# ---- a signal at every moment of a trial's life ----------------------------------------------

DRIVER = """
import json, os, sys
from lrstudy.spec import study as scenarios
from lrstudy.tracking import store as tracking
from lrstudy.execution import scenario_run
from lrstudy.execution import trial_runs

study_path, uri = sys.argv[1], sys.argv[2]
study = scenarios.load_study(study_path)
sc = study.scenarios["fixed-baseline"]
statuses = {}
for seed, point in enumerate(trial_runs.PHASES[1:]):  # "import" happened once, above
    os.environ["LRSTUDY_SIGNAL_AT"] = point
    try:
        trial_runs.run_trial(study.name, sc, seed, tracking_uri=uri)
        statuses[point] = "no interrupt"
    except KeyboardInterrupt:
        key = tracking.run_key(sc.key_config(), seed)
        client = tracking.client(uri)
        exp = tracking.experiment_id(study.name, uri, client)
        runs = tracking.trials_by_key(client, exp, {key}).get(key, [])
        statuses[point] = [r.info.status for r in runs]
os.environ.pop("LRSTUDY_SIGNAL_AT")
resumed = scenario_run.run_scenario(study_path, "fixed-baseline", len(trial_runs.PHASES) - 1,
                             tracking_uri=uri)
print(json.dumps({"statuses": statuses, "resumed": [r["status"] for r in resumed]}))
"""


def test_a_signal_at_any_moment_of_a_trial_ends_it_killed_and_resume_finishes(
        write_study, store, tmp_path):
    from lrstudy.execution import trial_runs

    path = write_study(epochs=1)
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(path), store], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    points = list(trial_runs.PHASES[1:])
    assert len(points) >= 10
    assert out["statuses"] == {p: ["KILLED"] for p in points}, out["statuses"]
    # resume: every killed trial trains again, each key ends with exactly one FINISHED run
    # (FINISHED runs; random labels can leave one "diverged": stuck at chance)
    assert len(out["resumed"]) == len(points)
    assert set(out["resumed"]) <= {"finished", "diverged"}, out["resumed"]
    assert_each_trial_finished_once(store, "tiny", len(points))


def test_sigterm_to_the_runner_while_a_kernel_imports_ends_killed_and_resume_finishes(
        tmp_path, store):
    study = tmp_path / "tiny.toml"
    study.write_text(TWO_SEEDS)
    env = {"LRSTUDY_RUNS_DIR": str(tmp_path / "runs"), "LRSTUDY_SIGNAL_AT": "import@parent"}
    proc = run_cli("run", "--study", study, "--tracking-uri", store, "--quiet", "--workers",
                   "1", env=env)
    assert proc.returncode == 130, proc.stderr[-2000:]
    parents = [r for r in _all(store, "tiny", "scenario")]
    assert parents and {r.info.status for r in parents} == {"KILLED"}
    assert trials(store, "tiny") == []  # no trial had started
    proc = run_cli("run", "--study", study, "--tracking-uri", store, "--quiet",
                   env={"LRSTUDY_RUNS_DIR": str(tmp_path / "runs")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_each_trial_finished_once(store, "tiny", 4)


def _all(uri, study, kind):
    from lrstudy.tracking import store as tracking

    client = tracking.client(uri)
    exp = client.get_experiment_by_name(study)
    return tracking.search(client, [exp.experiment_id], f"tags.`lrstudy.kind` = '{kind}'")


# ---- trials left RUNNING on other hosts ---------------------------------------------------------

def test_a_stale_trial_elsewhere_is_rerun_and_a_fresh_one_is_left_to_its_owner(
        tmp_path, store):
    from lrstudy.spec import study as scenarios
    from lrstudy.tracking import run_life
    from lrstudy.tracking import store as tracking

    study_file = tmp_path / "tiny.toml"
    study_file.write_text(TWO_SEEDS.replace('["fixed-baseline", "warmup-cosine"]',
                                            '["fixed-baseline"]'))
    sc = scenarios.load_study(str(study_file)).scenarios["fixed-baseline"]
    client = tracking.client(store)
    exp = tracking.experiment_id("tiny", store, client)
    grace = run_life.heartbeat_grace()

    def left_running(seed, age):  # what a process on a restarted container leaves behind
        tags = {**tracking.run_tags("trial", "tiny", sc, seed=seed,
                                    run_key=tracking.run_key(sc.key_config(), seed)),
                "lrstudy.host": "old-container", "lrstudy.pid": str(os.getpid()),
                run_life.HEARTBEAT: f"{time.time() - age:.3f}"}
        return client.create_run(exp, tags=tags).info.run_id

    stale = left_running(0, grace + 300)
    fresh = left_running(1, 5)
    proc = run_cli("run", "--study", study_file, "--tracking-uri", store, "--quiet",
                   env={"LRSTUDY_RUNS_DIR": str(tmp_path / "runs")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert client.get_run(stale).info.status == "KILLED"
    assert client.get_run(fresh).info.status == "RUNNING"  # alive elsewhere: respected
    keys = by_key(store, "tiny")
    assert sorted(keys[tracking.run_key(sc.key_config(), 0)]) == ["FINISHED", "KILLED"]
    assert keys[tracking.run_key(sc.key_config(), 1)] == ["RUNNING"]
    assert "elsewhere   1" in proc.stdout and "old-container" in proc.stdout
    assert "done        1" in proc.stdout


# ---- the tracking server goes away -----------------------------------------------------------

class Proxy:
    """A TCP proxy on loopback that can drop every connection and refuse new ones."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.up = threading.Event()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.sock.listen(64)
        self.up.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()  # the server is "gone": connection reset
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        self.up.clear()
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self):
        self.up.set()


@pytest.fixture
def mlflow_behind_proxy(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}"
    (tmp_path / "server").mkdir()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
         "--artifacts-destination", (tmp_path / "server" / "artifacts").as_uri(),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    from lrstudy.tracking import store as tracking

    while tracking.server_unreachable(f"http://127.0.0.1:{port}", timeout=2):
        assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
        time.sleep(1)
    proxy = Proxy(port)
    yield f"http://127.0.0.1:{proxy.port}", proxy
    proxy.cut()
    server.terminate()
    server.wait(timeout=30)


def _start(study, uri, tmp_path, **env):
    full = {**os.environ, "LRSTUDY_RUNS_DIR": str(tmp_path / "runs"), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "lrstudy", "run", "--study", str(study), "--tracking-uri", uri,
         "--quiet"], cwd=ROOT, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def _wait(predicate, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_the_server_going_away_and_coming_back_or_not(tmp_path, mlflow_behind_proxy):
    uri, proxy = mlflow_behind_proxy
    study = tmp_path / "tiny.toml"
    study.write_text(TWO_SEEDS.replace("epochs = 2", "epochs = 6"))

    # away for 6 s (the runner checks the server every 2 s), then back: the study finishes,
    # every trial once
    proc = _start(study, uri, tmp_path)
    assert _wait(lambda: len(finished_trials(uri, "tiny")) >= 1 or proc.poll() is not None)
    proxy.cut()
    time.sleep(6)
    proxy.restore()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "is not answering" in err and "is back" in err
    assert_each_trial_finished_once(uri, "tiny", 4)

    # away for good: one line naming the server, exit 3, nothing recorded lost; then resume
    study.write_text(study.read_text().replace("seeds = 2", "seeds = 3"))
    before = {r.info.run_id for r in finished_trials(uri, "tiny")}
    proc = _start(study, uri, tmp_path, LRSTUDY_STORE_RETRY_S="5")
    assert _wait(lambda: any(r.info.status == "RUNNING" for r in trials(uri, "tiny"))
                 or proc.poll() is not None)
    proxy.cut()
    out, err = proc.communicate(timeout=300)
    proxy.restore()
    assert proc.returncode == 3, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("lrstudy: error: tracking store") and uri in last, err[-2000:]
    assert before <= {r.info.run_id for r in finished_trials(uri, "tiny")}
    proc = _start(study, uri, tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert_each_trial_finished_once(uri, "tiny", 6, out + err)


# ---- the disk under the store fills up ---------------------------------------------------------

def _mount_tmpfs(path: Path, size_mb: int) -> str | None:
    """Mount a tmpfs at ``path``; the reason it cannot be done here, or None."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    path.mkdir(parents=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                           str(path)], capture_output=True, text=True)
    return None if proc.returncode == 0 else f"mount -t tmpfs failed: {proc.stderr.strip()}"


def test_a_full_disk_is_one_clear_error_and_the_store_survives(tmp_path):
    disk = tmp_path / "disk"
    reason = _mount_tmpfs(disk, 48)
    if reason:
        pytest.skip(f"cannot make a small filesystem here: {reason}")
    try:
        store = f"sqlite:///{disk / 'mlflow.db'}"
        from lrstudy.tracking import store as tracking

        tracking.client(store).search_experiments()  # made here: the test polls it meanwhile
        study = tmp_path / "tiny.toml"
        study.write_text(TWO_SEEDS.replace("epochs = 2", "epochs = 4"))
        proc = _start(study, store, tmp_path)
        assert _wait(lambda: len(finished_trials(store, "tiny")) >= 1 or proc.poll() is not None)
        filler = disk / "filler"
        with open(filler, "wb") as f:  # take every free byte
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 1, err[-3000:]
        assert "disk of the tracking store is full" in err.strip().splitlines()[-1]
        db = sqlite3.connect(disk / "mlflow.db")
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()
        done = {r.info.run_id for r in finished_trials(store, "tiny")}
        assert done, "the trial finished before the disk filled up is kept"
        filler.unlink()
        proc = _start(study, store, tmp_path)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        assert done <= {r.info.run_id for r in finished_trials(store, "tiny")}
        assert_each_trial_finished_once(store, "tiny", 4)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
