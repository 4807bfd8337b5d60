"""A run's life in the store: opened, kept alive, ended; and told dead from alive.

- :func:`open_run` opens a run as a context manager that ends it FINISHED, FAILED or KILLED
  (KILLED whenever a stop signal arrived, see :mod:`lrstudy.interrupts`) and keeps a heartbeat
  tag fresh while it is RUNNING (:class:`Heartbeat`).
- A RUNNING run is dead when its heartbeat is older than the grace period, on any host, or
  when its process is gone on this host (:func:`is_dead`);
  :func:`lrstudy.tracking.store.reap` marks such runs KILLED.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time

from lrstudy import interrupts
from lrstudy.errors import one_line
from lrstudy.tracking.schema import Tag

HEARTBEAT = Tag.HEARTBEAT
HEARTBEAT_INTERVAL_S = 30.0
HEARTBEAT_GRACE_S = 120.0
HEARTBEAT_INTERVAL_ENV = "LRSTUDY_HEARTBEAT_INTERVAL_S"
HEARTBEAT_GRACE_ENV = "LRSTUDY_HEARTBEAT_GRACE_S"
log = logging.getLogger(__name__)


def heartbeat_interval() -> float:
    return float(os.environ.get(HEARTBEAT_INTERVAL_ENV, HEARTBEAT_INTERVAL_S))


def heartbeat_grace() -> float:
    return float(os.environ.get(HEARTBEAT_GRACE_ENV, HEARTBEAT_GRACE_S))


class Heartbeat:
    """A daemon thread that refreshes a run's heartbeat tag every ``interval`` seconds.

    A failed refresh (a server that went away for a moment) is retried at the next beat; the
    grace period is several beats long, so a short outage does not make the run look dead.
    """

    def __init__(self, mlflow_client, run_id: str, interval: float | None = None):
        self.client, self.run_id = mlflow_client, run_id
        self.interval = heartbeat_interval() if interval is None else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id[:8]}",
                                        daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.client.set_tag(self.run_id, HEARTBEAT, f"{time.time():.3f}")
            except Exception:  # the next beat tries again
                pass

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


class Run:
    """An open run (see :func:`open_run`): its id, and the status it will end with."""

    def __init__(self, mlflow_client, run_id: str):
        self.client, self.id = mlflow_client, run_id
        self.status: str | None = None  # set to end with another status than the default
        self.signals_before = interrupts.received()
        self.discarded = False

    def end_as(self, status: str) -> None:
        self.status = status

    def discard(self) -> None:
        """Delete the run on exit instead of ending it (a claim another process won)."""
        self.discarded = True


def end_status(exc: BaseException | None, signals_before: int) -> str:
    """FINISHED without an exception; KILLED for a Ctrl-C, a SIGTERM or any exception that
    arrived together with a stop signal; FAILED otherwise."""
    if exc is None:
        return "FINISHED"
    if isinstance(exc, KeyboardInterrupt) or interrupts.received() != signals_before:
        return "KILLED"
    return "FAILED"


@contextlib.contextmanager
def open_run(mlflow_client, exp_id: str, tags: dict, *, heartbeat: bool = True):
    """Create a run with ``tags`` and yield a :class:`Run`; end it on exit.

    The run ends FINISHED, FAILED or KILLED as :func:`end_status` says, or as the body chose
    with :meth:`Run.end_as`. Its heartbeat stays fresh while the body runs.
    """
    created = mlflow_client.create_run(exp_id, tags=tags, run_name=tags.get("mlflow.runName"))
    run = Run(mlflow_client, created.info.run_id)
    beat = Heartbeat(mlflow_client, run.id) if heartbeat else contextlib.nullcontext()
    try:
        with beat:
            yield run
    except BaseException as exc:
        close(run, run.status or end_status(exc, run.signals_before), quiet=True)
        raise
    close(run, run.status or end_status(None, run.signals_before), quiet=False)


def close(run: Run, status: str, *, quiet: bool) -> None:
    """End ``run`` with ``status`` (or delete it, when discarded). A store that fails here
    (gone, full) leaves the run RUNNING with a heartbeat that stops: :func:`reap` marks it
    KILLED later, so nothing is lost. While another error is being raised (``quiet``) this
    one is only logged; after a body that succeeded it is raised, since the run's result
    never reached the store and whoever ran it must not count it done."""
    try:
        if run.discarded:
            run.client.delete_run(run.id)
        else:
            run.client.set_terminated(run.id, status)
    except Exception as exc:
        if not quiet:
            raise
        log.warning("could not end run %s as %s: %s", run.id, status, one_line(exc, limit=300))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs. A zombie does not: a kernel killed
    by a runner that then exits stays one until PID 1 reaps it (a second or two here), and a
    run resumed meanwhile would have taken its trials for ones running elsewhere."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def heartbeat_age(run, now: float | None = None) -> float:
    """Seconds since the run's last heartbeat (its start, for runs that have none)."""
    now = time.time() if now is None else now
    try:
        last = float(run.data.tags[HEARTBEAT])
    except (KeyError, ValueError):
        last = (run.info.start_time or 0) / 1000.0
    return now - last


def is_dead(run, now: float | None = None) -> bool:
    """A RUNNING run is dead when its heartbeat is older than the grace period (any host),
    or when it belongs to this host and its process is gone."""
    if run.info.status != "RUNNING":
        return False
    if heartbeat_age(run, now) > heartbeat_grace():
        return True
    tags = run.data.tags
    if tags.get(Tag.HOST) != socket.gethostname():
        return False
    try:
        return not pid_alive(int(tags.get(Tag.PID, "0")))
    except ValueError:
        return False
