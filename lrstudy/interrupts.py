"""Signals: SIGTERM and Ctrl-C stop work the same way, and a run they stop ends KILLED.

One home for signal handling. :func:`stop_on_signals` turns SIGTERM (and SIGINT) into a
``KeyboardInterrupt`` in the main thread and counts every signal it sees. Anything that must
end KILLED rather than FAILED when a signal arrives (a tracked run: see
:func:`lrstudy.tracking.run_life.open_run`) compares :func:`received` before and after: a signal can
land anywhere, inside an import, while TensorFlow traces a function, in C++ code that turns
the ``KeyboardInterrupt`` into another exception type; the count says what really happened.

>>> before = received()
>>> with stop_on_signals():
...     pass
>>> received() == before
True
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

_received = 0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def received() -> int:
    """How many stop signals this process has seen under :func:`stop_on_signals`."""
    return _received


def _note(signum) -> None:
    global _received
    _received += 1


def _handler(signum, frame):
    _note(signum)
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def stop_on_signals(signals=STOP_SIGNALS):
    """Within the block, each of ``signals`` is counted and raises ``KeyboardInterrupt``.

    Outside the main thread (where Python allows no handlers) the block runs unchanged.
    The previous handlers come back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    try:
        for sig in signals:
            previous[sig] = signal.signal(sig, _handler)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def raise_at(point: str) -> None:
    """Fault injection for the tests, at a named moment of a trial's life.

    When the environment variable ``LRSTUDY_SIGNAL_AT`` is ``point``, SIGTERM is sent to
    this process; when it is ``point@parent``, to the parent process (the runner of a
    kernel), and this process then waits up to 30 s for the interrupt the runner sends back,
    so that it lands inside ``point``. Costs one dictionary lookup when the variable is unset.
    """
    target = os.environ.get("LRSTUDY_SIGNAL_AT")
    if target == point:
        signal.raise_signal(signal.SIGTERM)
    elif target == f"{point}@parent":
        os.kill(os.getppid(), signal.SIGTERM)
        time.sleep(30)
