"""The parameters each notebook accepts, and the check its second cell runs.

papermill only warns about a parameter the notebook does not declare, and injects strings
where a person typed ``-p epochs abc``. The notebooks call :func:`check` right after their
``parameters`` cell, so an unknown name or a wrong type stops the run with one clear line
before anything is trained or recorded.
"""

from __future__ import annotations

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
    "summary": {"study": str, "tracking_uri": str, "reference": str, "margin": float | None},
    "schedules": {"study": str, "epochs": int, "batch_size": int},
}
_IPYTHON = {"In", "Out", "get_ipython", "exit", "quit", "open"}


class ParameterError(ValueError):
    pass


def check(namespace: dict, notebook: str) -> dict:
    """Check a notebook's globals against its declared parameters; return the parameters."""
    declared = NOTEBOOKS[notebook]
    unknown = sorted(
        name for name, value in namespace.items()
        if not name.startswith("_") and name not in _IPYTHON and name not in declared
        and not isinstance(value, types.ModuleType)
    )
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
