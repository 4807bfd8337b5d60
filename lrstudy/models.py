"""The tutorials' models, by name.

Each builder takes the input shape and the number of classes and returns an uncompiled Keras
model. Whether the model ends in logits or in a softmax is part of the model, so the loss is
chosen to match (``from_logits``). A user model is named ``"package.module:function"``; the
function gets the same two arguments; its output counts as probabilities when its last layer
has a softmax activation, else as logits.

A user model is code that runs: naming it in a study runs its module in every kernel.
:func:`check` finds it without running it (:mod:`lrstudy.user_code`), and :func:`locate` says
which directory a kernel needs on its path to import it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from lrstudy import user_code
from lrstudy.errors import one_line


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
    """The directory that holds a user model's top-level package (None for a built-in), found
    without running it (:func:`lrstudy.user_code.locate`)."""
    module, attr = _split(name)
    return user_code.locate("model", name, module, attr) if module else None


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
                         f"{one_line(exc)}") from exc


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
