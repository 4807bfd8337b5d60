"""``python -m lrstudy`` / ``lrstudy``: run, report, find-lr, list, ui.

Bad input (unknown names, invalid numbers, malformed study files, missing data, a store that
cannot be written or reached) ends with one line on stderr and exit status 2, before any
training and before anything is recorded, and before TensorFlow is imported: every check
reads names and numbers from data. A tracking store lost mid-study ends with one line and
exit status 3; Ctrl-C or SIGTERM with 130.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap

from lrstudy import checks
from lrstudy.errors import one_line

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_STORE_LOST = 3
EXIT_INTERRUPTED = 130
MAX_WORKERS = 256


class BadInput(Exception):
    pass


def _number(convert, ok, requirement: str):
    """An argparse type: ``convert(text)`` (``int`` or ``float``), refused in one line unless
    ``ok(value)``, naming the ``requirement``."""
    kind = "an integer" if convert is int else "a number"

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    return parse


_margin = _number(float, lambda v: 0 <= v < 1,
                  "an accuracy difference in [0, 1) (0.003 is 0.3 points)")
_positive_int = _number(int, lambda v: v > 0, "> 0")
_positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "finite and > 0")


def _stack(text: str) -> str:
    try:
        return str(checks.stack(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _workers(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_WORKERS}, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own status for usage errors)
        sys.stderr.write(f"lrstudy: error: {message}\n")
        sys.exit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    from lrstudy.spec.resolve import FINDER_DEFAULTS

    parser = _Parser(prog="lrstudy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a study (resumable)")
    run.add_argument("--study", default="seeds", help="a study name or a .toml file")
    run.add_argument("--scenarios", default="", help="comma-separated scenario names")
    run.add_argument("--families", default="",
                     help="comma-separated families: only their scenarios (e.g. decay,warmup)")
    run.add_argument("--seeds", type=_positive_int,
                     help="seeds per scenario (in a competition: final seeds per strategy)")
    run.add_argument("--until-decided", action="store_true",
                     help="add final seeds, 5 at a time, until every comparison with the "
                          "reference is decided or --max-seeds is reached (a group-sequential "
                          "design whose boundaries keep the error rate at 5%% across looks)")
    run.add_argument("--max-seeds", type=_positive_int, default=None,
                     help="with --until-decided: the most final seeds per strategy (default 30)")
    run.add_argument("--grid-points", type=_positive_int, default=0,
                     help="points of each strategy's LR grid (a competition; default: the study's)")
    run.add_argument("--epochs", type=_positive_int)
    run.add_argument("--train-size", type=_positive_int)
    run.add_argument("--batch-size", type=_positive_int)
    run.add_argument("--workers", type=_workers, default=2,
                     help="notebook executions at once (default 2)")
    run.add_argument("--stack", type=_stack, default="auto",
                     help="trials trained together as one program: auto (as many as fit the "
                          "memory), off, or a number")
    run.add_argument("--executor", choices=("local", "ray"), default="local")
    run.add_argument("--ray-address", default=None, help="an existing Ray cluster")
    run.add_argument("--tracking-uri", default=None)
    run.add_argument("--report", action="store_true", help="write the summary report after")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    rep = sub.add_parser("report", help="execute the summary notebook, export HTML")
    rep.add_argument("--study", default="seeds")
    rep.add_argument("--tracking-uri", default=None)
    rep.add_argument("--out", default=None, help="output directory")
    rep.add_argument("--reference", default=None,
                     help="compare every strategy with this scenario (default: the study's)")
    rep.add_argument("--margin", type=_margin, default=None,
                     help="practical-equivalence margin in accuracy, 0.003 = 0.3 points "
                          "(default: the study's)")

    find = sub.add_parser("find-lr", help="LR range test for a model/optimizer/data")
    find.add_argument("--model", default="mlp128")
    find.add_argument("--optimizer", default="sgd")
    find.add_argument("--dataset", default="fashion_mnist")
    find.add_argument("--train-size", type=_positive_int, default=None)
    find.add_argument("--val-size", type=_positive_int, default=10000)
    find.add_argument("--batch-size", type=_positive_int, default=128)
    find.add_argument("--start-lr", type=_positive_float, default=FINDER_DEFAULTS["start_lr"])
    find.add_argument("--end-lr", type=_positive_float, default=FINDER_DEFAULTS["end_lr"])
    find.add_argument("--num-it", type=_positive_int, default=FINDER_DEFAULTS["num_it"])
    find.add_argument("--rule", default=FINDER_DEFAULTS["rule"])
    find.add_argument("--study", default="lr-range-test", help="the experiment to record in")
    find.add_argument("--tracking-uri", default=None)

    sub.add_parser("list", help="the studies and scenarios there are")

    check = sub.add_parser("check", help="check a study (file) without running it")
    check.add_argument("--study", default="seeds", help="a study name or a .toml file")
    check.add_argument("--scenarios", default="", help="comma-separated scenario names")
    check.add_argument("--families", default="", help="comma-separated families")

    ui = sub.add_parser("ui", help="the MLflow UI on the default store")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=_positive_int, default=5000)
    ui.add_argument("--allow-remote", action="store_true",
                    help="needed to bind anything but a loopback address")
    ui.add_argument("--tracking-uri", default=None)
    ui.add_argument("--workers", type=_positive_int, default=1,
                    help="server worker processes (default 1: MLflow's 4 double the start-up "
                         "time on a small machine and are not needed by one person)")
    return parser


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
    from lrstudy.execution import runner
    from lrstudy.spec import study as scenarios

    study = scenarios.load_study(args.study)
    selected, merged = runner.distinct(study.select(_names(args.scenarios),
                                                    _names(args.families)))
    scenarios.validate(study, selected)
    budgets = {sc.budget_label for sc in selected}
    comp = study.competition
    if comp is None:
        print(f"study {study.name}: {len(selected)} scenarios x {study.seeds} seeds = "
              f"{len(selected) * study.seeds} trials on {len(budgets)} budget(s)")
    else:
        roles = [comp.role(sc) for sc in selected]
        per = {"demo": comp.demo_seeds, "finder": study.seeds,
               "tuned": comp.grid_points * comp.tune_seeds + study.seeds}
        print(f"study {study.name}: a competition of {roles.count('tuned')} tuned strategies "
              f"({comp.grid_points} grid points x {comp.tune_seeds} tuning seed(s), then "
              f"{study.seeds} final seeds), {roles.count('finder')} fed by the LR range test, "
              f"{roles.count('demo')} demonstrations = {sum(per[r] for r in roles)} trials on "
              f"{len(budgets)} budget(s); reference {study.reference or '(none)'}")
    for label in sorted(budgets):
        print(f"  {label}")
    for dup, first in sorted(merged.items()):
        print(f"  {dup}: the same trials as {first}")
    return 0


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
        grid_points=args.grid_points, stack=args.stack, until_decided=args.until_decided,
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
    path = report_run.make_report(name, tracking_uri=args.tracking_uri, out_dir=args.out,
                                  reference=args.reference, margin=args.margin,
                                  on_verdict=_print_verdict)
    print(f"report: {path}")
    return 0


def cmd_find_lr(args) -> int:
    from lrstudy import models
    from lrstudy.data import datasets as data
    from lrstudy.execution import kernels, runner
    from lrstudy.lr import optimizers
    from lrstudy.lr import range_test as finder
    from lrstudy.tracking import store as tracking

    models.check(args.model)
    optimizers.check(args.optimizer)
    if args.rule not in finder.RULES:
        raise BadInput(f"unknown rule {args.rule!r}; known: {', '.join(finder.RULES)}")
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
#: MLflow 3.17's UI opens an experiment on its GenAI page unless the link asks for training
#: runs (it ignores the experiment's ``mlflow.experimentKind`` tag, which we set anyway)
TRAINING_VIEW = "workflowType=machine_learning"


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
    base = f"http://{shown}:{args.port}/#/experiments"
    print(f"MLflow UI on {base}?{TRAINING_VIEW} (store {uri})", file=sys.stderr)
    for name, exp_id in _studies(uri):  # each study opens on its runs, not the GenAI page
        print(f"  {name}: {base}/{exp_id}?{TRAINING_VIEW}", file=sys.stderr)
    # MLflow's job runner (GenAI judges, trace rollups) starts eight more Python processes;
    # browsing training runs needs none of them. Set the variable to "true" to have them.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(sys.executable, cmd)
    return 0


def _studies(uri: str) -> list[tuple[str, str]]:
    """(name, experiment id) of the studies in the store (none for a store not made yet)."""
    from lrstudy.report.frames import missing_sqlite
    from lrstudy.tracking import store as tracking

    if missing_sqlite(uri):
        return []
    experiments = tracking.client(uri).search_experiments()
    return sorted((e.name, e.experiment_id) for e in experiments if e.name != "Default")


COMMANDS = {"run": cmd_run, "report": cmd_report, "find-lr": cmd_find_lr, "list": cmd_list,
            "check": cmd_check, "ui": cmd_ui}


def main(argv=None) -> int:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no INFO lines in the progress
    args = build_parser().parse_args(argv)
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


