"""The parameters each notebook accepts, and the check its second cell runs.

papermill only warns about a parameter the notebook does not declare, and injects strings
where a person typed ``-p epochs abc``. The notebooks call :func:`check` right after their
``parameters`` cell, so an unknown name or a wrong type stops the run with one clear line
before anything is trained or recorded.

Only the names the ``parameters`` cell and papermill's ``injected-parameters`` cell assign are
checked against the declared ones (read from the kernel's input history, the two cells just
before the check), so running all cells a second time in one kernel, or cells of a user's own
in JupyterLab, leaves globals such as ``results`` that are nobody's parameters.
"""

from __future__ import annotations

import ast
import types

NOTEBOOKS = {
    "scenario": {
        "study": str, "scenario": str, "seeds": int, "phase": str, "grid_points": int,
        "epochs": int, "train_size": int,
        "batch_size": int, "tracking_uri": str, "parent_run_id": str, "threads": int,
        "stack": str,
    },
    "lr_range_test": {
        "study": str, "scenario": str, "model": str, "optimizer": str, "dataset": str,
        "train_size": int, "val_size": int, "batch_size": int, "start_lr": float,
        "end_lr": float, "num_it": int, "rule": str, "seed": int, "tracking_uri": str,
    },
    "summary": {"study": str, "tracking_uri": str, "reference": str, "margin": float | None,
                "mlflow_ui": str},
    "schedules": {"study": str, "epochs": int, "batch_size": int},
    "start_here": {"study": str, "scenario": str, "epochs": int, "tracking_uri": str},
}
_IPYTHON = {"In", "Out", "get_ipython", "exit", "quit", "open"}
INJECTED = "# Parameters"  # the first line of papermill's injected-parameters cell (Python)


class ParameterError(ValueError):
    pass


def _assigned_literals(source: str) -> set[str] | None:
    """The names a cell of plain ``name = literal`` lines assigns; None for any other cell."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return None
    names = set()
    for stmt in body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)):
            return None
        try:
            ast.literal_eval(stmt.value)
        except ValueError:
            return None
        names.add(stmt.targets[0].id)
    return names


def parameter_names(history: list[str]) -> set[str]:
    """The names assigned by the parameters cells run just before the last input of a kernel's
    ``history`` (IPython's ``In``; its last entry is the cell calling :func:`check`): papermill's
    injected-parameters cell, if there, and the notebook's own parameters cell before it."""
    names = set()
    for source in reversed(history[:-1]):
        assigned = _assigned_literals(source)
        if assigned is None:
            break
        names |= assigned
        if not source.lstrip().startswith(INJECTED):
            break
    return names


def check(namespace: dict, notebook: str) -> dict:
    """Check a notebook's parameters cells against its declared parameters (outside IPython,
    every global that is not a module); return the declared parameters' values."""
    declared = NOTEBOOKS[notebook]
    history = namespace.get("In")
    candidates = (parameter_names(history) if isinstance(history, list)
                  else {name for name, value in namespace.items()
                        if not isinstance(value, types.ModuleType)})
    unknown = sorted(name for name in candidates
                     if not name.startswith("_") and name not in _IPYTHON and name not in declared)
    if unknown:
        raise ParameterError(f"{notebook}.ipynb has no parameter {unknown[0]!r}; "
                             f"its parameters: {', '.join(declared)}")
    values = {}
    for name, kind in declared.items():
        value = namespace.get(name)
        if kind in (float, float | None) and isinstance(value, int) \
                and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, kind):
            expected = getattr(kind, "__name__", str(kind))
            raise ParameterError(f"{notebook}.ipynb parameter {name!r} must be "
                                 f"{expected}, got {value!r} ({type(value).__name__})")
        values[name] = value
    return values
