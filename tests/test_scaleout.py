"""Past one machine, for real on this one: the smoke study through an ``mlflow server`` on
127.0.0.1 backed by a PostgreSQL server (artifacts proxied by the server), and as Ray tasks,
on a cluster the runner starts itself (listening on loopback only) and on one started by
``ray start`` (token authentication, interrupted by SIGTERM). Passwords and tokens travel in
files and environments, never on a command line. See docs/cluster.md.

PostgreSQL comes from Debian's packages (``/usr/lib/postgresql/<version>/bin``); without them
the PostgreSQL test is skipped, except under CI, where it fails. A server that does not start
fails the test with its log, as does a Ray cluster that does not start (with its raylet's
reason). Every server is stopped by its fixture, by process id, with bounded waits.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("scaleout")]  # servers: one worker

STUDY = "smoke"
LOOPBACK = "127.0.0.1"


# ---- helpers -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def wait_for(ready, *, timeout: float, what: str, proc=None, log=None) -> None:
    """Poll ``ready()`` until true; fail with the log when ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what} exited with status {proc.returncode}:\n{tail(log)}")
        time.sleep(0.5)
    pytest.fail(f"{what} not ready after {timeout:.0f} s:\n{tail(log)}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def stop_group(proc: subprocess.Popen, timeout: float = 40) -> None:
    """Stop a server this test started in its own session: SIGTERM to the server (an orderly
    shutdown of its children), then SIGTERM and finally SIGKILL to what is left of its
    process group, each wait bounded."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break  # the group is empty
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, else its zombie keeps the group alive
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def expected_keys(scenario_names=None, seeds=None) -> set[str]:
    from lrstudy.spec import study as scenarios
    from lrstudy.tracking import store as tracking

    study = scenarios.load_study(STUDY)
    names = scenario_names or list(study.scenarios)
    return {tracking.run_key(study.scenarios[n].key_config(), s)
            for n in names for s in range(seeds or study.seeds)}


def runs_of(client, kind: str):
    from lrstudy.tracking import store as tracking

    exp = client.get_experiment_by_name(STUDY)
    assert exp is not None, f"no experiment {STUDY!r} in the store"
    return tracking.search(client, [exp.experiment_id], f"tags.`lrstudy.kind` = '{kind}'")


def statuses_by_key(client) -> dict[str, list[str]]:
    out = collections.defaultdict(list)
    for run in runs_of(client, "trial"):
        out[run.data.tags["lrstudy.run_key"]].append(run.info.status)
    return dict(out)


def assert_ran_once(client, keys: set[str], scenario_names: list[str]) -> None:
    """Every trial FINISHED exactly once; one FINISHED scenario run per scenario."""
    assert statuses_by_key(client) == {k: ["FINISHED"] for k in keys}
    parents = runs_of(client, "scenario")
    assert sorted(p.data.tags["lrstudy.scenario"] for p in parents) == sorted(scenario_names)
    assert {p.info.status for p in parents} == {"FINISHED"}


def cli_report(proc) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 (never readable by others, not even for a moment)."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(text)


def command_lines_with(secret: str, procs=None) -> list[tuple[int, str]]:
    """(pid, command line) of the processes, of ``procs`` or else of the whole machine, whose
    command line contains ``secret`` (any local user can read command lines, with ``ps``)."""
    import psutil

    found = []
    for proc in psutil.process_iter() if procs is None else procs:
        try:
            line = " ".join(proc.cmdline())
        except psutil.Error:  # exited meanwhile
            continue
        if secret in line:
            found.append((proc.pid, line))
    return found


# ---- PostgreSQL + mlflow server ------------------------------------------------------------

def postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``, if any."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        return None
    newest = max(found, key=lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parts[-3])])
    return Path(newest).parent


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 with a database ``mlflow``, password auth.

    Postgres refuses to run as root: as root, the cluster belongs to the ``postgres`` user of
    Debian's package (``runuser``); otherwise to whoever runs the tests. Clients get the
    password from a libpq password file of mode 0600 (``PGPASSFILE``, or ``passfile`` of a
    connection), so that no URI or command line holds it.
    """
    bindir = postgres_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
                        "`make system-test` installs it as root")
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
                    "as root: apt-get install postgresql")
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and there is no `postgres` user to own the cluster")
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="lrstudy-pg-"))  # short, outside root-only tmp dirs
    data, sock, log = base / "data", base / "sock", base / "postgres.log"
    pwfile, pgpass = base / "pw", base / "pgpass"
    password, port = secrets.token_hex(12), free_port()
    sock.mkdir()
    write_private(pwfile, password + "\n")  # for initdb, removed once it has run
    write_private(pgpass, f"{LOOPBACK}:{port}:*:lrstudy:{password}\n")  # for the clients
    if owner is not None:
        for path in (base, sock, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    base.chmod(0o700)
    started = False
    try:
        init = subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "lrstudy", "-E", "UTF8",
             "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, timeout=120)
        pwfile.unlink()
        assert init.returncode == 0, f"initdb failed:\n{init.stdout}\n{init.stderr}"
        opts = f"-c listen_addresses={LOOPBACK} -p {port} -k {sock} -c fsync=off"
        start = subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts,
             "-w", "-t", "60", "start"], capture_output=True, text=True, timeout=90)
        started = start.returncode == 0
        assert started, f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{tail(log)}"
        env = {**os.environ, "PGPASSFILE": str(pgpass)}
        made = subprocess.run(
            [str(bindir / "createdb"), "-h", LOOPBACK, "-p", str(port), "-U", "lrstudy",
             "mlflow"], capture_output=True, text=True, timeout=60, env=env)
        assert made.returncode == 0, f"createdb failed:\n{made.stderr}\n{tail(log)}"
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; we install psycopg2
        yield {"url": f"postgresql+psycopg2://lrstudy@{LOOPBACK}:{port}/mlflow",
               "pgpass": pgpass, "password": password,
               "connect": {"host": LOOPBACK, "port": port, "user": "lrstudy",
                           "dbname": "mlflow", "passfile": str(pgpass)}}
    finally:
        if started:
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                            "-w", "-t", "30", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mlflow_server(postgres, tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 backed by ``postgres``, serving artifacts itself; the
    database password reaches it through ``PGPASSFILE``."""
    base = tmp_path_factory.mktemp("mlflow-server")
    artifacts, log, port = base / "artifacts", base / "server.log", free_port()
    cmd = [sys.executable, "-m", "mlflow", "server",
           "--backend-store-uri", postgres["url"],
           "--serve-artifacts", "--artifacts-destination", str(artifacts),
           "--host", LOOPBACK, "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "PGPASSFILE": str(postgres["pgpass"])}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    uri = f"http://{LOOPBACK}:{port}"
    try:
        wait_for(lambda: http_ok(uri + "/health"), timeout=240, what="mlflow server",
                 proc=proc, log=log)
        yield {"uri": uri, "artifacts": artifacts, "log": log, "pid": proc.pid}
    finally:
        stop_group(proc)


def test_smoke_study_through_mlflow_server_on_postgresql(mlflow_server, postgres, tmp_path):
    import psutil
    import psycopg2

    from lrstudy.spec import study as scenarios
    from lrstudy.tracking import store as tracking

    uri, names = mlflow_server["uri"], ["fixed-baseline", "warmup-cosine"]
    # two kernels writing through the server at once, one seed each
    proc = run_cli("run", "--study", STUDY, "--scenarios", ",".join(names), "--seeds", "1",
                   "--tracking-uri", uri, "--quiet",
                   env={"LRSTUDY_RUNS_DIR": str(tmp_path / "runs")}, timeout=600)
    assert proc.returncode == 0, cli_report(proc) + "\n--- server\n" + tail(mlflow_server["log"])

    # the database password is on no command line: not the server's, not its workers'
    server = psutil.Process(mlflow_server["pid"])
    tree = [server, *server.children(recursive=True)]
    assert "mlflow" in " ".join(server.cmdline()) and len(tree) >= 2, tree
    assert postgres["url"] in " ".join(server.cmdline())  # the URI, without a password
    assert command_lines_with(postgres["password"], tree) == []
    assert command_lines_with(postgres["password"]) == []

    client = tracking.client(uri)
    keys = expected_keys(names, seeds=1)
    assert_ran_once(client, keys, names)
    # the server's proxied artifact root was used, not a path on the client's disk
    exp = client.get_experiment_by_name(STUDY)
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    study = scenarios.load_study(STUDY)
    trials = runs_of(client, "trial")
    for run in trials:
        sc = study.scenarios[run.data.tags["lrstudy.scenario"]]
        params, metrics = run.data.params, run.data.metrics
        assert params["model"] == "mlp128" and params["dataset"] == "fashion_mnist"
        assert params["seed"] == run.data.tags["lrstudy.seed"]
        assert float(params["learning_rate"]) > 0 and params["optimizer"]
        assert {"test_accuracy", "test_loss", "val_loss", "train_time_s"} <= set(metrics)
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in history] == [0, 1]
        steps = client.get_metric_history(run.info.run_id, "step_learning_rate")
        assert len(steps) == sc.steps_per_epoch * sc.budget["epochs"]
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")

    # an artifact goes back through the server, and it is the server that stored it
    run = trials[0]
    local = client.download_artifacts(run.info.run_id, "config.json", str(tmp_path / "dl"))
    config = json.loads(Path(local).read_text())
    assert config["seed"] == int(run.data.tags["lrstudy.seed"])
    assert config["scenario"]["name"] == run.data.tags["lrstudy.scenario"]
    stored = list(mlflow_server["artifacts"].rglob(f"{run.info.run_id}/artifacts/config.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text()) == config
    for parent in runs_of(client, "scenario"):
        name = parent.data.tags["lrstudy.scenario"]
        paths = {a.path for a in client.list_artifacts(parent.info.run_id)}
        # the executed notebook, and the log of its kernel's stdout and stderr if it wrote any
        assert f"{name}.ipynb" in paths, paths
        assert paths <= {f"{name}.ipynb", f"{name}.ipynb.log"}, paths

    # the runs are rows of the PostgreSQL database behind the server
    with contextlib.closing(psycopg2.connect(**postgres["connect"])) as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT t.value, r.status FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
                    "WHERE t.key = 'lrstudy.run_key'")
        rows = cur.fetchall()
    assert sorted(rows) == sorted((k, "FINISHED") for k in keys)


# ---- Ray -----------------------------------------------------------------------------------

@pytest.fixture
def ray_tmp():
    """A short temporary directory for Ray (its unix socket paths must stay under ~100 chars)."""
    path = Path(tempfile.mkdtemp(prefix="lrray-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ray_logs(root: Path) -> list[Path]:
    """The log directories of the Ray sessions under ``root`` (``session_latest`` is a link)."""
    return sorted({p.resolve() for p in root.rglob("session_*/logs")})


FATAL = re.compile(r"\[\d{4}-\d\d-\d\d [\d:,]+ [CF] \d+ \d+\]")


def ray_failure(root: Path) -> str:
    """Why a Ray session under ``root`` failed, as its raylet and GCS logged it: the fatal
    lines (a raylet that timed out waiting for its agents says so here), else the last ones."""
    parts = []
    for logs in ray_logs(root):
        for name in ("raylet.err", "gcs_server.err"):
            lines = tail(logs / name, 400).splitlines()
            fatal = [ln for ln in lines if FATAL.match(ln)]  # severity C(ritical)/F(atal)
            shown = fatal or [ln for ln in lines if ln.strip() and ln[0] not in "/ "][-5:]
            if shown and not shown[0].startswith("(no log"):
                parts.append(f"--- {logs / name}\n" + "\n".join(shown))
    if not ray_logs(root):
        return f"(no Ray session logs under {root})"
    return "\n".join(parts)


def ray_worker_pids(root: Path) -> set[int]:
    """The process ids of the Ray workers of every session under ``root`` (log file names
    ``worker-<id>-<job>-<pid>.out``)."""
    pids = set()
    for logs in ray_logs(root):
        for path in logs.glob("worker-*.out"):
            pids.add(int(path.stem.rsplit("-", 1)[1]))
    return pids


def alive(pid: int) -> bool:
    from lrstudy.tracking.run_life import pid_alive

    return pid_alive(pid)


LISTENING = """
import json, os, urllib.error, urllib.request
import psutil
from lrstudy.execution.executors import RayExecutor

def task_pid(job):
    return os.getpid()

def http_status(ip, port):
    host = f"[{ip}]" if ":" in ip else ip
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code

executor = RayExecutor(task_pid, None, 1)
try:
    ran_in = executor.submit(None).result(timeout=120)
    driver = psutil.Process()
    procs, listening = [driver, *driver.children(recursive=True)], []
    for proc in procs:
        try:
            listening += [(proc.pid, " ".join(proc.cmdline()), c.laddr.ip, c.laddr.port)
                          for c in proc.net_connections(kind="inet")
                          if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            pass
    agent = [http_status(ip, port) for _, cmd, ip, port in listening
             if cmd.startswith("ray::RuntimeEnvAgent")]
    print(json.dumps({"driver": driver.pid, "pids": [p.pid for p in procs], "ran_in": ran_in,
                      "listening": listening, "agent_without_token": agent}))
finally:
    executor.shutdown()
"""


def on_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1, an IPv6 socket's view
    return addr.is_loopback or bool(mapped and mapped.is_loopback)


def test_local_cluster_listens_on_loopback_only(ray_tmp):
    """The cluster ``RayExecutor`` starts for itself is reachable from this machine only:
    every TCP socket its processes (the driver included) listen on is a loopback one; it runs
    a task; and it still wants Ray's token (its runtime-env agent refuses a request without
    one)."""
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    proc = subprocess.run([sys.executable, "-c", LISTENING], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, cli_report(proc) + "\n" + ray_failure(ray_tmp)
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    listening = seen["listening"]
    shown = "\n".join(f"{pid} {ip}:{port} {cmd[:100]}" for pid, cmd, ip, port in listening)
    assert [s for s in listening if not on_loopback(s[2])] == [], shown
    # the cluster's own servers were among those seen, not only the driver's socket
    listeners = " ".join(cmd for _, cmd, _, _ in listening)
    assert all(name in listeners for name in ("gcs_server", "raylet", "RuntimeEnvAgent")), shown
    assert seen["ran_in"] in seen["pids"] and seen["ran_in"] != seen["driver"]
    assert seen["agent_without_token"] == [401], shown


def test_smoke_study_as_ray_tasks_on_a_local_cluster(tmp_path, ray_tmp):
    """Two scenarios as Ray tasks on a cluster of one CPU: the worker runs them one after the
    other on the one kernel it keeps, which stops with it."""
    from lrstudy.tracking import store as tracking

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    runs = tmp_path / "runs"
    names = ["fixed-too-large", "warmup-cosine"]
    proc = run_cli("run", "--study", STUDY, "--scenarios", ",".join(names), "--seeds", "1",
                   "--executor", "ray", "--workers", "1", "--tracking-uri", uri, "--quiet",
                   env={"LRSTUDY_RUNS_DIR": str(runs), "RAY_TMPDIR": str(ray_tmp)},
                   timeout=600)
    assert proc.returncode == 0, cli_report(proc) + "\n" + ray_failure(ray_tmp)

    client = tracking.client(uri)
    assert_ran_once(client, expected_keys(names, seeds=1), names)
    for name in names:
        assert (runs / tracking.store_label(uri) / STUDY / f"{name}.ipynb").exists()
    assert re.search(r"done\s+2\b", proc.stdout), proc.stdout
    # each scenario ran inside a Ray worker: the process that opened its run is one of them
    workers = ray_worker_pids(ray_tmp)
    assert workers, f"no Ray worker logs under {ray_tmp}"
    owners = {int(p.data.tags["lrstudy.pid"]) for p in runs_of(client, "scenario")}
    assert owners <= workers and len(owners) == 1, (owners, workers)  # one CPU: one worker
    # its trials ran in one kernel, kept from the first task to the second
    kernels = {int(t.data.tags["lrstudy.pid"]) for t in runs_of(client, "trial")}
    assert len(kernels) == 1 and not kernels & workers, (kernels, workers)
    # the runner shut its cluster down: no worker, and no kernel, outlives the command
    wait_for(lambda: not any(alive(pid) for pid in workers | kernels), timeout=30,
             what="Ray workers and their kernels shutting down")


@pytest.fixture
def ray_cluster(ray_tmp):
    """``ray start --head`` with 2 CPUs, as a separate cluster the runner joins at
    ``127.0.0.1:PORT`` (Ray itself advertises the machine's address for it).

    ``--block`` keeps it in the foreground, so that stopping the process this test started
    stops the cluster (``ray stop`` would stop every Ray cluster of the machine). The cluster
    requires a token of its own, as a shared one should; ``auth`` is what a client then needs.
    """
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **auth,
           # the cluster's own view of the cache: the runner must send its own
           "LRSTUDY_CACHE_DIR": str(ray_tmp / "cluster-cache")}
    port, log = free_port(), ray_tmp / "ray-start.log"
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
           "--port", str(port), "--num-cpus", "2", "--include-dashboard=false",
           "--disable-usage-stats", "--temp-dir", str(ray_tmp)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        def started() -> bool:
            return "Ray runtime started" in log.read_text(errors="replace")

        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline and not started():
            time.sleep(0.5)
        if proc.poll() is not None or not started():
            pytest.fail(f"ray start failed (exit {proc.poll()}):\n{tail(log, 15)}\n"
                        f"{ray_failure(ray_tmp)}")
        # the token travels in the environment only
        assert command_lines_with(auth["RAY_AUTH_TOKEN"]) == []
        yield {"address": f"{LOOPBACK}:{port}", "tmp": ray_tmp, "log": log, "auth": auth}
    finally:
        stop_group(proc)


def test_cluster_from_ray_start_runs_a_scenario_and_sigterm_stops_it(tmp_path, ray_cluster):
    """One scenario through ``--ray-address``, on data from the runner's cache directory;
    SIGTERM once it trains: trial and scenario run end KILLED, the command exits 130 (as on
    Ctrl-C) and leaves no kernel behind."""
    from lrstudy.tracking import store as tracking

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    runs, cache, log = tmp_path / "runs", tmp_path / "runner-cache", tmp_path / "cli.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "LRSTUDY_RUNS_DIR": str(runs),
           "LRSTUDY_CACHE_DIR": str(cache), **ray_cluster["auth"]}
    cmd = [sys.executable, "-m", "lrstudy", "run", "--study", STUDY,
           "--scenarios", "fixed-baseline", "--seeds", "1", "--executor", "ray",
           "--ray-address", ray_cluster["address"], "--tracking-uri", uri, "--quiet",
           "--epochs", "1000"]  # still training when the signal comes: a smoke trial is 2 s
    db = tmp_path / "store" / "mlflow.db"

    def trial_statuses() -> dict[str, str]:
        """Seed -> status of the trials, read from the sqlite file as the CLI writes it."""
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                return dict(conn.execute(
                    "SELECT s.value, r.status FROM runs r JOIN tags k ON k.run_uuid = r.run_uuid "
                    "AND k.key = 'lrstudy.kind' AND k.value = 'trial' JOIN tags s ON "
                    "s.run_uuid = r.run_uuid AND s.key = 'lrstudy.seed'").fetchall())
        except sqlite3.Error:  # no database or no tables yet
            return {}

    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: trial_statuses().get("0") == "RUNNING"
                 and any(cache.glob("fashion_mnist-*/*.npy")), timeout=420,
                 what="the trial training on cached data", proc=proc, log=log)
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    report = f"{tail(log)}\n{ray_failure(ray_cluster['tmp'])}"
    assert returncode == 130, report

    assert trial_statuses() == {"0": "KILLED"}, report
    client = tracking.client(uri)
    (parent,) = runs_of(client, "scenario")
    assert parent.info.status == "KILLED"
    # the scenario ran inside a worker of that cluster, its kernel is gone
    assert int(parent.data.tags["lrstudy.pid"]) in ray_worker_pids(ray_cluster["tmp"])
    kernels = {int(r.data.tags["lrstudy.pid"]) for r in runs_of(client, "trial")}
    wait_for(lambda: not any(alive(pid) for pid in kernels), timeout=30,
             what="the interrupted kernel exiting")
    # the runner's environment travelled with the task: the worker's kernel used the data
    # cache where the runner said (waited for above), not where the cluster's own points
    assert not (ray_cluster["tmp"] / "cluster-cache").exists()


def test_unreachable_ray_address_is_one_line_and_exit_2(tmp_path):
    from lrstudy.tracking import store as tracking

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    tracking.experiment_id(STUDY, uri)  # an existing store: its creation logs nothing then
    port = free_port()  # nothing listens there
    proc = run_cli("run", "--study", STUDY, "--executor", "ray",
                   "--ray-address", f"{LOOPBACK}:{port}", "--tracking-uri", uri, "--quiet",
                   timeout=120)
    assert proc.returncode == 2, cli_report(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrstudy: error: "), lines
    assert "ray_address" in lines[0] and f"{LOOPBACK}:{port}" in lines[0], lines
    client = tracking.client(uri)
    assert runs_of(client, "trial") == [] and runs_of(client, "scenario") == []
