"""Run a study: one papermill execution of ``notebooks/scenario.ipynb`` per scenario.

Why one execution per scenario, with its seeds inside: a kernel start plus the TensorFlow
import costs about 8 s here, more than a small trial; paying it once per scenario keeps the
orchestration overhead low, while each seed stays resumable on its own (run keys).

The steps of :func:`run_study`, in order: plan (mark dead RUNNING runs KILLED, skip trials
already FINISHED), execute the pending scenarios on the chosen executor (threads over local
kernels, or Ray tasks), follow progress from the store, report.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import signal
import sys
import threading
import time
from pathlib import Path

from lrstudy import scenarios, tracking
from lrstudy.tracking import TAG

NOTEBOOK = "scenario.ipynb"
STOPPING = threading.Event()  # set on Ctrl-C/SIGTERM: scenario runs then end KILLED


def notebooks_dir() -> Path:
    return tracking.project_root() / "notebooks"


def execute_notebook(notebook: Path | str, output: Path | str, parameters: dict,
                     cwd: Path | str) -> object:
    """papermill-execute ``notebook`` into ``output`` on a python3 kernel, quietly.

    The kernel talks to us over IPC sockets in a private temporary directory (mode 0700, one
    per execution, so kernels side by side never share a socket), not over unencrypted
    loopback TCP ports that any local user could reach; ipykernel warns about those once per
    kernel, which would break into the progress bar on every scenario.
    """
    import tempfile

    import papermill
    from traitlets.config import Config

    with tempfile.TemporaryDirectory(prefix="lrstudy-kernel-") as sockets:
        config = Config(KernelManager={"transport": "ipc", "ip": os.path.join(sockets, "k")})
        return papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters, kernel_name="python3",
            progress_bar=False, cwd=str(cwd), config=config)


def runs_dir(study: str) -> Path:
    """Where executed notebooks are kept: ``$LRSTUDY_RUNS_DIR`` or ``<project>/runs``."""
    root = os.environ.get("LRSTUDY_RUNS_DIR") or tracking.project_root() / "runs"
    return Path(root) / study


@dataclasses.dataclass
class Job:
    study: str          # the study's name or file, as the notebook should load it
    study_name: str     # the experiment's name
    scenario: str
    seeds: int
    pending: list[str]  # run keys still to do
    overrides: dict
    tracking_uri: str
    threads: int
    output: str


@dataclasses.dataclass
class JobResult:
    scenario: str
    ok: bool
    notebook: str
    parent_run_id: str = ""
    error: str = ""


def plan(study: scenarios.Study, selected: list[scenarios.Scenario], seeds: int,
         uri: str, mlflow_client) -> tuple[list[tuple[scenarios.Scenario, list[str]]], int]:
    """Which scenarios still have trials to run; how many trials are already FINISHED."""
    exp_id = tracking.experiment_id(study.name, uri, mlflow_client)
    tracking.mark_orphans_killed(mlflow_client, exp_id)
    keys = {sc.name: [tracking.run_key(sc.config(), s) for s in range(seeds)] for sc in selected}
    existing = tracking.trials_by_key(mlflow_client, exp_id)
    finished = {k for k, runs in existing.items()
                if any(r.info.status == "FINISHED" for r in runs)}
    todo, skipped = [], 0
    for sc in selected:
        pending = [k for k in keys[sc.name] if k not in finished]
        skipped += len(keys[sc.name]) - len(pending)
        if pending:
            todo.append((sc, pending))
    return todo, skipped


def execute_job(job: Job) -> JobResult:
    """Execute one scenario's notebook with papermill; record it under a scenario run.

    The executed notebook (or the error notebook, when a cell raised) is kept at
    ``job.output`` and logged as an artifact of the scenario run, which ends FINISHED or
    FAILED; the trials inside it are its children.
    """
    import papermill

    from lrstudy import train

    mlflow_client = tracking.client(job.tracking_uri)
    study = scenarios.load_study(job.study, job.overrides)
    sc = study.scenarios[job.scenario]
    parent = train.open_scenario_run(job.study_name, sc, job.tracking_uri, mlflow_client)
    Path(job.output).parent.mkdir(parents=True, exist_ok=True)
    parameters = {"study": job.study, "scenario": job.scenario, "seeds": job.seeds,
                  "tracking_uri": job.tracking_uri, "parent_run_id": parent,
                  "threads": job.threads, **{k: v for k, v in job.overrides.items()
                                             if k in ("epochs", "train_size", "batch_size")}}
    status, error = "FAILED", ""
    try:
        execute_notebook(notebooks_dir() / NOTEBOOK, job.output, parameters, notebooks_dir())
        status = "FINISHED"
    except papermill.PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}".splitlines()[0]
        if STOPPING.is_set():
            status = "KILLED"
    except KeyboardInterrupt:
        status, error = "KILLED", "interrupted"
        raise
    except Exception as exc:  # kernel died, could not start ...
        error = f"{type(exc).__name__}: {exc}".splitlines()[0] or type(exc).__name__
        if STOPPING.is_set():
            status = "KILLED"
    finally:
        try:
            if Path(job.output).exists():
                mlflow_client.log_artifact(parent, job.output)
            if error:
                mlflow_client.set_tag(parent, TAG + "error", error[:5000])
        finally:
            mlflow_client.set_terminated(parent, status)
    return JobResult(job.scenario, status == "FINISHED", job.output, parent, error)


# ---- executors -------------------------------------------------------------------------------

class LocalExecutor:
    """N notebook executions at once on this machine (threads driving papermill kernels).

    papermill makes each kernel itself (nbclient then notices a kernel that dies and raises
    DeadKernelError). To stop a study, :meth:`interrupt` sends SIGINT to this process's
    kernels, so their trials end KILLED.
    """

    def __init__(self, workers: int):
        self.pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lrstudy")

    def submit(self, job: Job) -> cf.Future:
        return self.pool.submit(execute_job, job)

    def interrupt(self) -> None:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                if "ipykernel" in " ".join(child.cmdline()):
                    child.send_signal(signal.SIGINT)
            except psutil.Error:
                pass

    def shutdown(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)


class RayExecutor:
    """Each scenario as a Ray task running :func:`execute_job` (through :meth:`run_job`); one
    GPU per task where the cluster has GPUs, else one CPU.

    Without ``address`` a local Ray cluster of ``workers`` CPUs is started here (no dashboard,
    no usage stats), inheriting this process's environment, and stopped by :meth:`shutdown`.
    With one (``auto``, ``HOST:PORT``) the tasks go to that cluster, whose nodes must have this
    package importable (the same checkout, ``pip install -e .``) and the study's data; the
    variables of :attr:`ENV_VARS` set in this process travel with every task (a Ray
    ``runtime_env``), so its workers use the runner's thread counts and paths. The tracking
    URI travels in the :class:`Job`. Every returned future resolves to a :class:`JobResult`,
    also when the task itself died. :meth:`interrupt` cancels the tasks: a running one is
    interrupted like a Ctrl-C, so its runs end KILLED.
    """

    ENV_VARS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
                "TF_CPP_MIN_LOG_LEVEL", "LRSTUDY_HOME", "LRSTUDY_RUNS_DIR", "LRSTUDY_DATA_DIR",
                "LRSTUDY_DATA_CANDIDATES_ONLY", "LRSTUDY_CACHE_DIR", "KERAS_HOME")
    GRACE_S = 60.0  # how long an interrupted task may take to record its runs KILLED

    def __init__(self, address: str | None, workers: int):
        import logging

        if address:
            self.check_reachable(address)  # before Ray's import: seconds saved on bad input
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
                        f"(RAY_AUTH_TOKEN or ~/.ray/auth_token). Received: "
                        f"ray_address={address!r}") from None
            elif self.owned:
                self.start_local(ray, max(1, workers), options)
        finally:
            restore_sigterm()
        # A cluster started here inherited this environment already; sending it again would
        # make Ray start fresh workers instead of the ones it prestarted (seconds per task).
        inherited = self.owned and not address
        env = {k: os.environ[k] for k in self.ENV_VARS if os.environ.get(k)}
        gpus = ray.cluster_resources().get("GPU", 0)
        self.remote = ray.remote(self.run_job).options(
            num_cpus=1, num_gpus=1 if gpus else 0, max_retries=0,
            **({} if inherited else {"runtime_env": {"env_vars": env}}))
        self.lock = threading.Lock()
        self.pending: dict = {}  # ObjectRef -> the future handed out for it

    @staticmethod
    def run_job(job: Job) -> JobResult:
        """The Ray task, imported by reference on the workers: :func:`execute_job`, made
        interruptible. ``ray.cancel`` interrupts a running task by raising KeyboardInterrupt
        through SIGINT; a worker that inherited an ignored SIGINT (a driver or ``ray start``
        run in the background by a shell) would carry on, so the handler is put back."""
        import signal

        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
            signal.signal(signal.SIGINT, signal.default_int_handler)
        return execute_job(job)

    @staticmethod
    def keep_sigterm():
        """The function that puts this process's SIGTERM handler back after ``ray.init``.

        Ray installs a C++ failure handler that aborts on SIGTERM; the study would die with
        its runs RUNNING and its kernels orphaned instead of stopping like on Ctrl-C.
        """
        import signal

        handler = (signal.getsignal(signal.SIGTERM)
                   if threading.current_thread() is threading.main_thread() else None)
        if handler is None:
            return lambda: None
        return lambda: signal.signal(signal.SIGTERM, handler)

    @staticmethod
    def start_local(ray, num_cpus: int, options: dict, attempts: int = 2) -> None:
        """``ray.init`` of a private cluster, tried once more when it did not start in time.

        Ray 2.60's raylet gives its agents 15 s to start (ray-project/ray#65983); on a busy
        small machine their Python start-up can miss that, and a second attempt usually makes
        it. Any other failure is raised at once.
        """
        for attempt in range(1, attempts + 1):
            try:
                ray.init(num_cpus=num_cpus, **options)
                return
            except Exception as exc:
                if attempt == attempts or "timed out during startup" not in str(exc):
                    raise
                if ray.is_initialized():
                    ray.shutdown()
                RayExecutor.stop_leftovers(ray)
                print("lrstudy: the local Ray cluster did not start in time (busy machine?); "
                      "trying once more", file=sys.stderr)

    @staticmethod
    def stop_leftovers(ray, timeout: float = 10.0) -> None:
        """Stop what a failed ``ray.init`` left running: this process's children that are Ray
        programs (GCS, dashboard, monitors; Ray would only reap them when this process
        exits). Nothing else runs under the driver before the first task is submitted."""
        import psutil

        ray_dir = os.path.dirname(ray.__file__)
        procs = []
        for child in psutil.Process().children(recursive=True):
            try:
                if any(ray_dir in part for part in child.cmdline()):
                    child.terminate()
                    procs.append(child)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        for child in alive:
            try:
                child.kill()
            except psutil.Error:
                pass

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

    def submit(self, job: Job) -> cf.Future:
        ref = self.remote.remote(job)
        out: cf.Future = cf.Future()
        with self.lock:
            self.pending[ref] = out

        def resolve(fut: cf.Future) -> None:
            try:
                result = fut.result()
            except BaseException as exc:  # cancelled, worker died, raised past execute_job
                cause = getattr(exc, "cause", None) or exc
                line = (f"{type(cause).__name__}: {cause}".splitlines() or [""])[0]
                result = JobResult(job.scenario, False, job.output, error=line)
            with self.lock:
                self.pending.pop(ref, None)
            out.set_result(result)

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

    def shutdown(self, cancel: bool = False) -> None:
        if cancel:
            self.interrupt()
            with self.lock:
                outs = list(self.pending.values())
            cf.wait(outs, timeout=self.GRACE_S)
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()


# ---- the study ---------------------------------------------------------------------------------

@dataclasses.dataclass
class StudyOutcome:
    study: str
    total: int
    skipped: int
    finished: int
    diverged: int
    failed: list[JobResult]
    results: list[JobResult]
    wall_time_s: float

    @property
    def ok(self) -> bool:
        return not self.failed


def count_trials(mlflow_client, exp_id: str, keys: set[str]) -> tuple[int, int]:
    """(FINISHED, of which diverged) among the trials with these keys."""
    done = diverged = 0
    for key, runs in tracking.trials_by_key(mlflow_client, exp_id, keys).items():
        fin = [r for r in runs if r.info.status == "FINISHED"]
        if fin:
            done += 1
            diverged += fin[0].data.tags.get(TAG + "diverged") == "true"
    return done, diverged


def run_study(study: str, *, scenario_names: list[str] | None = None, seeds: int | None = None,
              overrides: dict | None = None, workers: int = 2, executor: str = "local",
              tracking_uri: str | None = None, ray_address: str | None = None,
              progress: bool = True, threads: int = 0) -> StudyOutcome:
    """Plan, execute and report a study (see the module docstring)."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    spec = scenarios.load_study(study, overrides)
    selected = spec.select(scenario_names)
    scenarios.validate(spec, selected)
    seeds = seeds or spec.seeds
    uri = tracking.check_store(tracking_uri)
    mlflow_client = tracking.client(uri)
    exp_id = tracking.experiment_id(spec.name, uri, mlflow_client)
    todo, skipped = plan(spec, selected, seeds, uri, mlflow_client)
    keys = {k for _, pending in todo for k in pending}
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(threads)  # kernels inherit it; TF reads it at start-up
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    study_arg = spec.name if spec.path.parent == scenarios.STUDIES_DIR else str(spec.path)
    jobs = [Job(study=study_arg, study_name=spec.name, scenario=sc.name, seeds=seeds,
                pending=pending, overrides=dict(overrides or {}), tracking_uri=uri,
                threads=threads, output=str(runs_dir(spec.name) / f"{sc.name}.ipynb"))
            for sc, pending in todo]
    pool = (RayExecutor(ray_address, workers) if executor == "ray"
            else LocalExecutor(max(1, workers)))
    bar = tqdm(total=len(keys), unit="trial", desc=spec.name, disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    results: list[JobResult] = []
    futures = {pool.submit(job): job for job in jobs}
    try:
        pending = set(futures)
        while pending:
            finished_now, pending = cf.wait(pending, timeout=2.0,
                                             return_when=cf.FIRST_COMPLETED)
            for fut in finished_now:
                results.append(fut.result())
            done, _ = count_trials(mlflow_client, exp_id, keys)
            bar.update(done - bar.n)
    except KeyboardInterrupt:
        STOPPING.set()
        bar.close()
        print("interrupted: stopping the running trials (they are recorded KILLED)",
              file=sys.stderr)
        pool.interrupt()
        pool.shutdown(cancel=True)
        tracking.mark_orphans_killed(mlflow_client, exp_id)
        raise
    pool.shutdown()
    tracking.mark_orphans_killed(mlflow_client, exp_id)  # trials of kernels that died
    done, diverged = count_trials(mlflow_client, exp_id, keys)
    bar.update(done - bar.n)
    bar.close()
    return StudyOutcome(study=spec.name, total=len(keys) + skipped, skipped=skipped,
                        finished=done, diverged=diverged,
                        failed=[r for r in results if not r.ok], results=results,
                        wall_time_s=time.perf_counter() - t0)


def format_outcome(outcome: StudyOutcome) -> str:
    lines = [
        f"study {outcome.study}: {outcome.total} trials in {outcome.wall_time_s:.0f} s",
        f"  done     {outcome.finished:4d}   (of which diverged: {outcome.diverged})",
        f"  skipped  {outcome.skipped:4d}   (already finished)",
        f"  failed   {len(outcome.failed):4d}   scenarios",
    ]
    for res in sorted(outcome.results, key=lambda r: r.scenario):
        mark = "ok    " if res.ok else "FAILED"
        lines.append(f"  {mark} {res.scenario:32s} {res.notebook}")
        if res.error:
            lines.append(f"         {res.error}")
    return "\n".join(lines)
