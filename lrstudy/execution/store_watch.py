"""The runner's calls to the tracking store while it follows a study, retried when the
store goes away, and the error it ends with when the store does not come back."""

from __future__ import annotations

import os
import sys
import threading
import time

from lrstudy.errors import one_line
from lrstudy.tracking import store as tracking

STORE_RETRY_ENV = "LRSTUDY_STORE_RETRY_S"
STORE_RETRY_S = 120.0


class StoreLost(RuntimeError):
    """The tracking store stopped answering mid-study and did not come back in time."""


class StoreWatch:
    """The runner's calls to the store while it follows a study, retried when it goes away.

    MLflow's client retries a lost server quietly for minutes; here a server's ``/health`` is
    checked before each call and every 2 s while one runs, so that the first failure prints
    one line naming the store at once, the store coming back prints another, and after
    ``patience`` seconds without an answer :class:`StoreLost` is raised.
    """

    def __init__(self, uri: str, patience: float | None = None):
        self.uri = uri
        self.http = uri.startswith(("http://", "https://"))
        self.patience = float(os.environ.get(STORE_RETRY_ENV, STORE_RETRY_S)
                              if patience is None else patience)
        self.since: float | None = None

    def call(self, fn, *args):
        delay = 1.0
        while True:
            try:
                value = self._watched(fn, args)
            except StoreLost:
                raise
            except Exception as exc:
                self._down(one_line(exc, limit=300))
                time.sleep(min(delay, self.patience))
                delay = min(2 * delay, 15.0)
                continue
            if self.since is not None:
                print(f"lrstudy: tracking store {self.uri} is back", file=sys.stderr)
                self.since = None
            return value

    def _down(self, reason: str) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
            print(f"\nlrstudy: tracking store {self.uri} is not answering ({reason}); "
                  f"retrying for up to {self.patience:.0f} s", file=sys.stderr)
        elif now - self.since >= self.patience:
            raise StoreLost(f"tracking store {self.uri} has not answered for "
                            f"{self.patience:.0f} s ({reason}); what was recorded is kept: "
                            "rerun the same command to resume")

    def _health(self) -> None:
        reason = tracking.server_unreachable(self.uri, timeout=2.0)
        if reason:
            raise ConnectionError(reason)

    def _watched(self, fn, args):
        if not self.http:
            return fn(*args)
        self._health()
        box: dict = {}

        def target():
            try:
                box["value"] = fn(*args)
            except Exception as exc:
                box["error"] = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(2.0)
            if thread.is_alive():
                reason = tracking.server_unreachable(self.uri, timeout=2.0)
                if reason:
                    self._down(reason)  # raises StoreLost once patience is spent
        if "error" in box:
            raise box["error"]
        return box["value"]


class Paced:
    """``fn`` called at most once per ``factor`` times its own last duration: the progress
    poll, which through a tracking server searches every trial of the study (seconds once it
    has thousands), so that following a study never keeps the server busy more than
    1/``factor`` of the time. A poll that is due runs; one that is not returns at once."""

    def __init__(self, fn, factor: float = 10.0, clock=time.monotonic):
        self.fn, self.factor, self.clock = fn, factor, clock
        self.started, self.took = float("-inf"), 0.0  # the first poll is due at once

    def __call__(self) -> None:
        start = self.clock()
        if start - self.started < self.factor * self.took:
            return
        self.fn()
        self.started, self.took = start, self.clock() - start
