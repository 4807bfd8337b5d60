"""Executing our notebooks with papermill: private kernels whose output goes to a log file.

An execution gets its own kernel, or, inside :func:`kept_kernel`, the kernel its thread kept
from its previous execution (inside :func:`process_kernel`, the one its process kept: a Ray
worker's), wiped to a fresh start (see :class:`KeptKernel`). Kernels talk to
us over IPC sockets in a private temporary directory (mode 0700), not over unencrypted
loopback TCP ports that any local user could reach. The kernel process's own stdout and stderr (file descriptors 1 and 2, where C++
libraries write: TensorFlow's start-up notices, XLA's, a crash's last words) go to a log file
beside the executed notebook instead of the terminal, whatever the CPU makes TensorFlow say,
so they never break into a progress bar. What the notebook's cells print is in the executed
notebook as usual, and so are the warnings of Python's logging, in every execution of a kept
kernel: TensorFlow's logger ``tensorflow`` (to ``sys.stdout`` in a kernel; its retracing
warning among them: ``TF_CPP_MIN_LOG_LEVEL`` silences C++ logging only) and lrstudy's
(:mod:`lrstudy.training.traces`, to ``sys.stderr``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Unicode


def notebooks_dir() -> Path:
    """The notebooks: an installed package's own copy (package data, ``lrstudy/notebooks``),
    else the checkout's ``notebooks/`` (or ``$LRSTUDY_HOME``'s)."""
    from lrstudy.tracking import store as tracking

    installed = Path(__file__).resolve().parents[1] / "notebooks"  # lrstudy/notebooks
    return installed if installed.is_dir() else tracking.project_root() / "notebooks"


def log_path(output: Path | str) -> Path:
    """Where the kernel of the execution writing ``output`` logs: ``<output>.log``."""
    output = Path(output)
    return output.with_name(output.name + ".log")


class LoggedKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel with stdout and stderr on :attr:`log_file`."""

    log_file = Unicode("", help="file receiving the kernel's stdout and stderr").tag(config=True)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if not self.log_file:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        with open(self.log_file, "ab") as log:  # the child keeps its own copy of the fd
            kw.setdefault("stdout", log)
            kw.setdefault("stderr", log)
            return await super()._async_launch_kernel(kernel_cmd, **kw)


def execute(notebook: Path | str, output: Path | str, parameters: dict,
            cwd: Path | str | None = None, log: Path | str | None = None):
    """papermill-execute ``notebook`` into ``output`` on a private python3 kernel: the one
    this thread keeps (:func:`kept_kernel`), else one of its own.

    The kernel's stdout and stderr are appended to ``log`` (default :func:`log_path`).
    Raises what papermill raises (``PapermillExecutionError`` when a cell raised).
    """
    import papermill
    from traitlets.config import Config

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    log = Path(log) if log is not None else log_path(output)
    kept = getattr(_kept, "kernel", None)
    if kept is not None:
        return kept.execute(notebook, output, parameters, cwd, log)
    with tempfile.TemporaryDirectory(prefix="lrstudy-kernel-") as sockets:
        # "immediate": the kernel is stopped once the last cell is done, not asked to exit:
        # a kernel that has run TensorFlow is slow to exit, and its atexit hooks have nothing
        # to do here (the cells end their runs and wait for their writes)
        config = Config(
            NotebookClient={"kernel_manager_class": LoggedKernelManager,
                            "shutdown_kernel": "immediate"},
            LoggedKernelManager={"transport": "ipc", "ip": os.path.join(sockets, "k"),
                                 "log_file": str(log)})
        return papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters, kernel_name="python3",
            progress_bar=False, cwd=str(cwd or notebooks_dir()), config=config)


# ---- a kernel kept for a thread's executions ---------------------------------------------------

_kept = threading.local()


@contextlib.contextmanager
def kept_kernel(warm: bool = False):
    """Within the block, the executions of this thread share one kernel (:class:`KeptKernel`),
    stopped at the end: a kernel's start and the imports of TensorFlow, Keras and MLflow are
    paid once per thread, not once per execution. ``warm``: the kernel starts now and
    imports what the notebooks import first (:meth:`KeptKernel.warm`), while the thread waits
    for its first execution; else the first execution starts it."""
    _kept.kernel = KeptKernel()
    if warm:
        _kept.kernel.warm()
    try:
        yield
    finally:
        kernel, _kept.kernel = _kept.kernel, None
        kernel.stop()


_process_kernel: KeptKernel | None = None
_process_devices: str | None = None  # the GPUs the process's kernel was started to see


@contextlib.contextmanager
def process_kernel():
    """Within the block, this thread's executions use the one kernel this process keeps
    (:class:`KeptKernel`; started by its first execution, stopped when the process exits): a
    Ray worker runs its tasks one after another, each in a block of its own, so that every
    task but its first finds TensorFlow, Keras and MLflow imported. A task given other GPUs
    than the kernel's (Ray sets ``CUDA_VISIBLE_DEVICES`` per task) gets a new kernel. A kernel
    outliving a worker that is killed stops itself, as a kernel does when its parent process
    is gone."""
    global _process_kernel, _process_devices
    if _process_kernel is None:
        _process_kernel = KeptKernel()
        atexit.register(_process_kernel.stop)
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    if devices != _process_devices:
        _process_kernel.stop()
        _process_devices = devices
    _kept.kernel = _process_kernel
    try:
        yield
    finally:
        _kept.kernel = None


FRESH_START = """\
import os, sys
_log = os.open({log!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
if {carry!r}:
    with open({carry!r}, "rb") as _f:
        os.write(_log, _f.read())
os.chdir({cwd!r})
for _stream, _fd in ((sys.stdout, 1), (sys.stderr, 2)):
    _stream.flush()
    os.dup2(_log, getattr(_stream, "_original_stdstream_copy", None) or _fd)
os.close(_log)
if "keras" in sys.modules:
    sys.modules["keras"].backend.clear_session()
if "matplotlib.pyplot" in sys.modules:
    sys.modules["matplotlib.pyplot"].close("all")
get_ipython().reset(new_session=True)
__import__("gc").collect()
"""
"""What a kept kernel runs before each execution but the first of a kernel papermill
started (a warmed kernel runs it before its first too): its process output (file descriptors
1 and 2, or the copies of them ipykernel echoes to when it captures them) to the new
execution's log, headed by what the kernel printed while it warmed (``carry``, that log's
path, once); the execution's working directory; Keras's global state, figures and the user's
namespace cleared, the execution count back at 1. Imported modules stay: that is the point.
Each trial seeds Python, NumPy, TensorFlow and Keras itself
(:func:`lrstudy.determinism.seed_everything`), as the trials of a stack already do one
after another in one process."""

#: What a warmed kernel imports before its first execution: what the notebooks import first
#: (TensorFlow through :func:`lrstudy.tfquiet.import_tensorflow`, as lrstudy imports it).
#: Not :mod:`lrstudy.training.fitting` nor what imports it: importing it is the first moment
#: of a trial's life (``interrupts.raise_at("import")``), which stays inside the execution;
#: it costs little once these are imported.
WARM_MODULES = (
    "numpy", "pandas", "keras", "mlflow", "mlflow.store.tracking.sqlalchemy_store",
    "matplotlib.pyplot", "lrstudy.execution.notebook_params", "lrstudy.spec.study",
    "lrstudy.spec.competition", "lrstudy.spec.resolve", "lrstudy.data.datasets",
    "lrstudy.data.order", "lrstudy.models", "lrstudy.lr.optimizers", "lrstudy.tracking.store",
    "lrstudy.tracking.metric_sink", "lrstudy.tracking.sqlstore",
)

WARM_UP = f"""\
def _warm_up():
    import importlib
    from lrstudy import tfquiet
    tfquiet.import_tensorflow()
    for name in {WARM_MODULES!r}:
        importlib.import_module(name)
_warm_up()
del _warm_up
__import__("gc").freeze()
"""
"""The warm-up's code: imports only (no op runs, so TensorFlow's threads are still the
execution's to set). A module that fails to import here fails again, with its traceback,
in the notebook that needs it. Then the imported modules' objects are frozen out of the
garbage collector's reach (:func:`gc.freeze`): they live as long as the kernel, and each full
collection would otherwise walk all of them (TensorFlow's, Keras's, MLflow's), a third of a
second each, and :data:`FRESH_START` runs three (Keras's ``clear_session``, IPython's reset,
its own). No collection runs before the freeze: the imports leave nothing for one to free
(the automatic collections during them have), and it would walk them all once more."""

#: How long the first execution waits for a warmed kernel's imports before it gives up on
#: that kernel and starts one of its own.
WARM_UP_TIMEOUT_S = 600.0

#: How long an execution waits for a kept kernel to start afresh (:data:`FRESH_START`).
FRESH_START_TIMEOUT_S = 120.0


class KeptKernel:
    """One kernel for a thread's executions (:func:`kept_kernel`), or a process's
    (:func:`process_kernel`). Each execution but the first
    of a kernel papermill started begins with :data:`FRESH_START`. A kernel that failed an
    execution (a cell raised, it was interrupted or died) is stopped, and the next execution
    starts a new one."""

    def __init__(self):
        self.km: LoggedKernelManager | None = None
        self.sockets: str | None = None
        self.carry: Path | None = None  # the warm-up's log, to head the first execution's
        self.warming = None  # (client, message id) of the warm-up's imports, until they end

    def _manager(self, log: Path | None) -> LoggedKernelManager:
        """A manager of a kernel on private sockets, its output to ``log`` (None: to
        :attr:`carry`, a log beside its sockets)."""
        self.sockets = tempfile.mkdtemp(prefix="lrstudy-kernel-")
        if log is None:
            log = self.carry = Path(self.sockets) / "warm-up.log"
        return LoggedKernelManager(kernel_name="python3", transport="ipc",
                                   ip=os.path.join(self.sockets, "k"), log_file=str(log))

    def warm(self) -> None:
        """Start the kernel now, in the notebooks' directory, its output to :attr:`carry`,
        and send it :data:`WARM_UP` without waiting: the first execution finds the imports
        done, or waits for them. A kernel that cannot start here is left to the first
        execution to start."""
        from jupyter_client import BlockingKernelClient
        from jupyter_core.utils import run_sync

        try:
            self.km = self._manager(None)
            run_sync(self.km.start_kernel)(cwd=str(notebooks_dir()))
            kc = BlockingKernelClient()
            kc.load_connection_info(self.km.get_connection_info())
            # the client stays open until the reply: a socket closed at once would drop the
            # request, which waits in it until the kernel is up
            kc.start_channels(hb=False)
            self.warming = (kc, kc.execute(WARM_UP, silent=True, store_history=False))
        except Exception:
            self.stop()

    def _warmed(self, timeout: float = WARM_UP_TIMEOUT_S) -> None:
        """Wait for the warm-up's imports to end (however they ended: a module that failed
        fails again in the notebook); stop a kernel that died or did not answer in time."""
        kc, msg_id = self.warming
        self.warming = None
        try:
            if self._reply(kc, msg_id, timeout) is None:
                self.stop()
        finally:
            kc.stop_channels()

    def _reply(self, kc, msg_id: str, timeout: float) -> dict | None:
        """The kernel's reply on the shell channel to request ``msg_id``; None when the kernel
        died or did not answer within ``timeout`` seconds. Only the shell channel is read: its
        replies queue until read, whereas output published before the client subscribed to it
        would be lost (which is why a client that reads output first waits for the kernel to
        be ready)."""
        import queue

        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = kc.get_shell_msg(timeout=1.0)
            except queue.Empty:
                if not self._alive() or time.monotonic() > deadline:
                    return None
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    def execute(self, notebook, output: Path, parameters: dict, cwd, log: Path):
        import papermill

        from lrstudy.execution import kept_engine

        cwd = str(cwd or notebooks_dir())
        if self.warming is not None:
            self._warmed()
        if self.km is not None and not self._alive():
            self.stop()
        try:
            if self.km is None:  # papermill's client starts it, with the execution's cwd
                self.km = self._manager(log)
            else:
                self._fresh_start(log, cwd)
            return papermill.execute_notebook(
                str(notebook), str(output), parameters=parameters, kernel_name="python3",
                progress_bar=False, cwd=cwd, engine_name=kept_engine.NAME, km=self.km)
        except BaseException:
            self.stop()
            raise

    def _alive(self) -> bool:
        from jupyter_core.utils import run_sync

        return self.km.has_kernel and run_sync(self.km.is_alive)()

    def _fresh_start(self, log: Path, cwd: str) -> None:
        from jupyter_client import BlockingKernelClient

        carry, self.carry = self.carry, None
        code = FRESH_START.format(log=str(log), cwd=cwd, carry=str(carry) if carry else "")
        kc = BlockingKernelClient()
        kc.load_connection_info(self.km.get_connection_info())
        kc.start_channels(iopub=False, stdin=False, hb=False)  # silent: the reply is enough
        try:
            reply = self._reply(kc, kc.execute(code, silent=True, store_history=False),
                                FRESH_START_TIMEOUT_S)
        finally:
            kc.stop_channels()
        if reply is None:
            raise RuntimeError("the kept kernel could not start afresh: it died or did not "
                               f"answer within {FRESH_START_TIMEOUT_S:.0f} s")
        if reply["content"]["status"] != "ok":
            content = reply["content"]
            raise RuntimeError(f"the kept kernel could not start afresh: "
                               f"{content.get('ename')}: {content.get('evalue')}")

    def stop(self) -> None:
        """Stop the kernel now (as a kernel of its own is stopped: ``immediate``)."""
        from jupyter_core.utils import run_sync

        if self.warming is not None:
            self.warming[0].stop_channels()
            self.warming = None
        km, self.km = self.km, None
        if km is not None and km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
            run_sync(km.cleanup_resources)()
        if self.sockets is not None:
            shutil.rmtree(self.sockets, ignore_errors=True)
            self.sockets = None
        self.carry = None
