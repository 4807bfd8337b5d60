"""Executors: where the scenarios of a study run.

- :class:`LocalExecutor`: N notebook executions at once on this machine.
- :class:`RayExecutor`: each scenario as a Ray task, on a local cluster started here or on an
  existing one.

Both take the function that runs one job (the runner's ``execute_job``) and return futures
that resolve to what it returns; ``interrupt`` stops the running jobs so that their runs end
KILLED.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import math
import os
import queue
import signal
import threading
import time


class LocalExecutor:
    """N notebook executions at once on this machine (daemon threads driving papermill
    kernels, so that a study that must stop never waits for a job stuck on a lost store).

    Each thread keeps its kernel from one execution to the next
    (:func:`lrstudy.execution.kernels.kept_kernel`), wiped to a fresh start in between. With
    ``warm`` (the default) each thread starts its kernel as the pool is created (the pool is
    returned once they are started), and the kernel imports TensorFlow, Keras and MLflow
    while the runner still plans: the first job finds it ready. Jobs start in the order of
    their ``priority`` (lowest first), then of submission.

    nbclient notices a kernel that dies and raises DeadKernelError. To stop a study,
    :meth:`interrupt` sends SIGINT to this process's kernels, so their trials end KILLED;
    :meth:`shutdown` with ``cancel`` gives them ``grace`` seconds to record that, then kills
    the kernels that are left.
    """

    #: The longest the constructor waits for a thread to start its kernel.
    START_WAIT_S = 30.0

    def __init__(self, fn, workers: int, warm: bool = True):
        self.fn = fn
        self.warm = warm
        self.queue: queue.PriorityQueue = queue.PriorityQueue()
        self.order = itertools.count()  # submission order, among jobs of one priority
        started = threading.Semaphore(0)  # a release per thread, once its kernel started
        self.threads = [threading.Thread(target=self._work, args=(started,),
                                         name=f"lrstudy-{i}", daemon=True)
                        for i in range(workers)]
        for thread in self.threads:
            thread.start()
        # back to the caller once the kernels are started: its own imports (MLflow's, as it
        # opens the store) would hold the interpreter's lock while the threads start them,
        # and a kernel's imports, the longest wait of a run's start, begin only then
        for _ in self.threads:
            started.acquire(timeout=self.START_WAIT_S)

    def _work(self, started: threading.Semaphore) -> None:
        from lrstudy.execution import kernels

        with kernels.kept_kernel(warm=self.warm):
            started.release()
            while (item := self.queue.get()[2]) is not None:
                future, job = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(self.fn(job))
                except BaseException as exc:
                    future.set_exception(exc)

    def submit(self, job, priority: int = 0) -> cf.Future:
        future: cf.Future = cf.Future()
        self.queue.put((priority, next(self.order), (future, job)))
        return future

    @staticmethod
    def kernels() -> list:
        import psutil

        found = []
        for child in psutil.Process().children(recursive=True):
            try:
                if "ipykernel" in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.Error:
                pass
        return found

    def interrupt(self) -> None:
        for kernel in self.kernels():
            try:
                kernel.send_signal(signal.SIGINT)
            except Exception:
                pass

    def shutdown(self, cancel: bool = False, grace: float = 60.0) -> None:
        if cancel:
            while True:  # jobs not started yet never start
                try:
                    item = self.queue.get_nowait()[2]
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in self.threads:  # after every job submitted
            self.queue.put((math.inf, next(self.order), None))
        deadline = time.monotonic() + grace
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()) if cancel else None)
        if cancel:
            import psutil

            kernels = self.kernels()
            for kernel in kernels:
                try:
                    kernel.kill()
                except Exception:
                    pass
            psutil.wait_procs(kernels, timeout=5.0)  # gone (and reaped) before we return


class RayExecutor:
    """Each scenario as a Ray task running ``fn(job)`` (through :func:`interruptible`); one
    GPU per task where the cluster has GPUs, else one CPU.

    Without ``address`` a private Ray cluster of ``workers`` CPUs is started here (no
    dashboard, no usage stats, token authentication as Ray enables it by default, every
    server on 127.0.0.1), inheriting this process's environment, and stopped by
    :meth:`shutdown`. With one (``auto``, ``HOST:PORT``) the tasks go to that cluster, whose
    nodes must have this package importable (the same checkout, ``pip install -e .``) and the
    study's data; the variables of :attr:`ENV_VARS` set in this process travel with every task
    (a Ray ``runtime_env``), so its workers use the runner's thread counts, paths and model
    directories. The tracking URI travels in the job. A returned future raises when the task
    itself died (cancelled, worker lost). :meth:`interrupt` cancels the tasks: a running one
    is interrupted like a Ctrl-C, so its runs end KILLED.
    """

    ENV_VARS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
                "TF_CPP_MIN_LOG_LEVEL", "LRSTUDY_HOME", "LRSTUDY_RUNS_DIR", "LRSTUDY_DATA_DIR",
                "LRSTUDY_DATA_CANDIDATES_ONLY", "LRSTUDY_CACHE_DIR", "KERAS_HOME", "PYTHONPATH")
    GRACE_S = 60.0  # how long an interrupted task may take to record its runs KILLED
    # Ray's single-node mode, its default on macOS and Windows: the node's address is
    # 127.0.0.1 instead of the machine's, and every server of the node (GCS, raylet and object
    # manager, agents, metrics exporters, workers, this driver) binds it. Ray reads the
    # variable when it is imported; its children inherit it.
    SINGLE_NODE_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

    def __init__(self, fn, address: str | None, workers: int):
        import ipaddress
        import logging

        if address:
            self.check_reachable(address)  # before Ray's import: seconds saved on bad input
        else:
            os.environ[self.SINGLE_NODE_VAR] = "0"
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never prompt, never report
        import ray

        self.ray = ray
        self.owned = not ray.is_initialized()  # started here: shut down here
        options = {"include_dashboard": False, "log_to_driver": False,
                   "logging_level": logging.WARNING}
        restore_sigterm = self.keep_sigterm()
        try:
            if self.owned and address:
                try:
                    ray.init(address=address, **options)
                except ConnectionError as exc:  # e.g. a cluster that wants a token
                    raise ValueError(
                        f"Argument `ray_address` names a Ray cluster this driver could not "
                        f"join ({str(exc).splitlines()[0]}); a cluster with token "
                        f"authentication needs RAY_AUTH_MODE=token and its token "
                        f"(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token). "
                        f"Received: ray_address={address!r}") from None
            elif self.owned:
                if not ipaddress.ip_address(ray.util.get_node_ip_address()).is_loopback:
                    raise RuntimeError(
                        f"Ray was imported before {self.SINGLE_NODE_VAR}=0 was set: a local "
                        f"cluster started now would listen on every interface")
                ray.init(num_cpus=max(1, workers), **options)
        finally:
            restore_sigterm()
        # A cluster started here inherited this environment already; sending it again would
        # make Ray start fresh workers instead of the ones it prestarted (seconds per task).
        inherited = self.owned and not address
        env = {k: os.environ[k] for k in self.ENV_VARS if os.environ.get(k)}
        gpus = ray.cluster_resources().get("GPU", 0)
        self.fn = fn
        self.remote = ray.remote(interruptible).options(
            num_cpus=1, num_gpus=1 if gpus else 0, max_retries=0,
            **({} if inherited else {"runtime_env": {"env_vars": env}}))
        self.lock = threading.Lock()
        self.pending: dict = {}  # ObjectRef -> the future handed out for it

    @staticmethod
    def keep_sigterm():
        """The function that puts this process's SIGTERM handler back after ``ray.init``.

        Ray installs a C++ failure handler that aborts on SIGTERM; the study would die with
        its runs RUNNING and its kernels orphaned instead of stopping like on Ctrl-C.
        """
        handler = (signal.getsignal(signal.SIGTERM)
                   if threading.current_thread() is threading.main_thread() else None)
        if handler is None:
            return lambda: None
        return lambda: signal.signal(signal.SIGTERM, handler)

    @staticmethod
    def check_reachable(address: str, timeout: float = 10.0) -> None:
        """Fail in seconds, not after Ray's minutes of retries, when ``HOST:PORT`` does not
        answer (``auto`` and ``ray://`` addresses are left to Ray)."""
        import socket

        host, sep, port = address.rpartition(":")
        if not sep or "://" in address or not port.isdigit():
            return
        try:
            socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)),
                                     timeout=timeout).close()
        except OSError as exc:
            raise ValueError(f"Argument `ray_address` names no reachable Ray cluster "
                             f"({exc.strerror or exc}). Received: ray_address={address!r}"
                             ) from None

    def submit(self, job, priority: int = 0) -> cf.Future:
        """``job`` as a Ray task now (Ray orders the tasks; ``priority`` is not used)."""
        ref = self.remote.remote(self.fn, job)
        out: cf.Future = cf.Future()
        with self.lock:
            self.pending[ref] = out

        def resolve(fut: cf.Future) -> None:
            with self.lock:
                self.pending.pop(ref, None)
            try:
                out.set_result(fut.result())
            except BaseException as exc:  # cancelled, worker died, raised past fn
                out.set_exception(getattr(exc, "cause", None) or exc)

        ref.future().add_done_callback(resolve)
        return out

    def interrupt(self) -> None:
        """Ctrl-C/SIGTERM: cancel every task not finished; a running one gets a
        KeyboardInterrupt, so its scenario run ends KILLED."""
        with self.lock:
            refs = list(self.pending)
        for ref in refs:
            try:
                self.ray.cancel(ref, force=False)
            except Exception:
                pass

    def shutdown(self, cancel: bool = False, grace: float | None = None) -> None:
        """Stop the cluster started here; with ``cancel``, first give interrupted tasks
        ``grace`` seconds (default :attr:`GRACE_S`) to record their runs KILLED."""
        if cancel:
            self.interrupt()
            with self.lock:
                outs = list(self.pending.values())
            cf.wait(outs, timeout=self.GRACE_S if grace is None else grace)
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()


def interruptible(fn, job):
    """The Ray task: ``fn(job)``, made interruptible, on the kernel its worker keeps
    (:func:`lrstudy.execution.kernels.process_kernel`). ``ray.cancel`` interrupts a running
    task by raising KeyboardInterrupt through SIGINT; a worker that inherited an ignored
    SIGINT (a driver or ``ray start`` run in the background by a shell) would carry on, so the
    handler is put back."""
    from lrstudy.execution import kernels

    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    with kernels.process_kernel():
        return fn(job)
