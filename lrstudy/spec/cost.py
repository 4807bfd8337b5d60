"""What a study will cost before it runs: its trials per phase, and a rough time.

Counted from the study as data, as the runner plans it but without the store and without
TensorFlow (``lrstudy check`` prints it):

- the trials of each scenario's phases (:func:`lrstudy.spec.competition.trials`); a tuned
  strategy's tuning counts its initial grid, which grows past an edge winner;
- the arithmetic of a trial-epoch: a built-in model's forward FLOPs per example, counted layer
  by layer from its shapes, three times that to train (the forward pass and the backward
  pass's two products per layer) over the training examples, plus a forward pass over the
  validation set;
- a time: that arithmetic at :data:`FLOPS_PER_WORKER`, plus :data:`EXECUTION_S` for each
  notebook execution (one per scenario and phase), over the workers that can run at once;
- for a budget trained without XLA (``jit_compile = false``: the suite's Keras-stacked
  workloads, the convnets, the Transformer, the regression), per trial and optimizer step,
  :data:`NO_XLA_STEP_S` and :data:`NO_XLA_ELEMENT_S` for each element its layers write per
  example of the batch (:func:`model_elements`): without XLA every layer, activation,
  normalization and pooling is a kernel of its own that reads and writes its whole output,
  work the FLOP count leaves out and that XLA fuses away.

Both first constants are round figures for a small CPU machine, from ``make bench``'s account
of the default study (``bench/README.md``): the rate somewhat below the one its stacks trained
at (the estimate errs long), the overhead about what an execution cost in a kept kernel,
its trials' records included. The two without XLA are from a measurement of the suite's
tuning of fixed-baseline (15 trials in one Keras stack, a kernel of one TensorFlow thread) on
its Keras-stacked workloads, the kernels' CPU time beyond what the first two give them (CPU
time, not wall time: the machine was shared): the step term from friedman1, whose arithmetic
and elements are negligible, the element term from cnn-fmnist and convnet-bn-fmnist, which
agree on it within a tenth; transformer-sequence checks both. Nothing is measured here: the
estimate is rough, and says so where it is printed.
"""

from __future__ import annotations

import dataclasses
import math
import os

from lrstudy import models
from lrstudy.data import sources
from lrstudy.spec import competition, lr_scale

#: Training arithmetic one worker (a kernel of one TensorFlow thread) gets through per second.
FLOPS_PER_WORKER = 75e9
#: Per notebook execution: starting afresh in a kept kernel, the data, tracing and compiling
#: the stack, the test set, the runs' records (the first execution of a worker also pays the
#: kernel's start and the imports).
EXECUTION_S = 10.0
#: Per trial and optimizer step of a budget trained without XLA (``jit_compile = false``):
#: what a step of a Keras stack costs beyond its arithmetic and its elements (its kernels'
#: launches, the fit's per-step work).
NO_XLA_STEP_S = 1.6e-3
#: Per element the layers write per example of a batch (:func:`model_elements`), per step of
#: a budget trained without XLA: the forward pass's output and the backward pass's, each a
#: memory pass of its own kernel.
NO_XLA_ELEMENT_S = 1.0e-8

#: (input shape, classes) of the built-in datasets.
INPUTS = {"fashion_mnist": ((28, 28), 10), "mnist": ((28, 28), 10), "synthetic": ((20,), 2),
          "digits": ((8, 8), 10), "friedman1": ((10,), 1), "sequence": ((16, 16), 16)}
#: Hidden Dense widths of the built-in MLPs (lrstudy.models), before the output layer.
MLP_HIDDEN = {"mlp128": (128,), "mlp512_200": (512, 200), "mlp_dropout": (128, 64)}
#: lrstudy.models.cnn: 3x3 valid convolutions, each followed by a 2x2 pooling, then Dense.
CNN_FILTERS, CNN_DENSE = (32, 64), 256


def _dense(n_in: int, widths) -> tuple[int, int]:
    """(parameters, forward FLOPs per example) of Dense layers of ``widths`` after ``n_in``."""
    params = flops = 0
    for width in widths:
        params += n_in * width + width
        flops += 2 * n_in * width
        n_in = width
    return params, flops


def model_cost(model: str, input_shape, classes: int) -> tuple[int, int] | None:
    """(parameters, forward FLOPs per example) of built-in ``model`` (multiply and add count
    two; element-wise work left out: activations, pooling, dropout, normalization, softmax,
    residual sums); None for a user's model, whose size is not known without building it.
    Parameters as Keras counts them, a batch normalization's moving mean and variance
    included."""
    if model in MLP_HIDDEN:
        return _dense(math.prod(input_shape), [*MLP_HIDDEN[model], classes])
    if model == "convnet_bn":
        return _convnet_bn(input_shape, classes)
    if model == "transformer_tiny":
        return _transformer(input_shape, classes)
    if model != "cnn":
        return None
    h, w, c = (*input_shape, 1) if len(input_shape) == 2 else input_shape
    params = flops = 0
    for filters in CNN_FILTERS:
        h, w = h - 2, w - 2
        params += 9 * c * filters + filters
        flops += 2 * h * w * 9 * c * filters
        h, w, c = h // 2, w // 2, filters
    dense_params, dense_flops = _dense(h * w * c, [CNN_DENSE, classes])
    return params + dense_params, flops + dense_flops


def _convnet_bn(input_shape, classes: int) -> tuple[int, int]:
    """lrstudy.models.convnet_bn: per block a 3x3 "same" convolution without bias (9 c f
    weights, 2 x 9 c f FLOPs per output pixel), a batch normalization of 4 numbers per
    filter (scale, shift, moving mean and variance), a 2x2 pooling; then Dense layers."""
    h, w, c = (*input_shape, 1) if len(input_shape) == 2 else input_shape
    params = flops = 0
    for filters in models.CONVNET_BN_FILTERS:
        params += 9 * c * filters + 4 * filters
        flops += 2 * h * w * 9 * c * filters
        h, w, c = h // 2, w // 2, filters
    dense_params, dense_flops = _dense(h * w * c, [models.CONVNET_BN_DENSE, classes])
    return params + dense_params, flops + dense_flops


def _transformer(input_shape, classes: int) -> tuple[int, int]:
    """lrstudy.models.transformer_tiny on ``(length, vocab)``: the token embedding (a Dense
    without bias at every position), a learned vector per position, then per block the
    attention's query, key, value and output projections at every position, its two
    products per head (scores ``Q K^T`` and their weighted sum of ``V``: 2 x L x L x
    key_dim FLOPs each), the MLP at every position, two layer normalizations (scale and
    shift); the head reads the first position only."""
    length, vocab = input_shape
    d, heads = models.TRANSFORMER_WIDTH, models.TRANSFORMER_HEADS
    key_dim = d // heads
    params = vocab * d + length * d
    flops = length * 2 * vocab * d
    for _ in range(models.TRANSFORMER_BLOCKS):
        projections = 3 * (d * heads * key_dim + heads * key_dim) + heads * key_dim * d + d
        mlp_params, mlp_flops = _dense(d, [models.TRANSFORMER_MLP, d])
        params += projections + mlp_params + 2 * 2 * d
        flops += length * (2 * 4 * d * heads * key_dim + mlp_flops)
        flops += heads * 2 * (2 * length * length * key_dim)
    head_params, head_flops = _dense(d, [classes])
    return params + head_params, flops + head_flops


def model_elements(model: str, input_shape, classes: int) -> int | None:
    """The elements the layers of built-in ``model`` write per example in a forward pass:
    each layer's output once (a convolution, a normalization, an activation layer, a pooling,
    a dropout, a Dense layer with its activation, an attention's projections, its scores and
    their softmax, a residual sum); a Flatten or Reshape writes nothing. None for a user's
    model. What a budget trained without XLA spends its time on beyond the arithmetic
    (module docstring)."""
    if model in MLP_HIDDEN:
        hidden = MLP_HIDDEN[model]
        dropout = sum(hidden) if model == "mlp_dropout" else 0
        return sum(hidden) + classes + dropout
    if model == "cnn":
        h, w, c = (*input_shape, 1) if len(input_shape) == 2 else input_shape
        elements = 0
        for filters in CNN_FILTERS:  # convolution, then pooling and dropout of its output
            h, w = h - 2, w - 2
            elements += h * w * filters + 2 * (h // 2) * (w // 2) * filters
            h, w = h // 2, w // 2
        return elements + CNN_DENSE + classes
    if model == "convnet_bn":
        h, w, _ = (*input_shape, 1) if len(input_shape) == 2 else input_shape
        elements = 0
        for filters in models.CONVNET_BN_FILTERS:  # convolution, normalization, ReLU, pooling
            elements += 3 * h * w * filters + (h // 2) * (w // 2) * filters
            h, w = h // 2, w // 2
        return elements + models.CONVNET_BN_DENSE + classes
    if model == "transformer_tiny":
        length, _ = input_shape
        d, heads = models.TRANSFORMER_WIDTH, models.TRANSFORMER_HEADS
        per_token = 2 * d  # the token embedding, the position added
        for _ in range(models.TRANSFORMER_BLOCKS):
            # query, key, value, the heads' context, the output projection, two residual
            # sums and two normalizations; the MLP's hidden layer and its output
            per_token += 9 * d + models.TRANSFORMER_MLP + d
        scores = models.TRANSFORMER_BLOCKS * 2 * heads * length * length  # and their softmax
        return length * per_token + scores + classes
    return None


def data_shape(dataset: str) -> tuple[tuple, int]:
    """(input shape, outputs) of a budget's dataset: a built-in one, or a user's source (its
    arrays are loaded once per process, as the study's check loaded them)."""
    if dataset in INPUTS:
        return INPUTS[dataset]
    arrays = sources.arrays(dataset)
    return arrays["x_train"].shape[1:], sources.num_classes(sources.parse(dataset), arrays)


@dataclasses.dataclass(frozen=True)
class ScenarioPlan:
    scenario: object  # lrstudy.spec.study.Scenario
    trials: dict      # phase ("" without a competition) -> its trials

    @property
    def total(self) -> int:
        return sum(self.trials.values())


def plan(comp: competition.Competition | None, selected, seeds: int) -> list[ScenarioPlan]:
    """The trials of each of the ``selected`` scenarios, phase by phase."""
    plans = []
    for sc in selected:
        counts = {}
        for phase in competition.phases_to_run(comp, sc, ""):
            # a final's count does not depend on the tuning's winner: the scenario's own peak
            # stands in for it
            winner = lr_scale.peak_lr(sc) if phase == "final" and sc.finder is None else None
            counts[phase] = len(competition.trials(comp, sc, phase, seeds, winner))
        plans.append(ScenarioPlan(sc, counts))
    return plans


@dataclasses.dataclass(frozen=True)
class Estimate:
    trials: int
    trial_epochs: int
    executions: int       # notebook executions: one per scenario and phase
    flops: float | None   # None: a model of unknown size (``unknown_models``)
    unknown_models: tuple[str, ...]
    workers: int          # how many run at once
    seconds: float | None
    no_xla_steps: int = 0  # trial-steps of budgets trained without XLA
    no_xla_seconds: float = 0.0  # what those steps add (NO_XLA_STEP_S, NO_XLA_ELEMENT_S)


def no_xla_step_s(budget: dict, elements: int) -> float:
    """What one trial's optimizer step adds on a budget trained without XLA, its model's
    layers writing ``elements`` per example (module docstring); 0 with XLA."""
    if budget["jit_compile"]:
        return 0.0
    return NO_XLA_STEP_S + NO_XLA_ELEMENT_S * elements * budget["batch_size"]


def estimate(plans: list[ScenarioPlan], workers: int, cpus: int | None = None) -> Estimate:
    """The rough time of ``plans`` on ``workers`` at once (at most one per CPU): their work
    shared out, and never less than the longest scenario's, whose phases run one after the
    other."""
    flops, unknown, longest = 0.0, set(), 0.0
    steps, extra = 0, 0.0
    for p in plans:
        sc, b = p.scenario, p.scenario.budget
        shape, outputs = data_shape(b["dataset"])
        cost = model_cost(b["model"], shape, outputs)
        if cost is None:
            unknown.add(b["model"])
            continue
        mine = p.total * b["epochs"] * cost[1] * (3 * sc.train_size + b["val_size"])
        flops += mine
        my_steps = 0 if b["jit_compile"] else p.total * b["epochs"] * sc.steps_per_epoch
        my_extra = my_steps * no_xla_step_s(b, model_elements(b["model"], shape, outputs))
        steps, extra = steps + my_steps, extra + my_extra
        longest = max(longest,
                      mine / FLOPS_PER_WORKER + my_extra + len(p.trials) * EXECUTION_S)
    executions = sum(len(p.trials) for p in plans)
    at_once = max(1, min(workers, cpus or os.cpu_count() or 1, len(plans)))
    seconds = None if unknown else max(
        longest, (flops / FLOPS_PER_WORKER + extra + executions * EXECUTION_S) / at_once)
    return Estimate(trials=sum(p.total for p in plans),
                    trial_epochs=sum(p.total * p.scenario.budget["epochs"] for p in plans),
                    executions=executions, flops=None if unknown else flops,
                    unknown_models=tuple(sorted(unknown)), workers=at_once, seconds=seconds,
                    no_xla_steps=steps, no_xla_seconds=extra)
