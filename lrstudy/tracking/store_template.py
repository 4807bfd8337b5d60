"""New sqlite stores, copied from an empty store MLflow made once.

MLflow creates a sqlite store by running its whole migration history: a few seconds for
every new store (a study on a fresh store, each test's store). The template is such a store,
made by MLflow itself on first need and kept in lrstudy's cache (:func:`lrstudy.cache.root`)
per MLflow version, without its Default experiment (experiment 0): MLflow creates that one
when a client first opens a copy, with the artifact location and time it gives any new store.
A template is MLflow's own schema at its own revision; what :mod:`lrstudy.tracking.sqlstore`
writes is still checked against the revisions it was tested on, per store.

The one statement here (deleting experiment 0 from the template) is built, as
:mod:`lrstudy.tracking.sqlstore`'s are, from MLflow's own table definitions. It lives apart
because :mod:`lrstudy.tracking.store` needs it, and sqlstore needs store.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lrstudy import cache


def new_sqlite_store(db: Path) -> None:
    """Create the sqlite store ``db`` as a copy of the template (made first if missing). The
    caller holds the store's creation lock (:func:`lrstudy.tracking.store.client`)."""
    import mlflow

    template = cache.root() / f"mlflow-{mlflow.__version__}-empty-store.db"
    if not template.exists():
        _make(template)
    partial = db.with_name(f".{db.name}.{os.getpid()}.new")
    shutil.copyfile(template, partial)
    os.replace(partial, db)  # whole or absent: no reader opens half a copy


def _make(template: Path) -> None:
    """MLflow's own empty store at ``template``, experiment 0 deleted."""
    import sqlalchemy as sa
    from mlflow import MlflowClient
    from mlflow.store.tracking.dbmodels.models import SqlExperiment

    template.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=template.parent) as tmp:
        made = Path(tmp) / "store.db"
        uri = f"sqlite:///{made}"
        MlflowClient(tracking_uri=uri).search_experiments()  # creates and migrates it
        engine = sa.create_engine(uri, poolclass=sa.pool.NullPool)
        experiments = SqlExperiment.__table__
        with engine.begin() as conn:
            conn.execute(sa.delete(experiments).where(experiments.c.experiment_id == 0))
        engine.dispose()
        os.replace(made, template)  # two processes making it at once: either copy is whole
