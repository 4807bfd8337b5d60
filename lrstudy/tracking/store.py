"""The one owner of MLflow runs: where they are stored, how they are tagged and keyed, looked
up, claimed and reaped (how they open and close, and how a dead one is told from a live one:
:mod:`lrstudy.tracking.run_life`).

- Store: the default is a sqlite database under the project's ``mlruns/`` with artifacts
  beside it, always as absolute paths (:func:`tracking_uri`, :func:`sqlite_path`).
- One experiment per study (:func:`experiment_id`).
- Tags: ``lrstudy.study``, ``.scenario``, ``.family``, ``.kind`` and, on trials, ``.seed``,
  ``.run_key`` and ``.diverged``, built by :func:`run_tags`.
- A run's life, from its opening to its end, its heartbeat, and whether a RUNNING one is
  dead: :mod:`lrstudy.tracking.run_life`. :func:`reap` marks the dead ones KILLED and
  :func:`claim` lets exactly one live process own a trial.

Nothing here imports TensorFlow; MLflow is imported when a client is made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from pathlib import Path

from lrstudy.tracking.run_life import HEARTBEAT, is_dead
from lrstudy.tracking.schema import TAG, Tag

SQLITE = "sqlite:///"
#: The experiment tag MLflow 3's UI reads to open an experiment on its training runs (the
#: value of ``ExperimentKind.CUSTOM_MODEL_DEVELOPMENT`` in the UI of the pinned MLflow)
#: rather than on its GenAI traces page.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


class StoreError(RuntimeError):
    """The tracking store cannot be used (unwritable directory, unreachable server)."""


# ---- where runs are stored ---------------------------------------------------------------------

def project_root() -> Path:
    """The project directory: ``$LRSTUDY_HOME``, else the checkout this package lives in."""
    if os.environ.get("LRSTUDY_HOME"):
        return Path(os.environ["LRSTUDY_HOME"]).resolve()
    here = Path(__file__).resolve().parents[2]  # the checkout holding lrstudy/
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


def default_tracking_uri() -> str:
    return f"{SQLITE}{project_root() / 'mlruns' / 'mlflow.db'}"


def tracking_uri(uri: str | None = None) -> str:
    """The store to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else the project default.

    A relative sqlite path is made absolute here: papermill runs kernels in other working
    directories, and a relative URI there would silently create a second database.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    if uri.startswith(SQLITE):
        return f"{SQLITE}{Path(uri[len(SQLITE):]).resolve()}"
    if "://" not in uri:  # a bare path: a sqlite file
        return f"{SQLITE}{Path(uri).resolve()}"
    return uri


def store_label(uri: str | None = None) -> str:
    """A folder name for a tracking store, under which a study's executed notebooks and
    reports are kept, so that runs on different stores never overwrite each other's files:
    ``default`` for the project's own store, else the store's name (a sqlite file's stem, a
    server's host and port) and 8 hex digits of its URI.

    >>> store_label("sqlite:////data/elsewhere.db")
    'elsewhere-0fffa695'
    """
    uri = tracking_uri(uri)
    if uri == default_tracking_uri():
        return "default"
    path = sqlite_path(uri)
    if path is not None:
        name = path.stem
    else:
        from urllib.parse import urlparse

        parsed = urlparse(uri)
        name = f"{parsed.hostname or parsed.scheme}-{parsed.port}" if parsed.port else (
            parsed.hostname or parsed.scheme or "store")
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "store"
    return f"{name}-{hashlib.sha256(uri.encode()).hexdigest()[:8]}"


def sqlite_path(uri: str | None = None) -> Path | None:
    """The database file of a local sqlite store, else None (a server or another database)."""
    uri = tracking_uri(uri)
    return Path(uri[len(SQLITE):]) if uri.startswith(SQLITE) else None


def is_local(uri: str | None = None) -> bool:
    return sqlite_path(uri) is not None


def artifact_root(uri: str | None = None) -> Path | None:
    """Where a local store keeps its artifacts: ``artifacts/`` beside the database."""
    db = sqlite_path(uri)
    return db.parent / "artifacts" if db is not None else None


def client(uri: str | None = None):
    """An ``MlflowClient`` on the store; a new sqlite store is created by one process at a time.

    MLflow creates a missing sqlite database (and migrates an old one) when the first client
    opens it; two processes doing that at once fail with ``table _alembic_tmp_... already
    exists``. A lock on the store's directory, held while the client opens the store, makes the
    first creator finish before anyone else looks. A missing sqlite store is a copy of an
    empty one (:mod:`lrstudy.tracking.store_template`), not a migration.
    """
    from mlflow import MlflowClient

    uri = tracking_uri(uri)
    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(tracking_uri=uri)
    with store_creation_lock(db):
        if not db.exists():
            from lrstudy.tracking import store_template

            store_template.new_sqlite_store(db)
        return MlflowClient(tracking_uri=uri)


@contextlib.contextmanager
def store_creation_lock(db: Path):
    """An exclusive ``flock`` on the directory of the sqlite file ``db`` (created if missing)."""
    import fcntl

    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(db.parent, os.O_RDONLY)
    except OSError:  # an unwritable place: let MLflow say what is wrong with it
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def check_store(uri: str | None = None, timeout: float = 10.0) -> str:
    """Fail early, with one clear line, when the store cannot be written or reached."""
    uri = tracking_uri(uri)
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"tracking store {uri} cannot be created: {exc.strerror}") from None
        if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise StoreError(f"tracking store {uri} is not writable")
        artifacts = artifact_root(uri)
        if artifacts.exists() and not os.access(artifacts, os.W_OK):
            raise StoreError(f"artifact directory {artifacts} is not writable")
        return uri
    if uri.startswith(("http://", "https://")):
        reason = server_unreachable(uri, timeout)
        if reason:
            raise StoreError(f"tracking server {uri} is unreachable: {reason}")
    return uri


def server_unreachable(uri: str, timeout: float = 10.0) -> str | None:
    """Why the tracking server at ``uri`` does not answer ``/health``, or None when it does."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            return None if resp.status == 200 else f"it answered {resp.status} on /health"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def experiment_id(study: str, uri: str | None = None, mlflow_client=None) -> str:
    """The experiment of ``study``, created on first use (artifacts beside a local store),
    tagged :data:`EXPERIMENT_KIND` so that MLflow's UI opens it on its training runs."""
    mlflow_client = mlflow_client or client(uri)
    exp = mlflow_client.get_experiment_by_name(study)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(exp.experiment_id)
        if exp.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:  # made by an older lrstudy
            mlflow_client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
        return exp.experiment_id
    artifacts = artifact_root(uri)
    location = (artifacts / study).as_uri() if artifacts is not None else None
    try:
        return mlflow_client.create_experiment(study, artifact_location=location,
                                               tags=dict([EXPERIMENT_KIND]))
    except Exception:  # another process created it between our two calls
        exp = mlflow_client.get_experiment_by_name(study)
        if exp is None:
            raise
        return exp.experiment_id


# ---- names, keys and tags ----------------------------------------------------------------------

def run_key(config: dict, seed: int, phase: str = "") -> str:
    """The idempotency key of one trial: a hash of the canonical config, the seed and, in a
    competition, the phase."""
    fields = {"config": config, "seed": int(seed), **({"phase": phase} if phase else {})}
    canonical = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def owner_tags() -> dict[str, str]:
    """Who is running a run: lets a later process tell a live run from a dead one."""
    return {Tag.HOST: socket.gethostname(), Tag.PID: str(os.getpid()),
            HEARTBEAT: f"{time.time():.3f}"}


def run_tags(kind: str, study: str, scenario=None, *, name: str | None = None,
             parent: str | None = None, **extra) -> dict[str, str]:
    """The tags of a run of ``kind`` (scenario, trial, lr_range_test, summary).

    ``scenario`` (a :class:`lrstudy.spec.study.Scenario`) adds its name, family and baseline,
    a string only the name; ``extra`` adds ``lrstudy.<key>`` tags (``seed=0`` gives
    ``lrstudy.seed``).
    """
    tags = {Tag.KIND: kind, Tag.STUDY: study}
    if isinstance(scenario, str):
        tags[Tag.SCENARIO] = scenario
    elif scenario is not None:
        tags[Tag.SCENARIO] = scenario.name
        tags[Tag.FAMILY] = scenario.family
        if scenario.baseline:
            tags[Tag.BASELINE] = scenario.baseline
        substituted = (getattr(scenario, "budget", None) or {}).get("dataset_substituted")
        if substituted:  # "mnist -> fashion_mnist"
            tags[Tag.DATASET_SUBSTITUTED] = substituted
    tags.update({TAG + key: str(value) for key, value in extra.items()})
    if name:
        tags["mlflow.runName"] = name
    if parent:
        tags["mlflow.parentRunId"] = parent
    return {**tags, **owner_tags()}


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


def reap(mlflow_client, exp_id: str) -> list:
    """Mark the dead RUNNING runs of an experiment KILLED; returns them."""
    dead = [run for run in search(mlflow_client, [exp_id], "attributes.status = 'RUNNING'")
            if is_dead(run)]
    for run in dead:
        mlflow_client.set_terminated(run.info.run_id, "KILLED")
    return dead



#: Up to this many run keys are looked up one search each; more, in one search of every trial.
KEYED_SEARCHES = 64


def trials_by_key(mlflow_client, exp_id: str, keys=None) -> dict[str, list]:
    """Trial runs of an experiment grouped by run key (all statuses).

    A few ``keys`` are searched for one by one: MLflow's search reads each run it returns
    whole (tags, params, latest metrics), so a search of every trial costs seconds once a
    study has a thousand, and a trial looks up its own key before it starts."""
    kind = f"tags.`{TAG}kind` = 'trial'"
    if keys is not None and len(keys) <= KEYED_SEARCHES:
        runs = [run for key in sorted(keys) for run in search(
            mlflow_client, [exp_id], f"{kind} and tags.`{TAG}run_key` = '{key}'")]
    else:
        runs = search(mlflow_client, [exp_id], kind)
    grouped: dict[str, list] = {}
    for run in runs:
        key = run.data.tags.get(Tag.RUN_KEY)
        if key and (keys is None or key in keys):
            grouped.setdefault(key, []).append(run)
    return grouped


def claim(mlflow_client, exp_id: str, key: str, run_id: str) -> bool:
    """Decide, after creating ``run_id`` for ``key``, whether this process owns the trial.

    Optimistic and store-agnostic: every contender first creates its RUNNING run, then looks
    at all runs with the key. A FINISHED one, or a live RUNNING one that started earlier
    (ties broken by run id), wins; dead RUNNING ones are marked KILLED. Two studies started
    at once therefore never both train the same trial.

    A RUNNING run of the claimant's own process (same host and pid) for the key is a ghost: a
    ``create_run`` whose answer a network outage lost, which MLflow's client then sent
    again. Nobody drives it, so it is deleted rather than allowed to win the claim.
    """
    held = mlflow_client.get_run(run_id)
    mine = (held.info.start_time, run_id)
    me = {k: held.data.tags.get(k) for k in (Tag.HOST, Tag.PID)}
    for run in search(mlflow_client, [exp_id], f"tags.`{TAG}run_key` = '{key}'"):
        info = run.info
        if info.run_id == run_id:
            continue
        if info.status == "FINISHED":
            return False
        if info.status == "RUNNING":
            if all(run.data.tags.get(k) == v for k, v in me.items()):
                mlflow_client.set_terminated(info.run_id, "KILLED")
                mlflow_client.delete_run(info.run_id)
                continue
            if is_dead(run):
                mlflow_client.set_terminated(info.run_id, "KILLED")
                continue
            if (info.start_time, info.run_id) < mine:
                return False
    return True


DATASET_ATTEMPTS = 3
#: How PostgreSQL, MySQL and sqlite say that an insert lost a race on a key.
DUPLICATE_KEY = ("UniqueViolation", "duplicate key", "Duplicate entry", "UNIQUE constraint failed")


def log_dataset(mlflow_client, run_id: str, ds) -> None:
    """Log a trial's training data as the run's input dataset (the UI's Dataset column):
    named as the budget names it, with the source's SHA-256 (cut to MLflow's 36 characters,
    the whole is the ``dataset.sha256`` param). A built-in dataset, whose files are verified
    by their SHA-256 where they are read, is named by its name and split sizes instead: hashing
    its arrays again for every trial would buy nothing."""
    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    digest = ds.digest or hashlib.sha256(repr(
        (ds.name, ds.x_train.shape, ds.x_val.shape, ds.x_test.shape)).encode()).hexdigest()
    dataset = mlflow.data.from_numpy(ds.x_train, targets=ds.y_train, name=ds.name,
                                     digest=digest[:32])
    inputs = [DatasetInput(dataset._to_mlflow_entity(),
                           tags=[InputTag(MLFLOW_DATASET_CONTEXT, "train")])]
    for attempt in range(DATASET_ATTEMPTS):
        try:
            mlflow_client.log_inputs(run_id, datasets=inputs)
            return
        except Exception as exc:  # noqa: BLE001  (MlflowException, RestException: by text)
            # Two trials logging a dataset the store does not have yet, at once: both insert
            # it and one loses on the key (seen with two kernels on PostgreSQL). The dataset
            # is there now: logging again only links it to the run.
            if attempt + 1 == DATASET_ATTEMPTS or not any(
                    text in str(exc) for text in DUPLICATE_KEY):
                raise
