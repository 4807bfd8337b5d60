"""Raw SQL against MLflow's tables (:mod:`lrstudy.tracking.sqlstore`): the bulk writer leaves exactly
the rows ``MlflowClient.log_batch`` leaves, and a store at another schema revision is refused
with one line before anything is read or written."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric

from lrstudy import report
from lrstudy.tracking import sqlstore
from lrstudy.tracking import store as tracking
from lrstudy.tracking.store import StoreError

# Batches as a trial's flushes send them, with the cases MLflow decides in its own way: an
# identical point logged twice (kept once), one step logged twice at different times and
# values (the later time is the latest), a later batch that goes back in steps (the latest
# stays), and one that goes forward (the latest moves).
BATCHES = [
    [("step_loss", 2.0 - 0.01 * s, 1_000 + s, s) for s in range(300)]
    + [("step_learning_rate", 1e-3 * (1 + s % 7), 1_000 + s, s) for s in range(300)]
    + [("step_loss", 2.0, 1_000, 0), ("step_loss", 1.5, 1_100, 100),
       ("step_loss", 0.4, 5_000, 299), ("step_loss", 0.3, 4_000, 299)],
    [("step_loss", 9.0, 9_000, 10), ("step_learning_rate", 5e-4, 9_000, 10)],
    [("step_loss", 0.25, 9_500, 300), ("step_lr_p50", 2e-3, 9_500, 300)],
]


def _rows(uri: str, table, run_id: str) -> list[tuple]:
    """The rows of ``run_id`` in ``table``, without the run id, sorted."""
    columns = [c for c in table.columns if c.name != "run_uuid"]
    engine = sa.create_engine(uri)
    try:
        with engine.connect() as conn:
            query = sa.select(*columns).where(table.c.run_uuid == run_id)
            return sorted(tuple(row) for row in conn.execute(query))
    finally:
        engine.dispose()


@pytest.fixture
def mlflow_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    return uri, client, tracking.experiment_id("sqlstore", uri, client)


def test_bulk_writer_leaves_the_rows_log_batch_leaves(mlflow_store):
    uri, client, exp_id = mlflow_store
    bulk, batch = (client.create_run(exp_id).info.run_id for _ in range(2))
    write = sqlstore.series_writer(uri)
    for number, points in enumerate(BATCHES):
        write(bulk, points)
        client.log_batch(batch, metrics=[Metric(k, v, ts, s) for k, v, ts, s in points])
        for table in (SqlMetric.__table__, SqlLatestMetric.__table__):
            got, expected = _rows(uri, table, bulk), _rows(uri, table, batch)
            assert got == expected, f"{table.name} after batch {number}"
    latest = dict((row[0], row[1:4]) for row in _rows(uri, SqlLatestMetric.__table__, bulk))
    assert latest["step_loss"] == (0.25, 9_500, 300)
    assert latest["step_learning_rate"] == (pytest.approx(6e-3), 1_299, 299)
    assert len(_rows(uri, SqlMetric.__table__, bulk)) == 600 + 3 + 2 + 2  # the duplicate once
    assert client.get_run(bulk).data.metrics == client.get_run(batch).data.metrics


def test_writer_is_only_for_local_sqlite_stores():
    assert sqlstore.series_writer("http://127.0.0.1:5000") is None
    assert sqlstore.series_writer("postgresql://u@localhost/db") is None


def test_store_at_another_schema_revision_is_refused_in_one_line(mlflow_store):
    uri, client, exp_id = mlflow_store
    run_id = client.create_run(exp_id).info.run_id
    con = sqlite3.connect(tracking.sqlite_path(uri))
    with con:
        con.execute("UPDATE alembic_version SET version_num = '0123456789ab'")
    con.close()
    write = sqlstore.series_writer(uri)
    for attempt in (lambda: write(run_id, BATCHES[1]),
                    lambda: report.load_trials("sqlstore", uri, method="sql"),
                    lambda: report.load_histories([run_id], ["step_loss"], uri, method="sql")):
        with pytest.raises(StoreError) as info:
            attempt()
        message = str(info.value)
        assert "\n" not in message
        assert uri in message and "0123456789ab" in message
        assert sqlstore.TESTED_REVISIONS[0] in message
    assert _rows(uri, SqlMetric.__table__, run_id) == []


def test_finished_trials_counts_as_the_runners_search_of_the_store(store):
    """The runner's progress (:func:`lrstudy.execution.runner.count_trials`) read in two
    queries gives what MLflow's search gives: FINISHED trials by key, diverged ones, not
    RUNNING, KILLED or deleted runs, not other kinds or experiments."""
    from lrstudy.execution import runner
    from lrstudy.tracking.schema import Tag

    client = tracking.client(store)
    exp_id = tracking.experiment_id("study", store, client)
    other = tracking.experiment_id("other", store, client)
    made = [  # (experiment, kind, key, status, diverged, deleted)
        (exp_id, "trial", "a", "FINISHED", False, False),
        (exp_id, "trial", "a", "KILLED", False, False),
        (exp_id, "trial", "b", "FINISHED", True, False),
        (exp_id, "trial", "c", "RUNNING", False, False),
        (exp_id, "trial", "d", "FINISHED", False, True),
        (exp_id, "scenario", "e", "FINISHED", False, False),
        (other, "trial", "f", "FINISHED", False, False),
        (exp_id, "trial", "g", "FINISHED", False, False),
    ]
    for exp, kind, key, status, diverged, deleted in made:
        tags = {Tag.KIND: kind, Tag.RUN_KEY: key, **({Tag.DIVERGED: "true"} if diverged else {})}
        run = client.create_run(exp, tags=tags)
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
        if deleted:
            client.delete_run(run.info.run_id)
    assert sqlstore.finished_trials(store, exp_id) == {"a": False, "b": True, "g": False}
    keys = {"a", "b", "c", "d", "e", "f"}
    assert runner.count_trials(client, exp_id, keys, store) == (2, 1)
    assert runner.count_trials(client, exp_id, keys, store) == runner.count_trials(
        client, exp_id, keys)  # MLflow's search, as against a server
