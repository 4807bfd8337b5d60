"""``python -m lrstudy`` / ``lrstudy``: run, check, report, find-lr, list, ui (the command line's
grammar: :mod:`lrstudy.cli_parser`).

Bad input (unknown names, invalid numbers, malformed study files, missing data, a store that
cannot be written or reached) ends with one line on stderr and exit status 2, before any
training and before anything is recorded, and before TensorFlow is imported: every check
reads names and numbers from data. A tracking store lost mid-study ends with one line and
exit status 3; Ctrl-C or SIGTERM with 130.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

from lrstudy.cli_parser import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_STORE_LOST,
    build_parser,
)
from lrstudy.errors import one_line
from lrstudy.tracking import ui_links
from lrstudy.tracking.ui_links import TRAINING_VIEW


class BadInput(Exception):
    pass


def cmd_list(args) -> int:
    from lrstudy.spec import study as scenarios

    print("studies:")
    for name in scenarios.study_names():
        study = scenarios.load_study(name)
        print(f"  {name:16s} {len(study.scenarios):3d} scenarios x {study.seeds} seeds  "
              f"{study.description}")
    print("scenarios (catalogue):")
    for name, spec in scenarios.catalogue().items():
        print(f"  {name:32s} {spec['family']:9s} {spec.get('description', '')}")
    return 0


def _overrides(args) -> dict:
    return {k: v for k, v in (("epochs", args.epochs), ("train_size", args.train_size),
                              ("batch_size", args.batch_size)) if v}


def _names(text: str) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] or None


def cmd_check(args) -> int:
    from lrstudy.execution import study_plan
    from lrstudy.spec import cost
    from lrstudy.spec import study as scenarios

    study = scenarios.load_study(args.study)
    selected, merged = study_plan.distinct(study.select(_names(args.scenarios),
                                                        _names(args.families)))
    scenarios.validate(study, selected)
    budgets = {sc.budget_label for sc in selected}
    comp = study.competition
    plans = cost.plan(comp, selected, study.seeds)
    total = sum(p.total for p in plans)
    if comp is None:
        print(f"study {study.name}: {len(selected)} scenarios x {study.seeds} seeds = "
              f"{total} trials on {len(budgets)} budget(s)")
    else:
        roles = [comp.role(sc) for sc in selected]
        print(f"study {study.name}: a competition of {roles.count('tuned')} tuned strategies "
              f"({comp.grid_points} grid points x {comp.tune_seeds} tuning seed(s), then "
              f"{study.seeds} final seeds), "
              + (f"{roles.count('untuned')} untuned, " if "untuned" in roles else "")
              + f"{roles.count('finder')} fed by the LR range test, "
              f"{roles.count('demo')} demonstrations = {total} trials on "
              f"{len(budgets)} budget(s); reference {study.reference or '(none)'}")
    for label in sorted(budgets):
        print(f"  {label}")
    for dup, first in sorted(merged.items()):
        print(f"  {dup}: the same trials as {first}")
    width = max([32, *(len(p.scenario.name) + 1 for p in plans)])
    print(f"\n  {'scenario':{width}s} {'family':10s} trials")
    for p in plans:
        phases = ", ".join(f"{phase} {n}" if phase else f"{n}" for phase, n in p.trials.items())
        print(f"  {p.scenario.name:{width}s} {p.scenario.family:10s} {phases}")
    if comp is not None:
        per_phase = {phase: sum(p.trials.get(phase, 0) for p in plans)
                     for phase in ("demo", "tune", "final")}
        print(f"\ntrials per phase: {', '.join(f'{k} {v}' for k, v in per_phase.items())} "
              f"({total} in all)")
        print(textwrap.fill(
            f"tune counts each strategy's initial grid, {comp.grid_points} points x "
            f"{comp.tune_seeds} seed(s); a winner on an edge of its grid extends the grid, "
            "which adds points, trials and time", width=92, initial_indent="  ",
            subsequent_indent="  "))
    print()
    _print_estimate(cost.estimate(plans, args.workers))
    return 0


def _print_estimate(est) -> None:
    from lrstudy.spec import cost

    if est.seconds is None:
        print(f"estimated time: none: the size of model {', '.join(est.unknown_models)} is not "
              "known without building it; the study is "
              f"{est.trial_epochs:,} trial-epochs in {est.executions} notebook executions")
        return
    print(f"estimated time: {_duration(est.seconds)} with {est.workers} worker(s) at once")
    basis = (f"A rough estimate, from the study alone (nothing measured): {est.trial_epochs:,} "
             f"trial-epochs, whose arithmetic (each model's forward FLOPs per example, three "
             f"times that to train, over the training examples, plus a forward pass over the "
             f"validation set) comes to {_flop(est.flops)} at a conservative "
             f"{cost.FLOPS_PER_WORKER / 1e9:.0f} GFLOP/s per worker, plus "
             f"{cost.EXECUTION_S:.0f} s for each of the {est.executions} notebook executions "
             "(data, compiling, the runs' records)")
    if est.no_xla_steps:
        basis += (f"; the {est.no_xla_steps:,} trial-steps of budgets trained without XLA "
                  f"(jit_compile = false) add {cost.NO_XLA_STEP_S * 1e3:.1f} ms each and "
                  f"{cost.NO_XLA_ELEMENT_S * 1e9:.0f} ns per element their layers write per "
                  f"example of the batch, {_duration(est.no_xla_seconds).removeprefix('about ')}"
                  " in all (measured on the suite's Keras stacks)")
    basis += ". A slower or busier machine takes longer."
    print(textwrap.fill(basis, width=92, initial_indent="  ", subsequent_indent="  "))


def _duration(seconds: float) -> str:
    """About how long, rounded as a person would say it."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def _flop(flops: float) -> str:
    for scale, unit in ((1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP")):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops / 1e6:.3g} MFLOP"


def cmd_run(args) -> int:
    from lrstudy.execution import runner

    if args.max_seeds and not args.until_decided:
        raise BadInput("--max-seeds goes with --until-decided")
    if args.max_seeds and args.seeds and args.max_seeds < args.seeds:
        raise BadInput(f"--max-seeds {args.max_seeds} is below --seeds {args.seeds}")
    outcome = runner.run_study(
        args.study, scenario_names=_names(args.scenarios), families=_names(args.families),
        seeds=args.seeds,
        overrides=_overrides(args), workers=args.workers, executor=args.executor,
        tracking_uri=args.tracking_uri, ray_address=args.ray_address, progress=not args.quiet,
        grid_points=args.grid_points or 0, stack=args.stack, until_decided=args.until_decided,
        max_seeds=args.max_seeds)
    print(runner.format_outcome(outcome))
    if args.report and outcome.finished + outcome.skipped:
        from lrstudy.execution import report_run

        html = report_run.make_report(outcome.study, tracking_uri=args.tracking_uri,
                                      on_verdict=_print_verdict)
        print(f"report: {html}")
    if outcome.disk_full:
        print("lrstudy: error: the disk of the tracking store is full; what finished is kept: "
              "free some space and rerun the same command to finish the study", file=sys.stderr)
    elif outcome.failed:
        names = ", ".join(r.scenario for r in outcome.failed)
        print(f"lrstudy: {len(outcome.failed)} scenario(s) failed: {names}", file=sys.stderr)
    return EXIT_FAILED if outcome.failed else 0


def _print_verdict(text: str) -> None:
    paragraphs = [textwrap.fill(" ".join(p.replace("**", "").split()), width=92,
                                initial_indent="  ", subsequent_indent="  ")
                  for p in text.split("\n\n")]
    print("\nverdict:\n" + "\n\n".join(paragraphs))


def cmd_report(args) -> int:
    from lrstudy.execution import report_run
    from lrstudy.spec import study as scenarios
    from lrstudy.tracking import store as tracking

    tracking.check_store(args.tracking_uri)
    name = scenarios.load_study(args.study).name if args.study.endswith(".toml") else args.study
    out = Path(args.out) if args.out else report_run.report_dir(name, args.tracking_uri)
    try:
        path = report_run.make_report(name, tracking_uri=args.tracking_uri, out_dir=args.out,
                                      reference=args.reference, margin=args.margin,
                                      on_verdict=_print_verdict, mlflow_ui=args.mlflow_ui)
    except Exception as exc:
        papermill = sys.modules.get("papermill")  # not imported: not one of its errors
        if papermill is None or not isinstance(exc, papermill.PapermillExecutionError):
            raise
        # a cell raised: where, what, and the executed notebook that keeps the traceback
        what = " ".join(str(exc.evalue).split())[:300]
        print(f"lrstudy: error: the report notebook failed in cell {exc.exec_count}: "
              f"{exc.ename}: {what}; the executed notebook, with the traceback: "
              f"{out / report_run.NOTEBOOK}", file=sys.stderr)
        return EXIT_FAILED
    print(f"report: {path}")
    return 0


def cmd_find_lr(args) -> int:
    from lrstudy import models
    from lrstudy.data import datasets as data
    from lrstudy.execution import kernels, runner
    from lrstudy.lr import optimizers
    from lrstudy.tracking import store as tracking

    models.check(args.model)
    optimizers.check(args.optimizer)
    if args.start_lr >= args.end_lr:
        raise BadInput(f"--start-lr {args.start_lr} must be below --end-lr {args.end_lr}")
    data.check(args.dataset, train_size=args.train_size, val_size=args.val_size)
    uri = tracking.check_store(args.tracking_uri)
    out = runner.runs_dir(args.study, uri) / f"lr_range_test-{args.model}-{args.optimizer}.ipynb"
    runner.absolute_paths()
    kernels.execute(
        kernels.notebooks_dir() / "lr_range_test.ipynb", out,
        parameters={"study": args.study, "model": args.model, "optimizer": args.optimizer,
                    "dataset": args.dataset, "train_size": args.train_size or 0,
                    "val_size": args.val_size, "batch_size": args.batch_size,
                    "start_lr": args.start_lr, "end_lr": args.end_lr, "num_it": args.num_it,
                    "rule": args.rule, "tracking_uri": uri})
    client = tracking.client(uri)
    exp_id = tracking.experiment_id(args.study, uri, client)
    run = client.search_runs([exp_id], "tags.`lrstudy.kind` = 'lr_range_test'",
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    m = run.data.metrics
    for key in sorted(k for k in m if k.startswith("suggestion_")):
        print(f"{key[len('suggestion_'):]:10s} {m[key]:.3g}")
    print(f"suggested  {m.get('suggested_lr', float('nan')):.3g}  (rule {args.rule}); "
          f"bounds {m.get('finder_base_lr', float('nan')):.3g} .. "
          f"{m.get('finder_max_lr', float('nan')):.3g}")
    print(f"notebook: {out}\nrun: {run.info.run_id}")
    return 0


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cmd_ui(args) -> int:
    from lrstudy.tracking import store as tracking

    if args.host not in LOOPBACK and not args.allow_remote:
        raise BadInput(f"--host {args.host} would expose the MLflow UI beyond this machine; "
                       "add --allow-remote if you mean it (see README: basic-auth app)")
    if args.host not in LOOPBACK:
        print(f"warning: the MLflow UI on {args.host} has no authentication; anyone who can "
              "reach the port can read and change runs. See the README for "
              "`mlflow server --app-name basic-auth`.", file=sys.stderr)
    uri = tracking.check_store(args.tracking_uri)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    if tracking.is_local(uri):  # artifacts beside the database, as tracking.experiment_id does
        cmd += ["--default-artifact-root", tracking.artifact_root(uri).as_uri()]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    base = f"http://{shown}:{args.port}"
    print(f"MLflow UI on {base}/#/experiments?{TRAINING_VIEW} (store {uri})", file=sys.stderr)
    for name, exp_id, leaderboard in _studies(uri):
        print(f"  {name}: {ui_links.study_url(base, exp_id)}", file=sys.stderr)
        if leaderboard:
            print(f"    leaderboard: {ui_links.leaderboard_url(base, exp_id)}", file=sys.stderr)
    # MLflow's job runner (GenAI judges, trace rollups) starts eight more Python processes;
    # browsing training runs needs none of them. Set the variable to "true" to have them.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(sys.executable, cmd)
    return 0


def _studies(uri: str) -> list[tuple[str, str, bool]]:
    """(name, experiment id, whether it has a leaderboard) of the studies in the store, each
    study's leaderboard view saved on its experiment (none for a store not made yet)."""
    from lrstudy.report.frames import missing_sqlite
    from lrstudy.tracking import store as tracking

    if missing_sqlite(uri):
        return []
    client = tracking.client(uri)
    return sorted((e.name, e.experiment_id, _leaderboard(client, e))
                  for e in client.search_experiments() if e.name != "Default")


def _leaderboard(client, experiment) -> bool:
    """Save the study's leaderboard view; a store that refuses the write (read-only) is
    browsed without it."""
    from mlflow.exceptions import MlflowException

    try:
        return ui_links.save_leaderboard(client, experiment.experiment_id)
    except MlflowException as exc:
        print(f"warning: no leaderboard for {experiment.name}: {one_line(exc, with_type=False)}",
              file=sys.stderr)
        return False


COMMANDS = {"run": cmd_run, "report": cmd_report, "find-lr": cmd_find_lr, "list": cmd_list,
            "check": cmd_check, "ui": cmd_ui}


def main(argv=None) -> int:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no INFO lines in the progress
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `lrstudy`: what it can do, as a usage error
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    from lrstudy import interrupts
    from lrstudy.data import datasets as data
    from lrstudy.execution import notebook_params as params
    from lrstudy.execution import runner
    from lrstudy.spec import study as scenarios
    from lrstudy.tracking import store as tracking

    runner.absolute_paths()
    try:
        with interrupts.stop_on_signals():
            code = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, where a reader gone away is caught (not at exit)
        return code
    except (BadInput, scenarios.SpecError, data.DataError, tracking.StoreError,
            params.ParameterError, ValueError) as exc:  # ValueError: a name or number
        print(f"lrstudy: error: {one_line(exc, with_type=False)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except runner.StoreLost as exc:
        print(f"lrstudy: error: {exc}", file=sys.stderr)
        return EXIT_STORE_LOST
    except KeyboardInterrupt:
        print("lrstudy: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`lrstudy list | head`): stop quietly,
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing at exit
        return EXIT_FAILED




def process_main() -> int:
    """``lrstudy`` as a process of its own (the console script, ``python -m lrstudy``):
    :func:`main`, then every object it leaves frozen out of the garbage collector's reach
    (:func:`gc.freeze`) before the interpreter exits. The exit's full collections would
    otherwise walk all of them (MLflow's, SQLAlchemy's, pandas's, jupyter_client's) after the
    work is done; nothing is lost by it: the atexit hooks (the kept kernels' stop, temporary
    files) still run, and the objects are still released as the modules are cleared. Not in
    :func:`main`: a caller in its own process keeps collecting."""
    import gc

    code = main()
    gc.freeze()
    return code
