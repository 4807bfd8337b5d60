"""Where a trial's metric points go: the store, epoch by epoch, from a thread of its own.
"""

from __future__ import annotations

import math
import time

import numpy as np  # noqa: E402

MLFLOW_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call


class MetricSink:
    """Buffers metric points and ships them to MLflow in chunks.

    What :meth:`send` ships (each epoch's end sends: the MLflow UI shows a trial's curves,
    per-step series included, while it trains) is written in a thread of the sink's own, in
    order; :meth:`flush` waits. Into a local sqlite store every point goes through
    ``series_writer`` (:func:`lrstudy.tracking.sqlstore.series_writer`: bulk inserts, where
    ``log_batch`` builds an ORM object per point: 6 ms of CPU for an epoch's ten metrics),
    into any other store through ``log_batch``; not MLflow's asynchronous one, whose queue
    polls once a second and makes ending a run wait about 1 s (mlflow/mlflow#12324). With
    ``client=None`` it only keeps the points (``.points``), which the tests and figures use.
    """

    def __init__(self, client=None, run_id: str | None = None, keep: bool = True,
                 series_writer=None):
        self.client, self.run_id, self.keep = client, run_id, keep
        self.series_writer = series_writer
        self.points: dict[str, list[tuple[int, float]]] = {}
        self._pending: list = []
        self._series: list[tuple[str, float, int, int]] = []
        self._writes: list = []  # the futures of the writes sent
        self._writer = None  # a one-thread executor, made by the first send

    def add(self, key: str, value: float, step: int) -> None:
        value = float(value)
        if not math.isfinite(value):
            return  # never logged: a diverged run's series stop at the last finite point
        if self.keep:
            self.points.setdefault(key, []).append((int(step), value))
        if self.series_writer is not None:
            self._series.append((key, value, int(time.time() * 1000), int(step)))
        elif self.client is not None:
            from mlflow.entities import Metric

            self._pending.append(Metric(key, value, int(time.time() * 1000), int(step)))
            if len(self._pending) >= MLFLOW_BATCH:
                self.send()

    def add_series(self, key: str, steps, values) -> None:
        """``add`` for each point, in one pass where no MLflow batch is involved (the points
        a series writer stores, or only kept): a few hundred points each drain."""
        if self.series_writer is None and self.client is not None:
            for step, value in zip(steps, values):
                self.add(key, value, step)
            return
        steps, values = np.asarray(steps, np.int64), np.asarray(values, np.float64)
        finite = np.isfinite(values)  # a non-finite value is never logged (see add)
        pairs = list(zip(steps[finite].tolist(), values[finite].tolist()))
        if self.keep:
            self.points.setdefault(key, []).extend(pairs)
        if self.series_writer is not None:
            now = int(time.time() * 1000)
            self._series.extend((key, value, now, step) for step, value in pairs)

    def send(self) -> None:
        """Ship what is buffered without waiting (the sink's thread writes it, in order)."""
        if not (self._pending or self._series):  # points pend only with a client
            return
        if self._writer is None:
            from concurrent.futures import ThreadPoolExecutor

            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="MetricSink")
        if self._series:
            self._writes.append(self._writer.submit(self.series_writer, self.run_id,
                                                    self._series))
            self._series = []
        for i in range(0, len(self._pending), MLFLOW_BATCH):
            self._writes.append(self._writer.submit(
                self.client.log_batch, self.run_id, metrics=self._pending[i:i + MLFLOW_BATCH],
                synchronous=True))
        self._pending = []

    def flush(self) -> None:
        """Send the rest and wait until MLflow has stored everything."""
        self.send()
        writes, self._writes = self._writes, []
        if self._writer is not None:
            self._writer.shutdown(wait=True)  # returns as soon as the last write is done
            self._writer = None
        for write in writes:
            write.result()  # a write's error is raised here

    def last(self, key: str, default=None):
        series = self.points.get(key)
        return series[-1][1] if series else default
