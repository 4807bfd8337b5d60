"""The command line's conventions: usage on a bare ``lrstudy``, ``--version``, every option's
help with its default, choices in ``--help``, one suggestion for a mistyped name, and
``lrstudy check``'s plan (scenarios, trials per phase, a rough time) without TensorFlow."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
from importlib import metadata

import pytest
from conftest import ROOT

from lrstudy import cli, cli_parser
from lrstudy.spec import cost
from lrstudy.spec import study as scenarios


def lrstudy(*args) -> subprocess.CompletedProcess:
    """The real command, ``python -m lrstudy ARGS``."""
    return subprocess.run([sys.executable, "-m", "lrstudy", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def in_process(*args) -> tuple[int, str, str]:
    """``cli.main(ARGS)`` in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(list(args))
        except SystemExit as exc:  # argparse: usage errors, --help, --version
            status = exc.code
    return status, out.getvalue(), err.getvalue()


def commands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = (a for a in cli_parser.build_parser()._actions
              if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


# ---- usage, version, help -------------------------------------------------------------------

def test_bare_lrstudy_prints_the_full_usage_to_stderr_and_exits_2():
    proc = lrstudy()
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("usage: lrstudy")
    for name in commands():  # every command, each with its summary
        assert f"    {name} " in proc.stderr, name
    assert "exit status:" in proc.stderr and "130" in proc.stderr


def test_version_names_the_installed_package():
    proc = lrstudy("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"lrstudy {metadata.version('lrstudy')}\n"


FROZEN_AT_EXIT = """
import gc, sys
from lrstudy import cli
sys.argv = ["lrstudy", *sys.argv[1:]]
code = cli.process_main()
print(gc.get_freeze_count(), file=sys.stderr)
sys.exit(code)
"""


def test_the_command_freezes_what_it_leaves_before_its_exit():
    """The process's entry points (the console script, ``python -m lrstudy``) are
    ``process_main``: the command, then its objects frozen, so the interpreter's exit does not
    walk them with its full collections; its status is the command's."""
    (script,) = metadata.entry_points(group="console_scripts", name="lrstudy")
    assert script.value == "lrstudy.cli:process_main"
    assert "process_main()" in (ROOT / "lrstudy" / "__main__.py").read_text()
    proc = subprocess.run([sys.executable, "-c", FROZEN_AT_EXIT, "list"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "fixed-baseline" in proc.stdout
    assert int(proc.stderr.strip().splitlines()[-1]) > 10_000  # what its imports made
    bad = subprocess.run([sys.executable, "-c", FROZEN_AT_EXIT, "run", "--study", "nope"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2, bad.stderr

@pytest.mark.parametrize("name", sorted(commands()))
def test_every_option_has_help_and_shows_its_default(name):
    parser = commands()[name]
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        option = action.option_strings[0]
        assert action.help and action.help.strip(), f"{name} {option} has no help"
        shown = action.default not in (None, False, "")
        if shown:
            assert f"(default: {action.default})" in " ".join(text.split()), option
        elif not isinstance(action, argparse._StoreTrueAction):  # says what absent means
            assert "(absent:" in action.help, f"{name} {option}: {action.help!r}"


@pytest.mark.parametrize("name", sorted(commands()))
def test_choices_are_listed_in_help(name):
    parser = commands()[name]
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        for choice in action.choices or ():
            assert choice in text, f"{name} {action.option_strings}: {choice}"


def test_find_lr_rules_are_the_range_tests_rules():
    from lrstudy.lr import suggestion_rules
    from lrstudy.spec.resolve import FINDER_DEFAULTS

    (rule,) = (a for a in commands()["find-lr"]._actions if "--rule" in a.option_strings)
    assert tuple(rule.choices) == tuple(suggestion_rules.RULES)
    assert rule.default == FINDER_DEFAULTS["rule"]


# ---- a mistyped name: one line, one suggestion, where to see them all ---------------------

MISTYPED = {
    "command": (["rnu"], "'rnu' (did you mean 'run'?)"),
    "rule": (["find-lr", "--rule", "valey"], "'valey' (did you mean 'valley'?)"),
    "optimizer": (["find-lr", "--optimizer", "adm"], "'adm' (did you mean 'adam'?)"),
    "executor": (["run", "--executor", "rya"], "'rya' (did you mean 'ray'?)"),
    "study": (["check", "--study", "seed"], "unknown study 'seed' (did you mean 'seeds'?)"),
    "scenario": (["check", "--scenarios", "warmup-cosin"],
                 "no scenario 'warmup-cosin' (did you mean 'warmup-cosine'?)"),
    "family": (["check", "--families", "decy"], "unknown family 'decy' (did you mean 'decay'?)"),
}


@pytest.mark.parametrize("case", sorted(MISTYPED))
def test_a_mistyped_name_gets_one_line_with_a_suggestion(case):
    args, expected = MISTYPED[case]
    status, out, err = in_process(*args)
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrstudy: error: "), err
    assert expected in lines[0], lines[0]


@pytest.mark.parametrize("args, known", [
    (["check", "--scenarios", "warmup-cosin"], scenarios.catalogue),
    (["check", "--study", "seed"], scenarios.study_names)], ids=["scenario", "study"])
def test_a_mistyped_name_points_to_the_list_instead_of_dumping_it(args, known):
    status, out, err = in_process(*args)
    assert status == 2
    assert "`lrstudy list`" in err
    assert sum(f"'{n}'" in err for n in known()) == 1, err  # the suggestion alone


def test_a_mistyped_scenario_in_a_study_file_gets_a_suggestion(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('scenarios = ["fixed-baselin"]\n')
    status, out, err = in_process("check", "--study", str(path))
    assert status == 2
    assert "unknown scenario 'fixed-baselin' (did you mean 'fixed-baseline'?)" in err
    assert str(path) in err and len(err.splitlines()) == 1


def test_a_name_close_to_nothing_gets_no_suggestion():
    status, out, err = in_process("check", "--scenarios", "qqqqqqqq")
    assert status == 2 and "'qqqqqqqq';" in err and "did you mean" not in err


# ---- lrstudy check: the plan and a rough time --------------------------------------------

def test_check_lists_the_scenarios_and_the_trials_per_phase():
    status, out, err = in_process("check", "--study", "seeds")
    assert status == 0, err
    study = scenarios.load_study("seeds")
    comp = study.competition
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    for sc in study.scenarios.values():
        role = comp.role(sc)
        expected = {"demo": f"demo {comp.demo_seeds}",
                    "tuned": f"tune {comp.grid_points * comp.tune_seeds}, final {study.seeds}",
                    "finder": f"final {study.seeds}"}[role]
        assert lines[sc.name].split()[1:] == [sc.family, *expected.split()], lines[sc.name]
    roles = [comp.role(sc) for sc in study.scenarios.values()]
    demo = roles.count("demo") * comp.demo_seeds
    tune = roles.count("tuned") * comp.grid_points * comp.tune_seeds
    final = (roles.count("tuned") + roles.count("finder")) * study.seeds
    assert (f"trials per phase: demo {demo}, tune {tune}, final {final} "
            f"({demo + tune + final} in all)") in out
    assert "a winner on an edge of its grid extends the grid, which adds points" in " ".join(
        out.split())


def test_check_counts_what_the_runner_would_plan_on_an_empty_store(tmp_path):
    from lrstudy.execution import study_plan
    from lrstudy.tracking import store as tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    exp_id = tracking.experiment_id("seeds", uri, client)
    study = scenarios.load_study("seeds")
    selected, _ = study_plan.distinct(study.select(None))
    planned = study_plan.plan(selected, study.seeds, study.competition, client, exp_id)
    counted = cost.plan(study.competition, selected, study.seeds)
    assert sum(p.total for p in counted) == planned.total


def test_check_states_a_rough_estimate_and_its_basis():
    status, out, err = in_process("check", "--study", "smoke", "--workers", "2")
    assert status == 0, err
    study = scenarios.load_study("smoke")
    sc = next(iter(study.scenarios.values()))
    b = sc.budget
    _, forward = cost.model_cost("mlp128", (28, 28), 10)
    trials = len(study.scenarios) * study.seeds
    flops = trials * b["epochs"] * forward * (3 * sc.train_size + b["val_size"])
    seconds = (flops / cost.FLOPS_PER_WORKER + len(study.scenarios) * cost.EXECUTION_S) / 2
    text = " ".join(out.split())
    assert f"estimated time: about {round(seconds)} s with 2 worker(s) at once" in text
    assert "A rough estimate, from the study alone (nothing measured)" in text
    assert f"{trials * b['epochs']} trial-epochs" in text
    assert f"{cost.FLOPS_PER_WORKER / 1e9:.0f} GFLOP/s per worker" in text
    assert f"{cost.EXECUTION_S:.0f} s for each of the {len(study.scenarios)} notebook" in text


def test_the_estimate_is_never_below_the_longest_scenario():
    """A scenario's phases run one after the other: more workers do not shorten it."""
    study = scenarios.load_study("seeds")
    (sc,) = study.select(["fixed-baseline"])
    plans = cost.plan(study.competition, [sc], study.seeds)
    one, many = cost.estimate(plans, 1, cpus=64), cost.estimate(plans, 64, cpus=64)
    assert many.workers == 1 and many.seconds == one.seconds
    both = cost.plan(study.competition, study.select(["fixed-baseline", "fixed-sgd"]),
                     study.seeds)
    assert cost.estimate(both, 2, cpus=2).seconds == pytest.approx(one.seconds)


def test_a_user_model_gets_no_time_but_says_why(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))  # the model module on the path
    (tmp_path / "my_models.py").write_text("def build(input_shape, num_classes):\n    pass\n")
    path = tmp_path / "mine.toml"
    path.write_text('scenarios = ["fixed-baseline"]\nseeds = 2\n[budget]\n'
                    'model = "my_models:build"\ndataset = "synthetic"\nval_size = 200\n')
    status, out, err = in_process("check", "--study", str(path))
    assert status == 0, err
    assert ("estimated time: none: the size of model my_models:build is not known without "
            "building it") in out


SHAPES = [((28, 28), 10), ((20,), 2), ((32, 32, 3), 5)]
MLP = ("mlp128", "mlp512_200", "mlp_dropout")


@pytest.mark.parametrize("model, shape, classes", [
    *[(model, shape, classes) for model in ("mlp128", "mlp512_200", "mlp_dropout", "cnn",
                                            "convnet_bn")
      for shape, classes in SHAPES if model in MLP or len(shape) > 1],  # convnets: images
    ("transformer_tiny", (16, 16), 16), ("transformer_tiny", (8, 20), 3)])
def test_the_parameter_count_is_keras_own(model, shape, classes):
    """The cost's layer arithmetic against the model Keras builds."""
    from lrstudy import models

    built, _ = models.build(model, shape, classes)
    assert cost.model_cost(model, shape, classes)[0] == built.count_params()


def test_the_built_in_datasets_shapes_are_the_loaders():
    from lrstudy.data import datasets

    ds = datasets.load("synthetic", train_size=100, val_size=50)
    assert cost.INPUTS["synthetic"] == (ds.input_shape, ds.num_classes)
    assert set(cost.INPUTS) == set(datasets.DATASETS)


CHECK_IMPORTS = """
import json, sys
from lrstudy import cli
status = cli.main(["check", "--study", "seeds"])
print(json.dumps([status, sorted(m for m in {heavy!r} if m in sys.modules)]))
"""


def test_check_imports_neither_tensorflow_nor_mlflow():
    heavy = ["tensorflow", "keras", "mlflow", "papermill", "ray"]
    proc = subprocess.run([sys.executable, "-c", CHECK_IMPORTS.format(heavy=heavy)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    status, imported = json.loads(proc.stdout.splitlines()[-1])
    assert status == 0 and imported == []


def test_a_report_notebook_that_fails_is_one_line_naming_the_cell_and_the_record(
        tmp_path, monkeypatch, capsys):
    """Not a traceback: the cell, the error, where the executed notebook keeps the rest."""
    import papermill

    from lrstudy import cli
    from lrstudy.execution import report_run

    def fail(*args, **kwargs):
        raise papermill.PapermillExecutionError(
            cell_index=7, exec_count=9, source="report.plot_tuning(grid)", ename="ValueError",
            evalue="Data cannot be log-scaled\nbecause all values are <= 0.", traceback=[])

    monkeypatch.setattr(report_run, "make_report", fail)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = cli.main(["report", "--study", "smoke", "--tracking-uri", store, "--out",
                     str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert err == ("lrstudy: error: the report notebook failed in cell 9: ValueError: Data "
                   "cannot be log-scaled because all values are <= 0.; the executed notebook, "
                   f"with the traceback: {tmp_path / 'out' / 'summary.ipynb'}")
