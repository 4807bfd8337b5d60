"""The tutorials' models, by name (../shared/scenarios.md, "Budgets").

Each builder takes the input shape and the number of classes and returns an uncompiled Keras
model. Whether the model ends in logits or in a softmax is part of the model, so the loss is
chosen to match (``from_logits``). A user model is named ``"package.module:function"``; the
function gets the same two arguments; its output counts as probabilities when its last layer
has a softmax activation, else as logits.
"""

from __future__ import annotations

import importlib

import keras
from keras import layers


def _flat_input(input_shape):
    return [keras.Input(shape=input_shape), layers.Flatten()]


def mlp128(input_shape, num_classes):
    """Flatten, Dense(128, relu), Dense(classes) logits (the warm-up tutorial)."""
    return keras.Sequential(
        _flat_input(input_shape)
        + [layers.Dense(128, activation="relu"), layers.Dense(num_classes)],
        name="mlp128",
    )


def mlp512_200(input_shape, num_classes):
    """Flatten, Dense(512, relu), Dense(200, relu), Dense(classes, softmax) (decay tutorial)."""
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


def resolve(name: str):
    """The builder named ``name``: a built-in name or ``"package.module:function"``."""
    if name in MODELS:
        return MODELS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"model {name!r} cannot be imported: {exc}") from None
    raise ValueError(
        f"unknown model {name!r}; known: {', '.join(MODELS)} or 'package.module:function'"
    )


def check(name: str) -> None:
    resolve(name)


def outputs_logits(model) -> bool:
    """True unless the model's last layer applies a softmax."""
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "") != "softmax"


def build(name: str, input_shape, num_classes: int):
    """Build model ``name``; returns ``(model, from_logits)``."""
    model = resolve(name)(tuple(input_shape), int(num_classes))
    return model, outputs_logits(model)
