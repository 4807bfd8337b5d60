"""All raw SQL against MLflow's tables: the bulk writer of per-step series and the bulk reads
of the summary.

MLflow's client goes through its ORM row by row: ``log_batch`` builds an object per point
and keeps the latest value of each key in Python, and ``get_metric_history`` is one call per
run and key; logging every step that way would cost more than the training steps themselves.
For a SQL store this module reads and writes the same tables in a few statements instead.
Every statement is built with SQLAlchemy Core from MLflow's own table definitions
(:mod:`mlflow.store.tracking.dbmodels.models`), so a renamed table or column fails loudly
rather than writing rows MLflow does not read.

Before its first statement against a store, a process checks the store's schema revision
(Alembic's ``alembic_version``) against :data:`TESTED_REVISIONS` and refuses any other with a
:class:`lrstudy.tracking.store.StoreError`: the rows written here must stay the rows MLflow writes.

Reads of a local sqlite store open the file read-only, so a missing or mistyped store is
never created. MLflow and SQLAlchemy are imported on first use.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sqlite3
from types import SimpleNamespace
from urllib.parse import quote

from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Tag
from lrstudy.tracking.store import StoreError

# The schema revisions whose tables this module was tested against: the one MLflow 3.17.2
# creates. Another MLflow may rename or reshape the tables; upgrade by re-running
# tests/test_sqlstore.py against the new schema and adding its revision here.
TESTED_REVISIONS = ("dc11669786a5",)
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
CHUNK = 500  # run ids per IN (...) list: well below every database's bound-parameter limit
WRITE_TIMEOUT_S = 60  # sqlite busy timeout: other kernels of a study write the same file

_checked: set[str] = set()  # stores whose revision this process found good


def is_sql(uri: str) -> bool:
    """Whether ``uri`` names a database MLflow stores runs in directly (not a server)."""
    return uri.split(":", 1)[0].split("+", 1)[0] in SQL_SCHEMES


@functools.cache
def _tables() -> SimpleNamespace:
    from mlflow.store.tracking.dbmodels import models

    return SimpleNamespace(
        experiments=models.SqlExperiment.__table__, runs=models.SqlRun.__table__,
        tags=models.SqlTag.__table__, params=models.SqlParam.__table__,
        metrics=models.SqlMetric.__table__, latest_metrics=models.SqlLatestMetric.__table__,
    )


@functools.lru_cache(maxsize=64)
def _engine(uri: str, write: bool):
    """An engine without a pool (each use opens and closes its connection), kept per store."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    path = tracking.sqlite_path(uri)
    if path is None:
        return sa.create_engine(uri, poolclass=NullPool)
    if write:
        def creator():
            return sqlite3.connect(path, timeout=WRITE_TIMEOUT_S)
    else:
        read_only = f"file:{quote(str(path))}?mode=ro"

        def creator():
            return sqlite3.connect(read_only, uri=True)
    return sa.create_engine("sqlite://", creator=creator, poolclass=NullPool)


def check_revision(conn, uri: str) -> None:
    """Refuse a store whose schema revision is not one of :data:`TESTED_REVISIONS`."""
    if uri in _checked:
        return
    from alembic.runtime.migration import MigrationContext

    heads = MigrationContext.configure(conn).get_current_heads()
    if len(heads) != 1 or heads[0] not in TESTED_REVISIONS:
        found = ", ".join(heads) or "none"
        raise StoreError(
            f"tracking store {uri} has MLflow schema revision {found}, expected "
            f"{' or '.join(TESTED_REVISIONS)}: lrstudy reads and writes MLflow's tables "
            "directly and only at the schema revision it was tested against")
    _checked.add(uri)


@contextlib.contextmanager
def connect(uri: str, write: bool = False):
    """A connection to the store at ``uri`` whose revision was checked; with ``write``, in
    a transaction that commits on exit."""
    engine = _engine(uri, write)
    with (engine.begin() if write else engine.connect()) as conn:
        check_revision(conn, uri)
        yield conn


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---- reads -------------------------------------------------------------------------------------

def experiments(uri: str, name: str) -> list[tuple[str, str]]:
    """``(experiment_id, lifecycle_stage)`` of every experiment named ``name`` (several where
    MLflow workspaces share a store)."""
    import sqlalchemy as sa

    exps = _tables().experiments
    query = sa.select(exps.c.experiment_id, exps.c.lifecycle_stage).where(exps.c.name == name)
    with connect(uri) as conn:
        return [(str(exp_id), stage) for exp_id, stage in conn.execute(query)]


def finished_runs(uri: str, exp_id: str, kind: str) -> list[tuple[str, dict, dict, dict]]:
    """``(run_id, tags, params, metrics)`` of the active FINISHED runs tagged
    ``lrstudy.kind = kind`` in experiment ``exp_id``, as ``MlflowClient.search_runs`` gives
    them: ``metrics`` are the latest values (``latest_metrics``), NaN where MLflow stored NaN.
    """
    import sqlalchemy as sa

    t = _tables()
    runs, tags = t.runs, t.tags
    find = (sa.select(runs.c.run_uuid)
            .join(tags, tags.c.run_uuid == runs.c.run_uuid)
            .where(runs.c.experiment_id == int(exp_id), runs.c.status == "FINISHED",
                   runs.c.lifecycle_stage == "active", tags.c.key == Tag.KIND,
                   tags.c.value == kind))
    ids = sa.bindparam("ids", expanding=True)
    parts = [sa.select(table.c.run_uuid, table.c.key, table.c.value, *extra)
             .where(table.c.run_uuid.in_(ids))
             for table, extra in ((tags, ()), (t.params, ()),
                                  (t.latest_metrics, (t.latest_metrics.c.is_nan,)))]
    with connect(uri) as conn:
        run_ids = [row[0] for row in conn.execute(find)]
        data = {run_id: ({}, {}, {}) for run_id in run_ids}
        for chunk in _chunks(run_ids):
            for slot, query in enumerate(parts):
                for row in conn.execute(query, {"ids": chunk}):
                    value = row[2]
                    if slot == 2:
                        value = math.nan if row[3] else float(value)
                    data[row[0]][slot][row[1]] = value
    return [(run_id, *found) for run_id, found in data.items()]


def finished_trials(uri: str, exp_id: str) -> dict[str, bool]:
    """The run keys of the active FINISHED trial runs of experiment ``exp_id``, each with
    whether one such run diverged: two queries on the tags, where ``MlflowClient.search_runs``
    loads every run whole (what a runner following a study's progress every 2 s can't pay)."""
    import sqlalchemy as sa

    t = _tables()
    runs, tags = t.runs, t.tags
    kind = tags.alias("kind")
    find = (sa.select(tags.c.run_uuid, tags.c.key, tags.c.value)
            .join(runs, runs.c.run_uuid == tags.c.run_uuid)
            .join(kind, kind.c.run_uuid == runs.c.run_uuid)
            .where(runs.c.experiment_id == int(exp_id), runs.c.status == "FINISHED",
                   runs.c.lifecycle_stage == "active", kind.c.key == Tag.KIND,
                   kind.c.value == "trial", tags.c.key.in_([Tag.RUN_KEY, Tag.DIVERGED])))
    found: dict[str, dict] = {}
    with connect(uri) as conn:
        for run_id, key, value in conn.execute(find):
            found.setdefault(run_id, {})[key] = value
    keys: dict[str, bool] = {}
    for run_tags in found.values():
        if Tag.RUN_KEY in run_tags:
            key = run_tags[Tag.RUN_KEY]
            keys[key] = keys.get(key, False) or run_tags.get(Tag.DIVERGED) == "true"
    return keys


def histories(uri: str, run_ids: list[str], keys: list[str]) -> list[tuple]:
    """Every logged point of ``keys`` of ``run_ids``: ``(run_id, key, step, value, timestamp,
    is_nan)`` rows, in no particular order, one query per :data:`CHUNK` runs."""
    import sqlalchemy as sa

    metrics = _tables().metrics
    query = (sa.select(metrics.c.run_uuid, metrics.c.key, metrics.c.step, metrics.c.value,
                       metrics.c.timestamp, metrics.c.is_nan)
             .where(metrics.c.run_uuid.in_(sa.bindparam("run_ids", expanding=True)),
                    metrics.c.key.in_(sa.bindparam("keys", expanding=True))))
    rows = []
    with connect(uri) as conn:
        for chunk in _chunks(run_ids):
            rows.extend(conn.execute(query, {"run_ids": chunk, "keys": keys}).all())
    return rows


# ---- the bulk writer ---------------------------------------------------------------------------

@functools.cache
def _series_statements() -> tuple[str, str]:
    """The sqlite statements of :func:`series_writer`, compiled once: the points into
    ``metrics`` (an identical point logged twice is kept once, as MLflow does), and the
    latest point per key into ``latest_metrics``, replacing the stored one only when the new
    one is more recent by (step, timestamp, value), MLflow's order. Parameters, in this order:
    key, value, timestamp, step, is_nan, run_uuid."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import sqlite

    t = _tables()
    columns = ["key", "value", "timestamp", "step", "is_nan", "run_uuid"]
    points = sqlite.insert(t.metrics).on_conflict_do_nothing()
    latest = t.latest_metrics
    upsert = sqlite.insert(latest)
    upsert = upsert.on_conflict_do_update(
        index_elements=list(latest.primary_key.columns),
        set_={name: upsert.excluded[name] for name in ("value", "timestamp", "step", "is_nan")},
        where=sa.tuple_(upsert.excluded.step, upsert.excluded.timestamp, upsert.excluded.value)
        > sa.tuple_(latest.c.step, latest.c.timestamp, latest.c.value))
    compiled = []
    for statement in (points, upsert):
        done = statement.compile(dialect=sqlite.dialect(), column_keys=columns)
        if list(done.positiontup) != columns:  # the parameter order the rows below use
            raise StoreError(f"unexpected parameters of {statement.table.name}: "
                             f"{done.positiontup}")
        compiled.append(str(done))
    return compiled[0], compiled[1]


def series_writer(uri: str | None = None):
    """A fast writer of metric points (the long per-step series and the rest) into a local
    sqlite store, else None.

    ``write(run_id, points)`` with ``points`` a list of ``(key, value, timestamp_ms, step)``,
    all finite, stores them in one transaction: the same rows in ``metrics`` and
    ``latest_metrics`` as ``MlflowClient.log_batch`` would (``is_nan`` false), in two
    ``executemany`` calls instead of ORM objects per point. Other stores get None: the caller
    then sends the points with ``log_batch`` (see :class:`lrstudy.tracking.metric_sink.MetricSink`).
    """
    if tracking.sqlite_path(uri) is None:
        return None
    uri = tracking.tracking_uri(uri)

    def write(run_id: str, points: list[tuple[str, float, int, int]]) -> None:
        if not points:
            return
        latest: dict[str, tuple] = {}  # per key, the most recent point by MLflow's order
        for point in points:
            key, value, ts, step = point
            best = latest.get(key)
            if (best is None or step > best[3]
                    or (step == best[3] and (ts, value) > (best[2], best[1]))):
                latest[key] = point
        insert_points, upsert_latest = _series_statements()
        with connect(uri, write=True) as conn:
            cursor = conn.connection.cursor()  # the driver's own: no per-row work in SQLAlchemy
            cursor.executemany(insert_points,
                               [(k, v, ts, st, 0, run_id) for k, v, ts, st in points])
            cursor.executemany(upsert_latest,
                               [(k, v, ts, st, 0, run_id) for k, v, ts, st in latest.values()])

    return write
