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

import functools
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


def convnet_bn(input_shape, num_classes):
    """Two blocks of Conv(3x3, same)-BatchNorm-ReLU-MaxPool 2 (8, then 16 filters), Flatten,
    Dense(64, relu), Dense(classes) logits: a small convnet with batch normalization (the
    convolutions have no bias: the normalization's shift takes its place).

    The normalization's moving averages (what inference uses) take momentum 0.9, not Keras's
    0.99: they follow the last ten or so batches, where 0.99 lags the weights by a hundred,
    which a budget of a few hundred steps cannot afford (its validation scores would measure
    the lag more than the weights)."""
    import keras
    from keras import layers

    reshape = _image_input(input_shape, "convnet_bn")
    blocks = []
    for filters in CONVNET_BN_FILTERS:
        blocks += [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                   layers.BatchNormalization(momentum=CONVNET_BN_MOMENTUM), layers.ReLU(),
                   layers.MaxPooling2D(2)]
    return keras.Sequential(
        [keras.Input(shape=input_shape)] + reshape + blocks
        + [layers.Flatten(), layers.Dense(CONVNET_BN_DENSE, activation="relu"),
           layers.Dense(num_classes)],
        name="convnet_bn",
    )


CONVNET_BN_FILTERS = (8, 16)
CONVNET_BN_DENSE = 64
CONVNET_BN_MOMENTUM = 0.9


def transformer_tiny(input_shape, num_classes):
    """A small Transformer encoder classifier for one-hot token sequences ``(length, vocab)``:
    a token embedding (Dense without bias on the one-hot tokens: a lookup) plus a learned
    embedding per position, :data:`TRANSFORMER_BLOCKS` encoder block(s) (multi-head
    self-attention, then an MLP, each added to its input and layer-normalized after: the
    original Transformer's post-norm, under which warm-up matters most), the first position's
    output as the sequence's (as BERT reads its first token), Dense(classes) logits.

    One block: the ``sequence`` task needs one attention lookup (from the first position to
    the one it names), and each block costs a stacked trial as much tracing as training."""
    import keras
    from keras import layers

    if len(input_shape) != 2:
        raise ValueError("model `transformer_tiny` needs one-hot token sequences of shape "
                         f"(length, vocab). Received: input_shape={input_shape}")
    d = TRANSFORMER_WIDTH
    inputs = keras.Input(shape=input_shape)
    h = layers.Dense(d, use_bias=False, name="token_embedding")(inputs)
    h = _position_embedding()(name="position_embedding")(h)
    for i in range(TRANSFORMER_BLOCKS):
        attention = layers.MultiHeadAttention(TRANSFORMER_HEADS, d // TRANSFORMER_HEADS,
                                              name=f"attention_{i}")(h, h)
        h = layers.LayerNormalization(epsilon=1e-6, name=f"norm_a{i}")(h + attention)
        mlp = layers.Dense(TRANSFORMER_MLP, activation="relu", name=f"mlp_in_{i}")(h)
        mlp = layers.Dense(d, name=f"mlp_out_{i}")(mlp)
        h = layers.LayerNormalization(epsilon=1e-6, name=f"norm_m{i}")(h + mlp)
    outputs = layers.Dense(num_classes, name="head")(h[:, 0])
    return keras.Model(inputs, outputs, name="transformer_tiny")


TRANSFORMER_WIDTH = 32  # d_model
TRANSFORMER_HEADS = 2
TRANSFORMER_MLP = 64
TRANSFORMER_BLOCKS = 1


@functools.cache
def _position_embedding():
    """The class of a layer that adds a learned vector to each position of its input
    ``(batch, length, width)``, its length fixed when it is built (made on first use: this
    module imports Keras only when a model is built)."""
    import keras

    @keras.saving.register_keras_serializable(package="lrstudy")
    class PositionEmbedding(keras.layers.Layer):
        def build(self, input_shape):
            self.positions = self.add_weight(
                shape=tuple(input_shape[1:]), name="positions",
                initializer=keras.initializers.RandomNormal(stddev=0.02))

        def call(self, inputs):
            return inputs + self.positions

    return PositionEmbedding


def _image_input(input_shape, model: str) -> list:
    """The layers that make ``input_shape`` an image with channels: a Reshape for
    ``(height, width)``, none for ``(height, width, channels)``."""
    from keras import layers

    if len(input_shape) not in (2, 3):
        raise ValueError(f"model `{model}` needs image inputs. Received: "
                         f"input_shape={input_shape}")
    return [layers.Reshape((*input_shape, 1))] if len(input_shape) == 2 else []


MODELS = {f.__name__: f for f in (mlp128, mlp512_200, mlp_dropout, cnn, convnet_bn,
                                  transformer_tiny)}


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
