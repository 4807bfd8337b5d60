"""The grammar of the ``lrstudy`` command line: its commands and options, their help (each
option's default after it) and their checks, and its exit statuses. A bad value, a mistyped
command or option, is one line on stderr and exit status 2, with one suggestion for a mistyped
name; what each command does is :mod:`lrstudy.cli`'s.
"""

from __future__ import annotations

import argparse
import math
import sys

from lrstudy import checks

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_STORE_LOST = 3
EXIT_INTERRUPTED = 130
MAX_WORKERS = 256



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

    def _check_value(self, action, value):
        # argparse's check of ``choices`` (commands included), with one suggestion for a
        # mistyped name rather than only the list
        if action.choices is not None and value not in action.choices:
            from lrstudy.spec.study import suggest

            raise argparse.ArgumentError(
                action, f"invalid choice: {suggest(value, action.choices)}; choose from "
                        f"{', '.join(map(str, action.choices))}")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                     argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help, except where there is none to show (no value,
    an off flag, an empty list): that help says what leaving the option out means."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == "":
            return action.help
        return super()._get_help_string(action)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("lrstudy")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


EXIT_STATUS = f"""exit status:
  0    done
  {EXIT_FAILED}    a scenario failed (named, with its error)
  {EXIT_BAD_INPUT}    bad input: one line on stderr, nothing trained, nothing recorded
  {EXIT_STORE_LOST}    the tracking store went away mid-study (rerun to resume)
  {EXIT_INTERRUPTED}  interrupted: Ctrl-C or SIGTERM (rerun to resume)"""
TRACKING_URI_HELP = ("the MLflow tracking store (absent: $MLFLOW_TRACKING_URI, else the "
                     "project's mlruns/mlflow.db)")


def build_parser() -> argparse.ArgumentParser:
    from lrstudy import models
    from lrstudy.data import datasets
    from lrstudy.lr import optimizers, suggestion_rules
    from lrstudy.spec import study as scenarios
    from lrstudy.spec.resolve import FINDER_DEFAULTS

    study_help = f"a study ({', '.join(scenarios.study_names())}) or a study file (.toml)"
    families_help = ("comma-separated families, only their scenarios: "
                     f"{', '.join(scenarios.FAMILIES)} (absent: every family)")
    scenarios_help = ("comma-separated scenario names, `lrstudy list` shows them (absent: the "
                      "study's own)")

    parser = _Parser(prog="lrstudy", formatter_class=_HelpFormatter, epilog=EXIT_STATUS,
                     description="Which learning-rate strategy should you use? lrstudy runs, "
                                 "tracks and reports\nstudies of learning-rate strategies.")
    parser.add_argument("--version", action="version", version=f"lrstudy {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser,
                                title="commands (`lrstudy COMMAND --help` for its options)")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary,
                              formatter_class=_HelpFormatter)

    run = command("run", "run a study (resumable: a rerun skips finished trials)")
    run.add_argument("--study", metavar="NAME|FILE", default="seeds", help=study_help)
    run.add_argument("--scenarios", metavar="A,B", default="", help=scenarios_help)
    run.add_argument("--families", metavar="F,G", default="", help=families_help)
    run.add_argument("--seeds", metavar="N", type=_positive_int,
                     help="seeds per scenario; in a competition, final seeds per strategy "
                          "(absent: the study's)")
    run.add_argument("--until-decided", action="store_true",
                     help="add final seeds, 5 at a time, until every comparison with the "
                          "reference is decided or --max-seeds is reached (a group-sequential "
                          "design whose boundaries keep the error rate at 5%% across looks)")
    run.add_argument("--max-seeds", metavar="N", type=_positive_int,
                     help="with --until-decided: the most final seeds per strategy (absent: 30)")
    run.add_argument("--grid-points", metavar="K", type=_positive_int,
                     help="points of each strategy's LR grid, in a competition (absent: the "
                          "study's)")
    run.add_argument("--epochs", metavar="N", type=_positive_int,
                     help="epochs of every scenario (absent: the study's budget)")
    run.add_argument("--train-size", metavar="N", type=_positive_int,
                     help="training examples of every scenario (absent: the study's budget)")
    run.add_argument("--batch-size", metavar="N", type=_positive_int,
                     help="batch size of every scenario (absent: the study's budget)")
    run.add_argument("--workers", metavar="N", type=_workers, default=2,
                     help="notebook executions at once")
    run.add_argument("--stack", metavar="auto|off|N", type=_stack, default="auto",
                     help="trials trained together as one program: auto (as many as fit the "
                          "memory), off, or a number")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="where the notebooks run: this machine, or a Ray cluster")
    run.add_argument("--ray-address", metavar="ADDRESS",
                     help="an existing Ray cluster (absent: a private one started here)")
    run.add_argument("--tracking-uri", metavar="URI", help=TRACKING_URI_HELP)
    run.add_argument("--report", action="store_true", help="write the summary report after")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    rep = command("report", "execute the summary notebook, write the verdict back to MLflow, "
                            "export HTML")
    rep.add_argument("--study", metavar="NAME|FILE", default="seeds",
                     help="the study to report on: " + study_help)
    rep.add_argument("--tracking-uri", metavar="URI", help=TRACKING_URI_HELP)
    rep.add_argument("--out", metavar="DIR",
                     help="output directory (absent: reports/<store>/<study>)")
    rep.add_argument("--reference", metavar="SCENARIO",
                     help="compare every strategy with this scenario (absent: the study's)")
    rep.add_argument("--margin", metavar="M", type=_margin,
                     help="practical-equivalence margin in accuracy, 0.003 = 0.3 points "
                          "(absent: the study's)")
    rep.add_argument("--mlflow-ui", metavar="URL", default="http://127.0.0.1:5000",
                     help="the MLflow UI the report's links open (where `lrstudy ui` or your "
                          "`mlflow server` serves this store)")

    find = command("find-lr", "LR range test for a model, an optimizer and data; prints every "
                              "rule's suggestion")
    find.add_argument("--model", metavar="M", default="mlp128",
                      help=f"a built-in model ({', '.join(models.MODELS)}) or "
                           "package.module:function")
    find.add_argument("--optimizer", metavar="O", default="sgd",
                      choices=tuple(optimizers.OPTIMIZERS),
                      help="the optimizer whose LR is swept: "
                           f"{', '.join(optimizers.OPTIMIZERS)}")
    find.add_argument("--dataset", default="fashion_mnist", choices=datasets.DATASETS,
                      help="the data")
    find.add_argument("--train-size", metavar="N", type=_positive_int,
                      help="training examples (absent: all but the validation set)")
    find.add_argument("--val-size", metavar="N", type=_positive_int, default=10000,
                      help="validation examples held out")
    find.add_argument("--batch-size", metavar="N", type=_positive_int, default=128,
                      help="batch size")
    find.add_argument("--start-lr", metavar="LR", type=_positive_float,
                      default=FINDER_DEFAULTS["start_lr"], help="the sweep's first LR")
    find.add_argument("--end-lr", metavar="LR", type=_positive_float,
                      default=FINDER_DEFAULTS["end_lr"], help="the sweep's last LR")
    find.add_argument("--num-it", metavar="N", type=_positive_int,
                      default=FINDER_DEFAULTS["num_it"], help="steps of the sweep")
    find.add_argument("--rule", default=FINDER_DEFAULTS["rule"],
                      choices=tuple(suggestion_rules.RULES),
                      help="the rule whose suggestion is recorded as suggested_lr")
    find.add_argument("--study", metavar="NAME", default="lr-range-test",
                      help="the experiment to record in")
    find.add_argument("--tracking-uri", metavar="URI", help=TRACKING_URI_HELP)

    command("list", "the studies and scenarios there are")

    check = command("check", "a study's plan, checked, without running it: its scenarios, "
                             "trials per phase, a rough time")
    check.add_argument("--study", metavar="NAME|FILE", default="seeds", help=study_help)
    check.add_argument("--scenarios", metavar="A,B", default="", help=scenarios_help)
    check.add_argument("--families", metavar="F,G", default="", help=families_help)
    check.add_argument("--workers", metavar="N", type=_workers, default=2,
                       help="notebook executions at once, as for `run` (the time estimate "
                            "divides the work among them)")

    ui = command("ui", "the MLflow UI on the default store, with a link per study and its "
                       "leaderboard")
    ui.add_argument("--host", metavar="HOST", default="127.0.0.1",
                    help="the address to listen on")
    ui.add_argument("--port", metavar="PORT", type=_positive_int, default=5000,
                    help="the port to listen on")
    ui.add_argument("--allow-remote", action="store_true",
                    help="needed to bind anything but a loopback address")
    ui.add_argument("--tracking-uri", metavar="URI", help=TRACKING_URI_HELP)
    ui.add_argument("--workers", metavar="N", type=_positive_int, default=1,
                    help="server worker processes (MLflow's 4 double the start-up time on a "
                         "small machine and are not needed by one person)")
    return parser
