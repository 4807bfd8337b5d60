"""Run a study: one papermill execution of ``notebooks/scenario.ipynb`` per scenario.

Why one execution per scenario, with its seeds inside: a kernel start plus the TensorFlow
import costs several seconds, more than a small trial; paying it once per scenario keeps the
orchestration overhead low, while each seed stays resumable on its own (run keys).

:func:`run_study` is its steps, in order: load and check the study, prepare the kernels'
environment and start the executor (a local one's kernels import TensorFlow meanwhile),
connect to the store, plan (:mod:`lrstudy.execution.study_plan`: dead RUNNING runs marked
KILLED, FINISHED trials skipped, trials a live process runs elsewhere left to it), execute
the pending scenarios on the executor while following progress from the store, and sum up.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from lrstudy import interrupts
from lrstudy.errors import one_line
from lrstudy.execution import until_decided as until_decided_
from lrstudy.execution.store_watch import Paced, StoreLost, StoreWatch
from lrstudy.execution.study_plan import Plan, distinct, plan
from lrstudy.spec import competition
from lrstudy.spec import study as scenarios
from lrstudy.tracking import sqlstore
from lrstudy.tracking import run_life
from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Tag
from lrstudy.tracking.store import TAG

NOTEBOOK = "scenario.ipynb"
PATH_VARS = ("LRSTUDY_DATA_DIR", "LRSTUDY_CACHE_DIR", "LRSTUDY_RUNS_DIR", "LRSTUDY_HOME",
             "KERAS_HOME")
THREAD_VARS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
DISK_FULL = ("No space left on device", "database or disk is full", "Errno 28")
DISK_FULL_MARK = "[disk full]"


def runs_dir(study: str, uri: str | None = None) -> Path:
    """Where a study's executed notebooks are kept: ``<runs>/<store>/<study>``, with ``<runs>``
    ``$LRSTUDY_RUNS_DIR`` or ``<project>/runs`` and ``<store>`` the tracking store's folder
    (:func:`lrstudy.tracking.store.store_label`): a study of the same name on another store
    never overwrites them."""
    root = os.environ.get("LRSTUDY_RUNS_DIR") or tracking.project_root() / "runs"
    return Path(root) / tracking.store_label(uri) / study


def absolute_paths() -> None:
    """Make the path variables kernels inherit absolute: kernels run in ``notebooks/``, where
    a relative ``LRSTUDY_DATA_DIR`` would name another directory."""
    for var in PATH_VARS:
        value = os.environ.get(var)
        if value and not os.path.isabs(value):
            os.environ[var] = os.path.abspath(os.path.expanduser(value))


# ---- one scenario ------------------------------------------------------------------------------

@dataclasses.dataclass
class Job:
    study: str          # the study's name or file, as the notebook should load it
    study_name: str     # the experiment's name
    scenario: str
    seeds: int
    overrides: dict
    tracking_uri: str
    threads: int
    output: str
    phase: str = ""        # the competition's phase this execution runs ("" outside one)
    grid_points: int = 0   # 0: the study's own tuning grid
    stack: str = "auto"    # trials trained together (lrstudy.stack): auto, off or a number

    @property
    def priority(self) -> int:
        """The order in which a local executor starts jobs (lowest first): tunings, whose
        finals wait for them, then finals, then the tutorials' short demonstrations, which
        fill the workers' last minutes."""
        return PHASE_PRIORITY.get(self.phase, 1)


PHASE_PRIORITY = {"tune": 0, "final": 1, "demo": 2}


@dataclasses.dataclass
class JobResult:
    scenario: str
    ok: bool
    notebook: str
    parent_run_id: str = ""
    error: str = ""
    phase: str = ""


def scenario_of(job: Job) -> scenarios.Scenario:
    """The job's scenario: one the study runs by default, or any it makes available
    (``--scenarios`` may name any catalogue scenario)."""
    (sc,) = scenarios.load_study(job.study, job.overrides).select([job.scenario])
    return sc


def execute_job(job: Job) -> JobResult:
    """Execute one scenario's notebook with papermill under a scenario run.

    The executed notebook (or the error notebook, when a cell raised) is kept at
    ``job.output`` and logged, with the kernel's log, as artifacts of the scenario run, which
    ends FINISHED, FAILED, or KILLED when the study was stopped; the trials are its children.
    """
    import papermill

    from lrstudy.execution import kernels

    mlflow_client = tracking.client(job.tracking_uri)
    sc = scenario_of(job)
    exp_id = tracking.experiment_id(job.study_name, job.tracking_uri, mlflow_client)
    parameters = {"study": job.study, "scenario": job.scenario, "seeds": job.seeds,
                  "phase": job.phase, "grid_points": job.grid_points,
                  "tracking_uri": job.tracking_uri, "threads": job.threads,
                  "stack": str(job.stack),
                  **{k: v for k, v in job.overrides.items()
                     if k in ("epochs", "train_size", "batch_size")}}
    error = ""
    name = f"{sc.name}-{job.phase}" if job.phase else sc.name
    extra = {"phase": job.phase} if job.phase else {}
    with run_life.open_run(mlflow_client, exp_id, tracking.run_tags(
            "scenario", job.study_name, sc, name=name, **extra)) as run:
        try:
            kernels.execute(kernels.notebooks_dir() / NOTEBOOK, job.output,
                            {**parameters, "parent_run_id": run.id})
        except papermill.PapermillExecutionError as exc:
            error = _error_line(f"{exc.ename}: {exc.evalue}")
            interrupted = exc.ename == "KeyboardInterrupt"  # the kernel got the Ctrl-C too
            run.end_as("KILLED" if interrupted else run_life.end_status(exc, run.signals_before))
        except Exception as exc:  # the kernel died, could not start ...
            error = _error_line(f"{type(exc).__name__}: {exc}")
            run.end_as(run_life.end_status(exc, run.signals_before))
        finally:
            error = _keep_record(mlflow_client, run.id, job.output, error)
    return JobResult(job.scenario, run.status in (None, "FINISHED"), job.output, run.id, error,
                     job.phase)


def _error_line(text: str) -> str:
    """The first line of an error, marked when the disk under the store is full (the reason
    may sit in a later line of a database error)."""
    first = (text.splitlines() or [""])[0][:500]
    if any(marker in text for marker in DISK_FULL) and DISK_FULL_MARK not in first:
        first += f" {DISK_FULL_MARK}"
    return first


def _keep_record(mlflow_client, run_id: str, output: str, error: str) -> str:
    """Log the executed notebook, its kernel log and the error; returns the error, with the
    reason the record could not be kept when the store refused it."""
    from lrstudy.execution import kernels

    try:
        for path in (Path(output), kernels.log_path(output)):
            if path.exists():
                mlflow_client.log_artifact(run_id, str(path))
        if error:
            mlflow_client.set_tag(run_id, Tag.ERROR, error[:5000])
    except Exception as exc:
        error = error or _error_line(f"could not keep the record: {type(exc).__name__}: {exc}")
    return error


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
    elsewhere: dict = dataclasses.field(default_factory=dict)
    reaped: int = 0
    merged: dict = dataclasses.field(default_factory=dict)  # duplicate -> the scenario run
    unfinished: list = dataclasses.field(default_factory=list)  # finals never chosen
    sequential: dict = dataclasses.field(default_factory=dict)  # --until-decided: its looks

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def disk_full(self) -> bool:
        return any(DISK_FULL_MARK in r.error for r in self.failed)


def count_trials(mlflow_client, exp_id: str, keys: set[str], uri: str = "") -> tuple[int, int]:
    """(FINISHED, of which diverged) among the trials with these keys; from a SQL store in
    two queries on the tags (:func:`lrstudy.tracking.sqlstore.finished_trials`), from a server
    through MLflow's search."""
    if uri and sqlstore.is_sql(uri):
        finished = sqlstore.finished_trials(uri, exp_id)
        mine = [finished[k] for k in keys if k in finished]
        return len(mine), sum(mine)
    done = diverged = 0
    for key, runs in tracking.trials_by_key(mlflow_client, exp_id, keys).items():
        fin = [r for r in runs if r.info.status == "FINISHED"]
        if fin:
            done += 1
            diverged += fin[0].data.tags.get(Tag.DIVERGED) == "true"
    return done, diverged


def concurrent_workers(workers: int, selected: list) -> int:
    """The notebook executions that can run at once: ``workers``, but never more than the
    scenarios (a scenario's phases run one after the other: its finals start when its tuning
    ends). Fewer executions give each kernel more threads (:func:`kernel_environment`): a
    one-strategy study trains on every core, not on one while the others idle."""
    return max(1, min(workers, len(selected)))


def kernel_environment(selected: list, workers: int, threads: int) -> int:
    """Set what the kernels inherit: absolute paths, thread counts, the directories of user
    models (so a model importable from here is importable in ``notebooks/`` too)."""
    from lrstudy import models
    from lrstudy.data import sources

    absolute_paths()
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
    for var in THREAD_VARS:
        os.environ[var] = str(threads)  # TF reads them when it starts
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # kernels share a GPU
    extra = {str(d) for sc in selected if (d := models.locate(sc.budget["model"]))}
    extra |= {str(d) for sc in selected if (d := sources.module_dir(sc.budget["dataset"]))}
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if extra - set(path):
        os.environ["PYTHONPATH"] = os.pathsep.join(sorted(extra - set(path)) + path)
    return threads


def make_executor(kind: str, workers: int, ray_address: str | None):
    from lrstudy.execution import executors

    if kind == "ray":
        return executors.RayExecutor(execute_job, ray_address, workers)
    return executors.LocalExecutor(execute_job, max(1, workers))


def follow(pool, jobs: list[Job], watch: StoreWatch, progress,
           then=lambda result: []) -> list[JobResult]:
    """Submit the jobs, update ``progress()`` every 2 s until all are done, and submit the
    jobs ``then(result)`` returns as each ends; a Ctrl-C or a lost store stops the running
    kernels (their runs end KILLED), shuts ``pool`` down and is raised again."""
    futures: dict = {}
    pending: set = set()

    def submit(todo: list[Job]) -> None:
        for job in todo:
            fut = pool.submit(job, priority=job.priority)
            futures[fut] = job
            pending.add(fut)

    submit(jobs)
    results = []
    try:
        while pending:
            done, _ = cf.wait(pending, timeout=2.0, return_when=cf.FIRST_COMPLETED)
            pending.difference_update(done)
            for fut in done:
                try:
                    results.append(fut.result())
                except Exception as exc:  # the executor lost the job (a Ray task died),
                    job = futures[fut]       # or the store refused to end its scenario run
                    error = _error_line(one_line(exc, limit=5000))
                    results.append(JobResult(job.scenario, False, job.output, error=error,
                                             phase=job.phase))
                submit(then(results[-1]))
            watch.call(progress)
        return results
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the running trials (they are recorded KILLED)",
              file=sys.stderr)
        pool.interrupt()
        pool.shutdown(cancel=True)
        raise
    except StoreLost:  # nothing can be recorded: stop the kernels, leave their runs to reap
        pool.interrupt()
        pool.shutdown(cancel=True, grace=5.0)
        raise


def _reap_if_possible(mlflow_client, exp_id: str) -> None:
    """Mark dead runs KILLED now if the store lets us (a full disk may not); otherwise the
    next run of the study does it before it plans."""
    try:
        tracking.reap(mlflow_client, exp_id)
    except Exception as exc:
        if DISK_FULL_MARK not in _error_line(str(exc)):  # a full disk is reported at the end
            print(f"lrstudy: could not mark dead runs KILLED yet ({one_line(exc, limit=300)}); "
                  "the next run of the study will", file=sys.stderr)


def _tag_experiment(spec, mlflow_client, exp_id: str, seeds: int, until_decided: bool,
                    max_seeds: int | None):
    """Tag the study's experiment with what the report reads (reference, margin, claims,
    what each strategy changes) and return its sequential design."""
    differs = json.dumps(dict(spec.competition.differs) if spec.competition else {})
    for key, value in (("reference", spec.reference), ("margin", spec.margin),
                       ("claims", spec.claims or ""), ("differs", differs)):
        mlflow_client.set_experiment_tag(exp_id, TAG + key, str(value))
    return until_decided_.sequential_design(mlflow_client, exp_id, seeds, until_decided,
                                            max_seeds)


def run_study(study: str, *, scenario_names: list[str] | None = None,
              families: list[str] | None = None, seeds: int | None = None,
              overrides: dict | None = None, workers: int = 2, executor: str = "local",
              tracking_uri: str | None = None, ray_address: str | None = None,
              progress: bool = True, threads: int = 0, grid_points: int = 0,
              stack: str = "auto", until_decided: bool = False,
              max_seeds: int | None = None) -> StudyOutcome:
    """Run a study, resumably (see the module docstring for its steps). In a competition the
    finals of a tuned strategy are a second round, once its tuning has finished.

    ``until_decided``: a group-sequential design (:func:`lrstudy.execution.until_decided.sequential_design`). After the
    finals, the verdict is computed from the store; while a comparison with the reference is
    undecided and fewer than ``max_seeds`` final seeds ran, the finals run again with
    :data:`~lrstudy.report.sequential.SEED_STEP` more seeds (the FINISHED ones are skipped),
    and the verdict is looked at again (:func:`lrstudy.execution.until_decided.seeds_until_decided`). Without it the design
    is fixed."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    spec = scenarios.load_study(study, overrides)
    selected, merged = distinct(spec.select(scenario_names, families))
    scenarios.validate(spec, selected)
    seeds = seeds or spec.seeds
    comp = competition.with_grid_points(spec.competition, grid_points)

    uri = tracking.check_store(tracking_uri)
    workers = concurrent_workers(workers, selected)
    threads = kernel_environment(selected, workers, threads)
    # The executor before the store is opened and the study planned: a local one's workers
    # start their kernels at once, and those import TensorFlow while this process plans.
    pool = make_executor(executor, workers, ray_address)
    try:
        with interrupts.stop_on_signals():
            mlflow_client = tracking.client(uri)
            exp_id = tracking.experiment_id(spec.name, uri, mlflow_client)
            design = _tag_experiment(spec, mlflow_client, exp_id, seeds, until_decided,
                                     max_seeds)
            if design.sequential and design.looks:  # resuming: from the last look on
                seeds = max(seeds, design.looks[-1])
            first = plan(selected, seeds, comp, mlflow_client, exp_id)
    except BaseException:
        pool.shutdown(cancel=True, grace=5.0)
        raise
    study_arg = spec.name if spec.path.parent == scenarios.STUDIES_DIR else str(spec.path)

    def jobs_of(todo: Plan) -> list[Job]:
        return [Job(study=study_arg, study_name=spec.name, scenario=sc.name, seeds=seeds,
                    overrides=dict(overrides or {}), tracking_uri=uri, threads=threads,
                    output=str(runs_dir(spec.name, uri) / f"{sc.name}{'-' + phase if phase else ''}"
                               ".ipynb"), phase=phase, grid_points=grid_points,
                    stack=str(stack))
                for sc, phase, _ in todo.todo]

    keys = {k for _, _, pending in first.todo for k in pending}
    bar = tqdm(total=len(keys) + len(first.waiting) * seeds, unit="trial", desc=spec.name,
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    watch = StoreWatch(uri)

    def count() -> None:
        done, _ = count_trials(mlflow_client, exp_id, keys, uri)
        bar.update(done - bar.n)

    update = Paced(count)

    waiting = {sc.name: sc for sc in first.waiting}  # finals whose tuning is to come

    def finals_of(result: JobResult) -> list[Job]:
        """The finals of the strategy whose tuning ``result`` ended well: they start now,
        not once every tuning has ended."""
        sc = waiting.get(result.scenario)
        if sc is None or result.phase != "tune" or not result.ok:
            return []
        ready = watch.call(plan, [sc], seeds, comp, mlflow_client, exp_id)
        if not ready.waiting:  # else the tuning chose no winner: it stays unfinished
            del waiting[sc.name]
        keys.update(k for _, _, pending in ready.todo for k in pending)
        return jobs_of(ready)

    def more_seeds(n: int) -> bool:
        """The finals again with ``n`` seeds (FINISHED trials skipped); whether all ran."""
        nonlocal seeds
        seeds = n
        more = watch.call(plan, selected, n, comp, mlflow_client, exp_id)
        keys.update(k for _, _, pending in more.todo for k in pending)
        bar.total = len(keys)
        bar.refresh()
        ran = follow(pool, jobs_of(more), watch, update)
        results.extend(ran)
        return all(r.ok for r in ran) and not more.waiting

    results, looked = [], {}
    try:
        with interrupts.stop_on_signals():
            results = follow(pool, jobs_of(first), watch, update, then=finals_of)
            if waiting:  # tunings another process ran: their finals, if they have ended since
                last = watch.call(plan, list(waiting.values()), seeds, comp, mlflow_client,
                                  exp_id)
                keys.update(k for _, _, pending in last.todo for k in pending)
                results += follow(pool, jobs_of(last), watch, update)
                waiting.clear()
                waiting.update((sc.name, sc) for sc in last.waiting)
            if until_decided and not waiting and all(r.ok for r in results):
                looked = until_decided_.seeds_until_decided(
                    spec.name, uri, mlflow_client, exp_id, design, seeds, more_seeds, watch)
        pool.shutdown()
    except KeyboardInterrupt:
        bar.close()
        _reap_if_possible(mlflow_client, exp_id)  # what the stopped kernels left
        raise
    except StoreLost:
        bar.close()
        raise
    _reap_if_possible(mlflow_client, exp_id)  # trials of kernels that died
    done, diverged = watch.call(count_trials, mlflow_client, exp_id, keys, uri)
    bar.update(done - bar.n)
    bar.close()
    return StudyOutcome(study=spec.name, total=first.total, skipped=first.skipped,
                        finished=done, diverged=diverged,
                        failed=[r for r in results if not r.ok], results=results,
                        wall_time_s=time.perf_counter() - t0, elsewhere=first.elsewhere,
                        reaped=first.reaped, merged=merged, unfinished=sorted(waiting),
                        sequential=looked)


def format_outcome(outcome: StudyOutcome) -> str:
    lines = [
        f"study {outcome.study}: {outcome.total} trials in {outcome.wall_time_s:.0f} s",
        f"  done     {outcome.finished:4d}   (of which diverged: {outcome.diverged})",
        f"  skipped  {outcome.skipped:4d}   (already finished)",
    ]
    if outcome.elsewhere:
        hosts = sorted({r.data.tags.get(Tag.HOST, "?") for r in outcome.elsewhere.values()})
        lines.append(f"  elsewhere{len(outcome.elsewhere):4d}   (running now on "
                     f"{', '.join(hosts)}, heartbeat fresh: left to it; rerun once it is done)")
    lines.append(f"  failed   {len(outcome.failed):4d}   scenario runs")
    for dup, first in sorted(outcome.merged.items()):
        lines.append(f"  {dup} trains exactly what {first} trains: one trial, under {first}")
    if outcome.sequential:
        seq = outcome.sequential
        looks = ", ".join(map(str, seq["looks"]))
        why = {"decided": "every comparison decided",
               "max_seeds": f"still undecided: {', '.join(seq['undecided'])}",
               "failed": "stopped adding seeds: a round of finals failed"}[seq["stopped"]]
        lines.append(f"  looks    {len(seq['looks']):4d}   (verdict looked at with {looks} final "
                     f"seeds, at most {seq['max_seeds']}): {why}")
    if outcome.unfinished:
        lines.append(f"  no finals yet for {', '.join(outcome.unfinished)}: their tuning did "
                     "not finish (see the failures); rerun to resume")
    for res in sorted(outcome.results, key=lambda r: r.scenario):
        mark = "ok    " if res.ok else "FAILED"
        lines.append(f"  {mark} {res.scenario:32s} {res.notebook}")
        if res.error:
            lines.append(f"         {res.error}")
    return "\n".join(lines)
