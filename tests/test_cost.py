"""The arithmetic behind ``lrstudy check``'s estimate (:mod:`lrstudy.spec.cost`): every
built-in model's forward FLOPs per example against a count taken from the Keras model itself,
and the suite's workloads, all of them now of known size, with an estimate."""

from __future__ import annotations

import pytest

from lrstudy.spec import cost
from lrstudy.spec import study as scenarios

MODELS = [("mlp128", (28, 28), 10), ("mlp512_200", (28, 28), 10), ("mlp_dropout", (20,), 2),
          ("cnn", (28, 28), 10), ("convnet_bn", (28, 28), 10), ("convnet_bn", (32, 32, 3), 5),
          ("transformer_tiny", (16, 16), 16), ("transformer_tiny", (8, 20), 3)]
PRODUCTS = ("MatMul", "convolution")  # TensorFlow's op names for Dense and Conv2D products


def built_flops(model: str, shape, classes: int) -> int:
    """The forward FLOPs of one example through the model Keras builds: TensorFlow's own
    count of its matrix products and convolutions (``tf.compat.v1.profiler``, 2 per
    multiply-add), plus the attention's two products per head, ``Q K^T`` and the weighted
    sum of ``V`` (einsums, which TensorFlow's profiler does not count), read from each
    attention layer's heads and key size."""
    import keras
    import tensorflow as tf

    from lrstudy import models

    built, _ = models.build(model, shape, classes)
    graph = tf.function(lambda x: built(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, *shape), tf.float32)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    found = tf.compat.v1.profiler.profile(graph=graph, options=options)
    flops = sum(op.total_float_ops for op in found.children
                if op.name.rsplit("/", 1)[-1] in PRODUCTS)
    length = shape[0]
    for layer in built.layers:
        if isinstance(layer, keras.layers.MultiHeadAttention):
            flops += layer.num_heads * 2 * (2 * length * length * layer.key_dim)
    return flops


@pytest.mark.parametrize("model, shape, classes", MODELS)
def test_the_forward_flops_are_those_of_the_built_model(model, shape, classes):
    assert cost.model_cost(model, shape, classes)[1] == built_flops(model, shape, classes)


def test_the_suites_models_by_hand():
    """The suite's two new models on its data, layer by layer (multiply-adds count two)."""
    # convnet_bn on 28x28x1: conv 3x3 "same" to 8 filters at 28x28, to 16 at 14x14, Dense
    # 7*7*16 -> 64 -> 10
    conv = 2 * 28 * 28 * 9 * 1 * 8 + 2 * 14 * 14 * 9 * 8 * 16
    assert cost.model_cost("convnet_bn", (28, 28), 10) == (
        72 + 32 + 1152 + 64 + 50240 + 650, conv + 2 * 784 * 64 + 2 * 64 * 10)
    # transformer_tiny on 16 tokens of 16: embedding 16 -> 32 per token, Q, K, V and output
    # projections 32 -> 32 per token, 2 heads x (scores + weighted sum) of 16 x 16 x 16, MLP
    # 32 -> 64 -> 32 per token, the head 32 -> 16 on the first token
    attention = 16 * 4 * 2 * 32 * 32 + 2 * 2 * (2 * 16 * 16 * 16)
    forward = 16 * 2 * 16 * 32 + attention + 16 * 2 * (2 * 32 * 64) + 2 * 32 * 16
    assert cost.model_cost("transformer_tiny", (16, 16), 16) == (10096, forward) == (
        10096, 312_320)


def test_the_elements_each_model_writes_by_hand():
    """Each layer's output per example, once: what a budget without XLA pays for."""
    assert cost.model_elements("mlp128", (10,), 1) == 128 + 1
    assert cost.model_elements("mlp_dropout", (28, 28), 10) == 128 + 128 + 64 + 64 + 10
    # conv 26x26x32, its pooling and dropout 13x13x32 each, conv 11x11x64, 5x5x64 twice
    assert cost.model_elements("cnn", (28, 28), 10) == (
        26 * 26 * 32 + 2 * 13 * 13 * 32 + 11 * 11 * 64 + 2 * 5 * 5 * 64 + 256 + 10)
    # per block: conv, normalization, ReLU at full size, then the pooling
    assert cost.model_elements("convnet_bn", (28, 28), 10) == (
        3 * 28 * 28 * 8 + 14 * 14 * 8 + 3 * 14 * 14 * 16 + 7 * 7 * 16 + 64 + 10)
    # 16 tokens x (embedding, position, Q, K, V, context, projection, 2 sums, 2 norms,
    # MLP 64 + 32), 2 heads' 16 x 16 scores and their softmax, the head's 16 logits
    assert cost.model_elements("transformer_tiny", (16, 16), 16) == (
        16 * (11 * 32 + 64 + 32) + 2 * 2 * 16 * 16 + 16)
    assert cost.model_elements("my_models:build", (10,), 2) is None


def test_only_budgets_without_xla_pay_per_step():
    study = scenarios.load_study("suite")
    by = {name.split("@")[1]: sc for name, sc in study.scenarios.items()
          if name.startswith("fixed-baseline@")}
    assert cost.no_xla_step_s(by["mlp128-fmnist"].budget, 138) == 0.0  # XLA
    friedman = by["friedman1"].budget
    assert cost.no_xla_step_s(friedman, 129) == pytest.approx(
        cost.NO_XLA_STEP_S + cost.NO_XLA_ELEMENT_S * 129 * 64)
    plans = cost.plan(study.competition, [by["friedman1"]], study.seeds)
    est = cost.estimate(plans, 1, cpus=1)
    steps = plans[0].total * friedman["epochs"] * by["friedman1"].steps_per_epoch
    assert est.no_xla_steps == steps == 20 * 8 * 125
    assert est.no_xla_seconds == pytest.approx(steps * cost.no_xla_step_s(friedman, 129))
    flops = est.flops / cost.FLOPS_PER_WORKER
    assert est.seconds == pytest.approx(flops + est.no_xla_seconds + 2 * cost.EXECUTION_S)


def test_the_suite_gets_an_estimate():
    study = scenarios.load_study("suite")
    plans = cost.plan(study.competition, list(study.scenarios.values()), study.seeds)
    est = cost.estimate(plans, 2, cpus=2)
    assert est.unknown_models == () and est.seconds is not None and est.seconds > 0
    assert est.trials == 1230
    assert est.no_xla_steps > 0 and est.no_xla_seconds > 0
    # the default study trains with XLA throughout: its estimate is as it was
    seeds = scenarios.load_study("seeds")
    plain = cost.estimate(cost.plan(seeds.competition, list(seeds.scenarios.values()),
                                    seeds.seeds), 2, cpus=2)
    assert plain.no_xla_steps == 0 and plain.no_xla_seconds == 0.0
