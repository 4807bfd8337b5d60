"""The user's own code, named ``"package.module:function"`` (a model or a dataset's function):
found and checked without running it.

A module named in a study runs in every kernel of the study. :func:`locate` finds it *without*
running it (the module's file is located and parsed), so a misspelt name is refused in a
fraction of a second and before Keras is imported; a module the parse shows cannot be imported
as written (or that does not visibly bind the function) is imported then, so that the refusal
names the exception it raises. It returns the directory a kernel needs on its path.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import io
import sys
from pathlib import Path

from lrstudy.errors import one_line


def locate(what: str, name: str, module: str, attr: str) -> Path:
    """The directory that holds the top-level package of ``module`` (``name`` is the user's
    ``"module:attr"``, ``what`` says what it names: ``model``, ``dataset``).

    The module is found by ``importlib.util.find_spec`` from this process's path (the
    caller's directory first) and its source is parsed, not run: ``attr`` must be defined,
    assigned or imported at the top level of the module. Only when the parse does not see it
    bound there, or sees a top level that cannot import (a ``raise``, an import of a module
    not on the path), is the module imported, to report what it raises.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"{what} {name!r} cannot be imported: {exc}") from None
    if spec is None or not spec.origin or not spec.has_location:
        raise ValueError(f"{what} {name!r} cannot be imported: no module named {module!r} on "
                         "the path (the current directory and $PYTHONPATH)")
    origin = Path(spec.origin).resolve()
    names, fails = _top_level(origin) if origin.suffix == ".py" else (None, False)
    if fails or (names is not None and attr not in names):
        # The module may raise at import (its own exception is the cause to report, not the
        # names it never got to define) or bind the function at run time: importing it tells.
        failure, found = _import_attr(module, attr)
        if failure:
            raise ValueError(f"{what} {name!r} cannot be imported: importing {origin} raised "
                             f"{failure}")
        if not found:
            raise ValueError(f"{what} {name!r} cannot be imported: {origin} defines no "
                             f"{attr!r}")
    root = origin.parent
    for _ in range(module.count(".") + (origin.name == "__init__.py")):
        root = root.parent
    return root


def _import_attr(module: str, attr: str) -> tuple[str, bool]:
    """Import ``module``: (why it failed, as one line, or ""; whether it has ``attr``).

    What the module prints while importing is discarded, so that a refusal stays one line.
    """
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            imported = importlib.import_module(module)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever the user's code raises
        return one_line(exc), False
    return "", hasattr(imported, attr)


def _top_level(path: Path) -> tuple[set[str] | None, bool]:
    """The names a module binds at its top level (functions, classes, assignments, imports),
    None when that cannot be told without running it (a ``from x import *``); and whether
    its top level cannot import: a ``raise`` statement, or an absolute import of a package
    that is not on the path."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path} cannot be parsed: {exc}") from None
    names: set[str] = set()
    star = fails = False
    for node in tree.body:
        if isinstance(node, ast.Raise):
            fails = True
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imported = ([a.name for a in node.names] if isinstance(node, ast.Import)
                        else [node.module] if node.module and not node.level else [])
            fails = fails or any(not _on_path(m.split(".")[0]) for m in imported)
            star = star or any(alias.name == "*" for alias in node.names)
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return (None if star else names), fails


def _on_path(package: str) -> bool:
    """Whether a top-level package can be found (without importing it)."""
    try:
        return package in sys.modules or importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False
