"""Where runs are stored, how they are named and keyed, and the queries the runner needs.

The tracking contract (../shared/design.md): one experiment per study; runs tagged
``lrstudy.study``, ``lrstudy.scenario``, ``lrstudy.family``, ``lrstudy.kind`` and, on trials,
``lrstudy.seed``, ``lrstudy.run_key`` and ``lrstudy.diverged``. The default store is a sqlite
database under the project's ``mlruns/`` with artifacts beside it, always as absolute paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

TAG = "lrstudy."
KINDS = ("scenario", "trial", "lr_range_test", "summary")
FAMILIES = ("fixed", "warmup", "decay", "plateau", "adaptive", "cyclical", "finder")


class StoreError(RuntimeError):
    """The tracking store cannot be used (unwritable directory, unreachable server)."""


def project_root() -> Path:
    """The project directory: ``$LRSTUDY_HOME``, else the checkout this package lives in."""
    if os.environ.get("LRSTUDY_HOME"):
        return Path(os.environ["LRSTUDY_HOME"]).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


def default_tracking_uri() -> str:
    return f"sqlite:///{project_root() / 'mlruns' / 'mlflow.db'}"


def default_artifact_root() -> Path:
    return project_root() / "mlruns" / "artifacts"


def tracking_uri(uri: str | None = None) -> str:
    """The store to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else the project default.

    A relative sqlite path is made absolute here: papermill runs kernels in other working
    directories, and a relative URI there would silently create a second database.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    elif "://" not in uri:  # a bare path: a sqlite file
        uri = f"sqlite:///{Path(uri).resolve()}"
    return uri


def is_local(uri: str) -> bool:
    return uri.startswith("sqlite:")


def client(uri: str | None = None):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(uri))


def check_store(uri: str | None = None, timeout: float = 10.0) -> str:
    """Fail early, with one clear line, when the store cannot be written or reached."""
    uri = tracking_uri(uri)
    if is_local(uri):
        db = Path(uri[len("sqlite:///"):])
        parent = db.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"tracking store {uri} cannot be created: {exc.strerror}") from None
        if not os.access(parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise StoreError(f"tracking store {uri} is not writable")
        artifacts = default_artifact_root() if db == Path(default_tracking_uri()[10:]) else None
        if artifacts is not None and artifacts.exists() and not os.access(artifacts, os.W_OK):
            raise StoreError(f"artifact directory {artifacts} is not writable")
        return uri
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
                if resp.status != 200:
                    raise StoreError(f"tracking server {uri} answered {resp.status} on /health")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StoreError(f"tracking server {uri} is unreachable: {reason}") from None
    return uri


def series_writer(uri: str | None = None):
    """A fast writer for long per-step series on a local sqlite store, else None.

    MLflow's ``log_batch`` costs about 0.3-0.8 s per 1000 points on this machine (ORM objects,
    latest-metric bookkeeping), which alone would make per-step logging cost far more than
    the 5% the study allows. On a sqlite store the series go in with one ``executemany`` into
    MLflow's own ``metrics`` table (and ``latest_metrics`` kept as MLflow keeps it), in one
    transaction; servers get MLflow's asynchronous ``log_batch``.
    """
    uri = tracking_uri(uri)
    if not is_local(uri):
        return None
    path = uri[len("sqlite:///"):]

    def write(run_id: str, points: list[tuple[str, float, int, int]]) -> None:
        """``points``: (key, value, timestamp_ms, step), all finite."""
        import sqlite3

        if not points:
            return
        latest: dict[str, tuple] = {}
        for key, value, ts, step in points:
            if key not in latest or step >= latest[key][3]:
                latest[key] = (key, value, ts, step)
        con = sqlite3.connect(path, timeout=60)
        try:
            with con:
                con.executemany(
                    "INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan)"
                    " VALUES (?, ?, ?, ?, ?, 0)",
                    [(k, v, ts, run_id, st) for k, v, ts, st in points])
                con.executemany(
                    "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
                    " VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT(key, run_uuid) DO UPDATE SET"
                    " value = excluded.value, timestamp = excluded.timestamp,"
                    " step = excluded.step, is_nan = 0 WHERE excluded.step >= latest_metrics.step",
                    [(k, v, ts, st, run_id) for k, v, ts, st in latest.values()])
        finally:
            con.close()

    return write


def experiment_id(study: str, uri: str | None = None, mlflow_client=None) -> str:
    """The experiment of ``study``, created on first use (artifacts beside a local store)."""
    mlflow_client = mlflow_client or client(uri)
    exp = mlflow_client.get_experiment_by_name(study)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    uri = tracking_uri(uri)
    location = None
    if is_local(uri):
        db = Path(uri[len("sqlite:///"):])
        location = (db.parent / "artifacts" / study).as_uri()
    try:
        return mlflow_client.create_experiment(study, artifact_location=location)
    except Exception:  # another process created it between our two calls
        exp = mlflow_client.get_experiment_by_name(study)
        if exp is None:
            raise
        return exp.experiment_id


def run_key(config: dict, seed: int) -> str:
    """The idempotency key of one trial: a hash of the canonical config plus the seed."""
    canonical = json.dumps({"config": config, "seed": int(seed)}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def owner_tags() -> dict[str, str]:
    """Who is running a run: lets a later process tell a live run from a dead one."""
    return {TAG + "host": socket.gethostname(), TAG + "pid": str(os.getpid())}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_orphan(run) -> bool:
    """A RUNNING run whose owning process is gone (checked on this host only)."""
    tags = run.data.tags
    if run.info.status != "RUNNING":
        return False
    if tags.get(TAG + "host") != socket.gethostname():
        return False
    try:
        return not pid_alive(int(tags.get(TAG + "pid", "0")))
    except ValueError:
        return False


def search(mlflow_client, experiment_ids, filter_string: str = "", max_results: int = 50000):
    """All runs matching the filter, across pages."""
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs(
            experiment_ids, filter_string=filter_string, max_results=min(max_results, 5000),
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token or len(runs) >= max_results:
            return runs


def mark_orphans_killed(mlflow_client, exp_id: str) -> int:
    """Mark RUNNING runs of dead processes KILLED, so that no summary ever counts them."""
    killed = 0
    for run in search(mlflow_client, [exp_id], "attributes.status = 'RUNNING'"):
        if is_orphan(run):
            mlflow_client.set_terminated(run.info.run_id, "KILLED")
            killed += 1
    return killed


def trials_by_key(mlflow_client, exp_id: str, keys=None) -> dict[str, list]:
    """Trial runs of an experiment grouped by run key (all statuses)."""
    grouped: dict[str, list] = {}
    for run in search(mlflow_client, [exp_id], f"tags.`{TAG}kind` = 'trial'"):
        key = run.data.tags.get(TAG + "run_key")
        if key and (keys is None or key in keys):
            grouped.setdefault(key, []).append(run)
    return grouped


def claim(mlflow_client, exp_id: str, key: str, run_id: str) -> bool:
    """Decide, after creating ``run_id`` for ``key``, whether this process owns the trial.

    Optimistic and store-agnostic: every contender first creates its RUNNING run, then looks
    at all runs with the key. A FINISHED one, or a live RUNNING one that started earlier
    (ties broken by run id), wins; dead RUNNING ones are marked KILLED. Two studies started
    at once therefore never both train the same trial.
    """
    mine = (mlflow_client.get_run(run_id).info.start_time, run_id)
    for run in search(mlflow_client, [exp_id], f"tags.`{TAG}run_key` = '{key}'"):
        info = run.info
        if info.run_id == run_id:
            continue
        if info.status == "FINISHED":
            return False
        if info.status == "RUNNING":
            if is_orphan(run):
                mlflow_client.set_terminated(info.run_id, "KILLED")
                continue
            if (info.start_time, info.run_id) < mine:
                return False
    return True
