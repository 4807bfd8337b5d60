"""The notebooks' parameter check (lrstudy.execution.notebook_params.check) in a real IPython shell, on the
notebooks' own first cells: it looks at the parameters cells, not at every global."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT
from IPython.core.interactiveshell import InteractiveShell

from lrstudy.execution import notebook_params as params

NOTEBOOKS = sorted(params.NOTEBOOKS)


def first_cells(notebook: str) -> tuple[str, str]:
    """The notebook's parameters cell and the cell after it (the one calling check)."""
    cells = json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    tagged = [i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", [])]
    index = code.index("".join(cells[tagged[0]]["source"]))
    assert "params.check(globals()" in code[index + 1]
    return code[index], code[index + 1]


@pytest.fixture
def shell():
    InteractiveShell.clear_instance()
    sh = InteractiveShell.instance()
    yield sh
    InteractiveShell.clear_instance()


def run(shell, source: str):
    result = shell.run_cell(source, store_history=True, silent=False)
    return result.error_in_exec


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_running_all_twice_and_a_users_cell_pass(shell, notebook):
    parameters, check = first_cells(notebook)
    assert run(shell, parameters) is None and run(shell, check) is None
    # what the later cells leave behind, and a cell of the user's own
    assert run(shell, "results = [1, 2]\nfrom pathlib import Path\nmine = Path('.')") is None
    assert run(shell, "mine_too = 3") is None
    # run all again in the same kernel
    assert run(shell, parameters) is None and run(shell, check) is None
    # the check cell alone, after a user's cell
    assert run(shell, "x = 1") is None and run(shell, "print(x)") is None
    assert run(shell, check) is None


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_unknown_injected_name_is_rejected_also_on_a_second_run(shell, notebook):
    parameters, check = first_cells(notebook)
    assert run(shell, parameters) is None and run(shell, check) is None
    assert run(shell, "results = [1]") is None
    run(shell, parameters)
    run(shell, '# Parameters\nnosuch = 1\n')  # papermill's injected-parameters cell
    error = run(shell, check)
    assert isinstance(error, params.ParameterError)
    assert f"{notebook}.ipynb has no parameter 'nosuch'" in str(error)


def test_an_unknown_name_in_the_parameters_cell_itself_is_rejected(shell):
    parameters, check = first_cells("scenario")
    run(shell, parameters + "\nepochz = 1\n")
    error = run(shell, check)
    assert isinstance(error, params.ParameterError) and "'epochz'" in str(error)


def test_a_wrong_type_injected_is_rejected(shell):
    parameters, check = first_cells("scenario")
    run(shell, parameters)
    run(shell, '# Parameters\nepochs = "abc"\n')
    error = run(shell, check)
    assert isinstance(error, params.ParameterError)
    assert "parameter 'epochs' must be int, got 'abc'" in str(error)


def test_outside_ipython_every_global_is_checked():
    with pytest.raises(params.ParameterError, match="no parameter 'results'"):
        params.check({"study": "smoke", "results": [1], "params": params}, "summary")


def test_batch_runs_pass_every_parameter_or_leave_the_studys_own(tmp_path, monkeypatch):
    """``lrstudy run`` executes scenario.ipynb once per scenario. A parameter it does not pass
    keeps the notebook's default, which must then mean the study's own value (0 or ""), not
    the small budget the notebook runs when opened by hand."""
    import ast

    from lrstudy.execution import kernels, runner

    passed = {}

    def execute(notebook, output, parameters, **kwargs):
        passed.update(parameters)
        Path(output).write_text("{}")

    monkeypatch.setattr(kernels, "execute", execute)
    job = runner.Job(study="seeds", study_name="seeds", scenario="fixed-baseline", seeds=10,
                     overrides={}, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                     threads=1, output=str(tmp_path / "fixed-baseline-final.ipynb"),
                     phase="final")
    assert runner.execute_job(job).ok
    declared = params.NOTEBOOKS["scenario"]
    assert set(passed) <= set(declared)
    assert (passed["study"], passed["scenario"], passed["seeds"]) == ("seeds", "fixed-baseline", 10)
    parameters, _ = first_cells("scenario")
    defaults = {stmt.targets[0].id: ast.literal_eval(stmt.value)
                for stmt in ast.parse(parameters).body}
    assert set(defaults) == set(declared)
    left = {name: defaults[name] for name in declared if name not in passed}
    assert left and all(value in (0, "") for value in left.values()), left


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_each_notebooks_parameters_cell_is_its_declared_contract(notebook):
    """NOTEBOOKS is the one declaration: each notebook's parameters cell assigns exactly the
    declared names, each a literal of its declared type."""
    import ast

    parameters, _ = first_cells(notebook)
    defaults = {stmt.targets[0].id: ast.literal_eval(stmt.value)
                for stmt in ast.parse(parameters).body}
    declared = params.NOTEBOOKS[notebook]
    assert list(defaults) == list(declared)
    for name, value in defaults.items():
        kind = declared[name]
        assert isinstance(value, kind) and not isinstance(value, bool), (name, value)


def test_the_scenario_notebooks_entry_point_takes_the_declared_parameters():
    """scenario.ipynb hands its parameters to ``run_scenario``, by the same names."""
    import inspect

    from lrstudy.execution import scenario_run

    signature = inspect.signature(scenario_run.run_scenario).parameters
    assert list(signature) == list(params.NOTEBOOKS["scenario"])
