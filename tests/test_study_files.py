"""Study files of any shape: either a valid study or one line on stderr and exit status 2,
never a traceback. Hand-picked shapes first, then a property-based fuzz (Hypothesis) of
generated files: tables where scalars belong and the reverse, arrays of tables, strings for
numbers, TOML's ``nan`` and ``inf``, huge numbers, dates, empty and binary files."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import math
from pathlib import Path

import pytest
import tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrstudy import cli

HEAD = """scenarios = ["x"]
[budget]
model = "mlp128"
dataset = "synthetic"
val_size = 200
batch_size = 32
epochs = 1
"""
SCENARIO_X = '\n[scenario.x]\nfamily = "fixed"\noptimizer = "adam"\nlearning_rate = 0.001\n'


def check(path: Path) -> tuple[int, str, str]:
    """``lrstudy check --study PATH`` in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(["check", "--study", str(path)])
        except SystemExit as exc:  # argparse
            status = exc.code
    return status, out.getvalue(), err.getvalue()


def assert_valid_or_one_line(path: Path) -> int:
    status, out, err = check(path)
    assert status in (0, 2), (status, err)
    if status == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("lrstudy: error: "), err
    else:
        assert err == "" and out.startswith("study "), (out, err)
    return status


SHAPES = {
    "array of scenario tables": HEAD + '\n[[scenario]]\nname = "x"\nfamily = "fixed"\n'
                                       'learning_rate = 0.001\n',
    "array of budget tables": '[[budget]]\nepochs = 2\n',
    "scalar where a table belongs": HEAD.replace("[budget]", "budget = 3\n[budgets.b]"),
    "scenario as a string": HEAD + '\nscenario = "x"\n',
    "scenario x as a number": HEAD + '\n[scenario]\nx = 1\n',
    "string where a number belongs": HEAD.replace("epochs = 1", 'epochs = "five"'),
    "nan target": HEAD + "target = nan\n" + SCENARIO_X,
    "inf learning rate": HEAD + SCENARIO_X.replace("0.001", "inf"),
    "nan learning rate": HEAD + SCENARIO_X.replace("0.001", "nan"),
    "epochs 10^12": HEAD.replace("epochs = 1", "epochs = 1000000000000") + SCENARIO_X,
    "seeds 10^12": "seeds = 1000000000000\n" + HEAD + SCENARIO_X,
    "negative seeds": "seeds = -1\n" + HEAD + SCENARIO_X,
    "a date for a number": HEAD.replace("epochs = 1", "epochs = 1979-05-27") + SCENARIO_X,
    "optimizer args as a list": HEAD + SCENARIO_X + "optimizer_args = [1, 2]\n",
    "optimizer arg as a string": HEAD + SCENARIO_X + 'optimizer_args = { beta_1 = "x" }\n',
    "schedule as a string": HEAD + '\n[scenario.x]\nfamily = "fixed"\nschedule = "cosine"\n',
    "schedule without a name": HEAD + '\n[scenario.x]\nfamily = "fixed"\nschedule = { a = 1 }\n',
    "plateau as a number": HEAD + SCENARIO_X + "plateau = 3\n",
    "finder as a list": HEAD + SCENARIO_X + "finder = [1]\n",
    "families as a list": HEAD + SCENARIO_X + "families = [1]\n",
    "a family naming a number": HEAD + SCENARIO_X + "[families]\nfixed = 3\n",
    "sweep with a string": 'description = "s"\n[sweep]\nmin = "a"\n',
    "sweep of 10^9 points": '[sweep]\npoints = 1000000000\n',
    "scenarios as a number": HEAD.replace('scenarios = ["x"]', "scenarios = 3") + SCENARIO_X,
    "scenarios with a number": HEAD.replace('scenarios = ["x"]', "scenarios = [1]") + SCENARIO_X,
    "name as a number": "name = 3\n" + HEAD + SCENARIO_X,
    "description as a table": "description = { a = 1 }\n" + HEAD + SCENARIO_X,
    "empty file": "",
    "not toml": "this is [not toml\n",
    "duplicate key": HEAD + "epochs = 2\n" + SCENARIO_X,
}


@pytest.mark.parametrize("text", SHAPES.values(), ids=SHAPES.keys())
def test_a_study_file_of_any_shape_is_valid_or_one_line(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text)
    assert_valid_or_one_line(path)


def test_arrays_of_scenario_tables_are_a_valid_form(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SHAPES["array of scenario tables"])
    status, out, err = check(path)
    assert status == 0 and "1 scenarios x 3 seeds" in out, err


@pytest.mark.parametrize("content", [b"\x00\xff\xfe garbage \x80\x81", b"\x1f\x8b\x08\x00"])
def test_binary_garbage_is_refused(tmp_path, content):
    path = tmp_path / "s.toml"
    path.write_bytes(content)
    assert assert_valid_or_one_line(path) == 2


def test_a_directory_is_refused(tmp_path):
    (tmp_path / "d.toml").mkdir()
    assert assert_valid_or_one_line(tmp_path / "d.toml") == 2


# ---- the fuzz ----------------------------------------------------------------------------------
#
# Most generated files are valid TOML: a good study with a few keys set, at any depth, to any
# TOML value (a scalar, a date, nan, a huge integer, an array, a table), the scenario written
# either as [scenario.x] or as [[scenario]]. A third are lines in arbitrary order, often not
# TOML at all.

KEYS = ["description", "seeds", "scenarios", "name", "model", "dataset", "train_size",
        "val_size", "batch_size", "epochs", "target", "log_every", "steps_per_execution",
        "jit_compile", "dataset_fallback", "family", "optimizer", "optimizer_args",
        "learning_rate", "schedule", "plateau", "finder", "baseline", "budget", "min", "max",
        "points", "x", "fixed", "beta_1", "momentum", "unit", "step_size", "step_size_frac",
        "max_lr", "base", "initial", "patience", "factor", "rule", "num_it", "steps",
        "steps_frac", "warmup_frac", "decay_per_total", "pct_start", "monitor", "min_lr"]
PLACES = ["", "budget", "budgets.b", "families", "scenario.x", "scenario.x.schedule",
          "scenario.x.optimizer_args", "scenario.x.plateau", "scenario.x.finder",
          "scenario.x.budget", "sweep", "scenario.y"]
NAMES = st.sampled_from(["x", "y", "fixed", "adam", "sgd", "adamw", "mlp128", "cnn",
                         "synthetic", "fashion_mnist", "mnist", "all", "sweep", "cosine",
                         "triangular", "one_cycle", "warmup_cosine", "piecewise", "epoch",
                         "step", "from_finder", "valley", "val_loss", "b", "no:such", ""])
SCALAR = st.one_of(
    NAMES,
    st.sampled_from([0, -1, 1, 2, 3, 10**12, 2**63 - 1, -2**63]),
    st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1e300, 0.5, 1.5]),
    st.floats(),
    st.booleans(),
    st.dates(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6),
)
VALUES = st.recursive(
    SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                    st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
    max_leaves=6)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, (int, datetime.date)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"


def toml_dumps(doc: dict) -> str:
    """Top-level tables as [sections] (one level of dotted sections), arrays of tables as
    [[sections]], anything deeper as inline tables."""
    lines = [f"{k} = {toml_value(v)}" for k, v in doc.items()
             if not isinstance(v, dict) and not _array_of_tables(v)]
    for key, table in doc.items():
        if isinstance(table, dict):
            plain = {k: v for k, v in table.items() if not isinstance(v, dict)}
            lines.append(f"[{key}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in plain.items()]
            for sub, inner in table.items():
                if isinstance(inner, dict):
                    lines.append(f"[{key}.{sub}]")
                    lines += [f"{k} = {toml_value(v)}" for k, v in inner.items()]
        elif _array_of_tables(table):
            for item in table:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _array_of_tables(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


@st.composite
def mutated_studies(draw) -> str:
    doc = {"scenarios": ["x"],
           "budget": {"model": "mlp128", "dataset": "synthetic", "val_size": 200,
                      "batch_size": 32, "epochs": 1},
           "scenario": {"x": {"family": "fixed", "optimizer": "adam", "learning_rate": 0.001}}}
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        where = [p for p in draw(st.sampled_from(PLACES)).split(".") if p]
        node = doc
        for part in where:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[draw(st.sampled_from(KEYS))] = draw(VALUES)
    if draw(st.booleans()) and isinstance(doc.get("scenario"), dict) and all(
            isinstance(v, dict) for v in doc["scenario"].values()):
        doc["scenario"] = [{"name": k, **v} for k, v in doc["scenario"].items()]
    try:
        text = toml_dumps(doc)
        tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError):  # a key written twice at two levels ...
        text = toml_dumps({k: v for k, v in doc.items() if k not in ("scenario", "budget")})
    return text


SCALAR_TEXT = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "1000000000000", "1979-05-27", '""', '"x"',
                     '"fixed"', "[]", '["x"]', "{}", '{ name = "cosine", initial = 0.1 }']),
    st.integers(min_value=-2**63, max_value=2**63 - 1).map(str))
LINES = st.one_of(
    st.sampled_from(["[budget]", "[budgets.b]", "[families]", "[scenario.x]", "[sweep]",
                     "[[scenario]]", "[[budget]]", "[scenario]", "[scenario.x.schedule]"]),
    st.tuples(st.sampled_from(KEYS), SCALAR_TEXT).map(lambda kv: f"{kv[0]} = {kv[1]}"),
)
STUDY_FILES = st.one_of(
    mutated_studies(), mutated_studies(),
    st.lists(LINES, max_size=12).map(lambda lines: HEAD + SCENARIO_X + "\n".join(lines)),
)


@settings(max_examples=600, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=STUDY_FILES)
def test_fuzzed_study_files_are_valid_or_one_line_never_a_traceback(tmp_path, text):
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    assert_valid_or_one_line(path)
