"""The tutorials' models, by name.

Each builder takes the input shape and the number of classes and returns an uncompiled Keras
model. Whether the model ends in logits or in a softmax is part of the model, so the loss is
chosen to match (``from_logits``). A user model is named ``"package.module:function"``; the
function gets the same two arguments; its output counts as probabilities when its last layer
has a softmax activation, else as logits.

A user model is code that runs: naming it in a study runs its module in every kernel.
:func:`check` finds it *without* running it (the module's file is located and parsed), so a
misspelt name is refused in a fraction of a second and before Keras is imported; a module
the parse shows cannot be imported as written (or that does not visibly bind the function) is
imported then, so that the refusal names the exception it raises. :func:`locate` says which
directory a kernel needs on its path to import it.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import io
import sys
from pathlib import Path



def _flat_input(input_shape):
    import keras

    return [keras.Input(shape=input_shape), keras.layers.Flatten()]


def mlp128(input_shape, num_classes):
    """Flatten, Dense(128, relu), Dense(classes) logits (the warm-up tutorial)."""
    import keras
    from keras import layers

    return keras.Sequential(
        _flat_input(input_shape)
        + [layers.Dense(128, activation="relu"), layers.Dense(num_classes)],
        name="mlp128",
    )


def mlp512_200(input_shape, num_classes):
    """Flatten, Dense(512, relu), Dense(200, relu), Dense(classes, softmax) (decay tutorial)."""
    import keras
    from keras import layers

    return keras.Sequential(
        _flat_input(input_shape)
        + [
            layers.Dense(512, activation="relu"),
            layers.Dense(200, activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="mlp512_200",
    )


def mlp_dropout(input_shape, num_classes):
    """Dense(128, relu), Dropout .2, Dense(64, relu), Dropout .2, Dense(classes) logits (TF)."""
    import keras
    from keras import layers

    return keras.Sequential(
        _flat_input(input_shape)
        + [
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(64, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(num_classes),
        ],
        name="mlp_dropout",
    )


def cnn(input_shape, num_classes):
    """Conv32-Pool-Drop-Conv64-Pool-Drop-Dense256-Dense(classes, softmax) (fixed-LR tutorial)."""
    import keras
    from keras import layers

    if len(input_shape) != 2 and len(input_shape) != 3:
        raise ValueError(f"model `cnn` needs image inputs. Received: input_shape={input_shape}")
    reshape = [layers.Reshape((*input_shape, 1))] if len(input_shape) == 2 else []
    return keras.Sequential(
        [keras.Input(shape=input_shape)]
        + reshape
        + [
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="cnn",
    )


MODELS = {f.__name__: f for f in (mlp128, mlp512_200, mlp_dropout, cnn)}


def _split(name) -> tuple[str, str]:
    if not isinstance(name, str):
        raise ValueError(f"model must be a name, got {name!r}")
    module, sep, attr = name.partition(":")
    if name in MODELS:
        return "", name
    if not sep or not module or not attr.isidentifier():
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)} or "
                         "'package.module:function'")
    return module, attr


def locate(name: str) -> Path | None:
    """The directory that holds a user model's top-level package (None for a built-in).

    The module is found by ``importlib.util.find_spec`` from this process's path (the
    caller's directory first) and its source is parsed, not run: the function must be
    defined, assigned or imported at the top level of the module. Only when the parse does
    not see it bound there, or sees a top level that cannot import (a ``raise``, an import
    of a module not on the path), is the module imported, to report what it raises.
    """
    module, attr = _split(name)
    if not module:
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"model {name!r} cannot be imported: {exc}") from None
    if spec is None or not spec.origin or not spec.has_location:
        raise ValueError(f"model {name!r} cannot be imported: no module named {module!r} on "
                         "the path (the current directory and $PYTHONPATH)")
    origin = Path(spec.origin).resolve()
    names, fails = _top_level(origin) if origin.suffix == ".py" else (None, False)
    if fails or (names is not None and attr not in names):
        # The module may raise at import (its own exception is the cause to report, not the
        # names it never got to define) or bind the function at run time: importing it tells.
        failure, found = _import_attr(module, attr)
        if failure:
            raise ValueError(f"model {name!r} cannot be imported: importing {origin} raised "
                             f"{failure}")
        if not found:
            raise ValueError(f"model {name!r} cannot be imported: {origin} defines no {attr!r}")
    root = origin.parent
    for _ in range(module.count(".") + (origin.name == "__init__.py")):
        root = root.parent
    return root


def _one_line(exc: BaseException) -> str:
    """``exc`` as ``"Type: message"`` on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _import_attr(module: str, attr: str) -> tuple[str, bool]:
    """Import ``module``: (why it failed, as one line, or ""; whether it has ``attr``).

    What the module prints while importing is discarded, so that a refusal stays one line.
    """
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            imported = importlib.import_module(module)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever the user's code raises
        return _one_line(exc), False
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


def resolve(name: str):
    """The builder named ``name``: a built-in name or ``"package.module:function"``."""
    module, attr = _split(name)
    if not module:
        return MODELS[attr]
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"model {name!r} cannot be imported: {exc}") from None
    except Exception as exc:  # the module's own code raised: its traceback stays chained
        raise ValueError(f"model {name!r} cannot be imported: importing {module} raised "
                         f"{_one_line(exc)}") from exc


def check(name: str) -> None:
    """Refuse an unknown model name, without importing Keras or the user's module."""
    locate(name)


def outputs_logits(model) -> bool:
    """True unless the model's last layer applies a softmax."""
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "") != "softmax"


def build(name: str, input_shape, num_classes: int, task: str = "classification"):
    """Build model ``name``; returns ``(model, from_logits)``.

    For ``task = "regression"`` the model is built with one output (``num_classes`` 1) and a
    softmax on that output, as the built-in classifiers end, is made linear: the output is the
    predicted value. A user model gets ``(input_shape, 1)`` and should end in one linear unit.
    """
    model = resolve(name)(tuple(input_shape), int(num_classes))
    if task == "regression":
        if int(model.outputs[0].shape[-1]) != 1:
            raise ValueError(f"model {name!r} has {model.outputs[0].shape[-1]} outputs; a "
                             "regression model needs one")
        if not outputs_logits(model):
            model.layers[-1].activation = _linear()
        return model, True
    return model, outputs_logits(model)


def _linear():
    from lrstudy import tfquiet

    return tfquiet.import_tensorflow("keras").activations.linear
