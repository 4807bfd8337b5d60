"""The MLflow store: paths, runs, heartbeats, claims, the metric sink, raw SQL,
and the names of every tag, metric and param (:mod:`~lrstudy.tracking.store.schema`).
"""
