"""The LR range test (Smith 2017).

Train once while the learning rate grows exponentially from ``start_lr`` to ``end_lr``, record
the loss of every batch, smooth it, stop when it blows up, then read a learning rate off the
curve with a *rule*. Afterwards the model, its optimizer and every global random state are
exactly as they were: a ``fit`` after the test gives the same result as without it.

    >>> import numpy as np, keras
    >>> from lrstudy.lr.range_test import lr_range_test
    >>> x = np.random.default_rng(0).normal(size=(128, 4)).astype("float32")
    >>> y = x @ np.ones((4, 1), "float32")
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    >>> result = lr_range_test(model, x, y, num_it=40, start_lr=1e-4, end_lr=10.0)
    >>> result.stop_reason in ("completed", "diverged", "nonfinite")
    True
    >>> base_lr, max_lr = result.bounds()

The rules that read a learning rate off the curve are :mod:`lrstudy.lr.suggestion_rules`,
chosen by name (``rule``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
from collections.abc import Iterator

import numpy as np

from lrstudy.lr.suggestion_rules import RULES, suggest
from lrstudy.tfquiet import LazyModule

keras = LazyModule("keras")  # imported when the range test runs, not to check a rule name

__all__ = [
    "FinderResult",
    "exponential_sweep",
    "lr_range_test",
    "smooth",
]




# --------------------------------------------------------------------------- sweep and smoothing


def exponential_sweep(start_lr: float, end_lr: float, num_it: int) -> np.ndarray:
    """The learning rates of the range test, one per step.

    ``lr_i = start_lr * (end_lr / start_lr) ** (i / (num_it - 1))`` for ``i = 0 .. num_it-1``:
    ``start_lr`` first, ``end_lr`` last, a constant ratio between neighbours.
    """
    _check_lr_range(start_lr, end_lr)
    _check_num_it(num_it)
    i = np.arange(num_it, dtype=np.float64)
    return start_lr * (end_lr / start_lr) ** (i / (num_it - 1))


def smooth(losses, beta: float = 0.98) -> np.ndarray:
    """Bias-corrected exponential moving average of ``losses``.

    ``avg_i = beta * avg_{i-1} + (1 - beta) * loss_i`` with ``avg_{-1} = 0``, and
    ``smoothed_i = avg_i / (1 - beta ** (i + 1))``, so a constant input comes out unchanged
    and ``beta = 0`` returns the input.
    """
    _check_beta(beta)
    losses = np.asarray(losses, dtype=np.float64)
    out = np.empty_like(losses)
    avg = 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1.0 - beta) * loss
        out[i] = avg / (1.0 - beta ** (i + 1))
    return out


def _rule_window(num_points: int, num_it: int) -> slice:
    """The part of the recorded curve the rules see (fastai's ``[num_it // 10 : -5]``).

    The first tenth of the sweep is dropped (the bias-corrected EMA is still mostly the raw,
    noisy loss there) and so are the last five points (the blow-up that ended the test).
    """
    return slice(num_it // 10, max(num_it // 10, num_points - 5))


# --------------------------------------------------------------------------- result


@dataclasses.dataclass
class FinderResult:
    """What an LR range test recorded and suggests.

    ``lrs``, ``losses`` and ``smoothed`` hold one entry per recorded (finite) step; a
    non-finite loss ends the test and is not recorded (``stop_reason == "nonfinite"``).
    ``suggestions`` holds every rule of :data:`RULES`, computed on ``smoothed`` without the
    first tenth of the sweep and the last five points; ``rule`` names the chosen one.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestions: dict[str, float | None]
    rule: str
    stop_reason: str

    @property
    def suggestion(self) -> float | None:
        """The chosen rule's suggestion: ``suggestions[rule]``."""
        return self.suggestions[self.rule]

    def bounds(self) -> tuple[float, float]:
        """``(base_lr, max_lr)`` for a cyclical or one-cycle policy, after Smith's recipe.

        ``max_lr`` is the chosen suggestion (``steepest``, then ``minimum``, when the chosen
        rule gave none) and ``base_lr = max_lr / 10``. Smith (2017) reads both bounds off the
        range test; the factor 10 is the usual simplification (Smith 2018 suggests a lower
        bound 3 to 20 times below the upper one, fastai's one-cycle starts 25 times below).
        """
        for name in (self.rule, "steepest", "minimum"):
            max_lr = self.suggestions.get(name)
            if max_lr is not None:
                return max_lr / 10.0, max_lr
        raise ValueError(
            "No suggestion to derive bounds from: the range test recorded "
            f"{len(self.lrs)} finite points (stop_reason={self.stop_reason!r}); run it "
            "with a larger `num_it` or a smaller `start_lr`."
        )

    def plot(self, ax=None):
        """Smoothed (and faint raw) loss against the LR on a log axis, one marker per rule.

        Draws on ``ax`` (a new figure when ``None``) and returns it.
        """
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots()
        ax.plot(self.lrs, self.losses, color="C0", alpha=0.25, label="loss (per batch)")
        ax.plot(self.lrs, self.smoothed, color="C0", label="loss (smoothed)")
        for k, (name, lr) in enumerate(self.suggestions.items(), start=1):
            if lr is None:
                continue
            at = np.interp(np.log10(lr), np.log10(self.lrs), self.smoothed)
            chosen = " (chosen)" if name == self.rule else ""
            ax.plot([lr], [at], "o", color=f"C{k}", label=f"{name}{chosen}: {lr:.2e}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.set_title(f"LR range test ({self.stop_reason})")
        ax.legend(loc="best")
        return ax

    def to_dict(self) -> dict:
        """Plain lists, floats and strings, ready for JSON; :meth:`from_dict` reverses it."""
        return {
            "lrs": [float(v) for v in self.lrs],
            "losses": [float(v) for v in self.losses],
            "smoothed": [float(v) for v in self.smoothed],
            "suggestions": {
                k: (None if v is None else float(v)) for k, v in self.suggestions.items()
            },
            "rule": self.rule,
            "stop_reason": self.stop_reason,
            "suggestion": None if self.suggestion is None else float(self.suggestion),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "FinderResult":
        """The result :meth:`to_dict` described."""
        return cls(
            lrs=np.asarray(data["lrs"], dtype=np.float64),
            losses=np.asarray(data["losses"], dtype=np.float64),
            smoothed=np.asarray(data["smoothed"], dtype=np.float64),
            suggestions=dict(data["suggestions"]),
            rule=data["rule"],
            stop_reason=data["stop_reason"],
        )


# --------------------------------------------------------------------------- the range test


def lr_range_test(
    model,
    x,
    y,
    *,
    batch_size: int = 32,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    beta: float = 0.98,
    stop_factor: float = 4.0,
    rule: str = "valley",
    seed: int = 0,
) -> FinderResult:
    """Run the LR range test on a compiled Keras model and restore it afterwards.

    Step ``i`` sets the optimizer's LR to ``start_lr * (end_lr / start_lr) ** (i / (num_it-1))``
    and trains on one batch; batches are drawn from ``x, y`` by cycling through permutations
    of a local ``np.random.default_rng(seed)``. The loss of each batch is recorded (not Keras's
    running average) and smoothed with :func:`smooth`. The test stops early when the smoothed
    loss exceeds ``stop_factor`` times the best smoothed loss so far (``"diverged"``; that last
    point is kept) or when a loss is NaN or infinite (``"nonfinite"``; that point is dropped).

    Whatever happens, also on an exception, the model's variables (trainable, non-trainable,
    seed-generator states), every optimizer variable (``iterations``, the LR, the slots) and
    the global random states (Python, NumPy, TensorFlow's eager op seeds and global generator,
    Keras's global seed generator) are put back as they were.

    Args:
        model: a compiled Keras model whose optimizer has a plain (settable) learning rate.
        x, y: the training data, arrays (or nested structures of arrays) of equal length.
        rule: the name in :data:`RULES` of the suggestion to use.

    Returns:
        A :class:`FinderResult`.
    """
    num_samples = _validate(
        x, y, batch_size, start_lr, end_lr, num_it, beta, stop_factor, rule, seed
    )
    optimizer = _settable_optimizer(model)
    lrs = exponential_sweep(start_lr, end_lr, num_it)
    batches = _batch_indices(num_samples, batch_size, seed)
    _build(model, optimizer, x)
    with _restored(model, optimizer):
        losses, stop_reason = _sweep(model, optimizer, x, y, lrs, batches, beta, stop_factor)
    losses = np.asarray(losses, dtype=np.float64)
    lrs = lrs[: len(losses)]
    smoothed = smooth(losses, beta)
    window = _rule_window(len(losses), num_it)
    return FinderResult(
        lrs=lrs,
        losses=losses,
        smoothed=smoothed,
        suggestions=suggest(lrs[window], smoothed[window]),
        rule=rule,
        stop_reason=stop_reason,
    )


def _sweep(model, optimizer, x, y, lrs, batches, beta, stop_factor) -> tuple[list[float], str]:
    """Train one batch per LR; return the finite per-batch losses and why the sweep ended."""
    losses: list[float] = []
    avg, best = 0.0, math.inf
    for i, lr in enumerate(lrs):
        index = next(batches)
        optimizer.learning_rate = float(lr)
        # Keras 3.15 `train_on_batch` resets the metrics before the step, so "loss" is the
        # loss of this batch alone (computed before the update), not a running average.
        logs = model.train_on_batch(_take(x, index), _take(y, index), return_dict=True)
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            return losses, "nonfinite"
        losses.append(loss)
        avg = beta * avg + (1.0 - beta) * loss
        smoothed = avg / (1.0 - beta ** (i + 1))
        if smoothed > stop_factor * best:
            return losses, "diverged"
        best = min(best, smoothed)
    return losses, "completed"


def _batch_indices(num_samples: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless full batches of indices: consecutive slices of fresh permutations.

    A permutation's remainder shorter than ``batch_size`` is dropped. The generator owns its
    ``np.random.default_rng(seed)``, so the global NumPy state is never touched.
    """
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(num_samples)
        for start in range(0, num_samples - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def _take(data, index):
    return keras.tree.map_structure(lambda a: np.asarray(a)[index], data)


# --------------------------------------------------------------------------- model and optimizer


def _settable_optimizer(model):
    """The model's optimizer, if its learning rate is a variable the test may set."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(model, "compiled", True):
        raise ValueError(
            "Argument `model` must be a compiled Keras model (call `model.compile()` first)."
        )
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    learning_rate = getattr(inner, "_learning_rate", None)
    schedule = keras.optimizers.schedules.LearningRateSchedule
    if isinstance(learning_rate, schedule) or callable(learning_rate):
        kind = type(learning_rate).__name__
        raise ValueError(
            f"The LR range test sets the learning rate itself, but this optimizer's learning rate "
            f"is a schedule ({kind}): compile the model with a float `learning_rate` for the test."
        )
    if not isinstance(learning_rate, keras.Variable):
        raise ValueError(
            "The LR range test needs an optimizer whose learning rate is a Keras variable. "
            f"Received: learning_rate={learning_rate!r}"
        )
    return optimizer


def _build(model, optimizer, x) -> None:
    """Create the model's and the optimizer's variables, so that all of them can be saved.

    Building creates variables from their initializers only (initializers carry their own
    seeds), so it draws nothing from the global random state; ``fit`` would build them the
    same way. An unbuilt model is called once in inference mode on a single sample.
    """
    if not model.built:
        model(_take(x, np.arange(1)), training=False)
    if not optimizer.built:
        optimizer.build(model.trainable_variables)


@contextlib.contextmanager
def _restored(model, optimizer):
    """Put the model, the optimizer and the global random states back on exit."""
    variables = _unique(
        list(model.variables) + list(optimizer.variables) + _lr_variables(optimizer)
    )
    saved = [np.array(v.numpy(), copy=True) for v in variables]
    rng_state = _global_random_state()
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
        model.reset_metrics()
        _set_global_random_state(rng_state)


def _lr_variables(optimizer) -> list:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    learning_rate = getattr(inner, "_learning_rate", None)
    return [learning_rate] if isinstance(learning_rate, keras.Variable) else []


def _unique(variables: list) -> list:
    seen, out = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


# --------------------------------------------------------------------------- global random state


def _global_random_state() -> dict:
    """Python's, NumPy's, Keras's and TensorFlow's global random states (those that exist)."""
    from keras.src.backend.common import global_state

    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "keras_generator": global_state.get_global_attribute("global_seed_generator"),
    }
    if state["keras_generator"] is not None:
        state["keras_generator_state"] = np.array(state["keras_generator"].state.numpy(), copy=True)
    if keras.backend.backend() == "tensorflow":
        from tensorflow.python.eager import context
        from tensorflow.python.ops import stateful_random_ops

        ctx = context.context()
        rng = getattr(ctx, "_rng", None)
        state["tf_op_seed_rng"] = rng
        state["tf_op_seed_state"] = rng.getstate() if rng is not None else None
        generator = getattr(stateful_random_ops, "global_generator", None)
        state["tf_generator"] = generator
        if generator is not None:
            state["tf_generator_state"] = np.array(generator.state.numpy(), copy=True)
    return state


def _set_global_random_state(state: dict) -> None:
    from keras.src.backend.common import global_state

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    generator = state["keras_generator"]
    global_state.set_global_attribute("global_seed_generator", generator)
    if generator is not None:
        generator.state.assign(state["keras_generator_state"])
    if "tf_op_seed_rng" in state:
        from tensorflow.python.eager import context
        from tensorflow.python.ops import stateful_random_ops

        ctx = context.context()
        rng = state["tf_op_seed_rng"]
        if rng is not None and (ctx._rng is not rng or rng.getstate() != state["tf_op_seed_state"]):
            rng.setstate(state["tf_op_seed_state"])
            ctx._rng = rng
            # Eager random kernels are cached per (seed, op seed) and keep their stream: the op
            # seeds drawn again from now on would continue streams the test advanced. Clear the
            # cache, as `tf.random.set_seed` does.
            from tensorflow.python import pywrap_tfe

            if ctx._context_handle is not None:
                pywrap_tfe.TFE_ContextClearCaches(ctx._context_handle)
        stateful_random_ops.global_generator = state["tf_generator"]
        if state["tf_generator"] is not None:
            state["tf_generator"].reset(state["tf_generator_state"])


# --------------------------------------------------------------------------- argument checks


def _validate(x, y, batch_size, start_lr, end_lr, num_it, beta, stop_factor, rule, seed) -> int:
    """Check every argument of :func:`lr_range_test`; return the number of samples."""
    _check_lr_range(start_lr, end_lr)
    _check_num_it(num_it)
    _check_beta(beta)
    if not _is_number(stop_factor) or not stop_factor > 1:
        raise ValueError(
            f"Argument `stop_factor` must be > 1. Received: stop_factor={stop_factor!r}"
        )
    if rule not in RULES:
        raise ValueError(f"Argument `rule` must be one of {sorted(RULES)}. Received: rule={rule!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"Argument `seed` must be an integer >= 0. Received: seed={seed!r}")
    num_samples = _num_samples(x, "x")
    if _num_samples(y, "y") != num_samples:
        raise ValueError(
            "Arguments `x` and `y` must have the same number of samples. "
            f"Received: len(x)={num_samples}, len(y)={_num_samples(y, 'y')}"
        )
    if not _is_int(batch_size) or not 1 <= batch_size <= num_samples:
        raise ValueError(
            f"Argument `batch_size` must be an integer between 1 and len(x)={num_samples}. "
            f"Received: batch_size={batch_size!r}"
        )
    return num_samples


def _check_lr_range(start_lr, end_lr) -> None:
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"Argument `{name}` must be a finite number > 0. Received: {name}={value!r}"
            )
    if not start_lr < end_lr:
        raise ValueError(
            "Argument `end_lr` must be > `start_lr`. "
            f"Received: start_lr={start_lr!r}, end_lr={end_lr!r}"
        )


def _check_num_it(num_it) -> None:
    if not _is_int(num_it) or num_it < 2:
        raise ValueError(f"Argument `num_it` must be an integer >= 2. Received: num_it={num_it!r}")


def _check_beta(beta) -> None:
    if not _is_number(beta) or not 0 <= beta < 1:
        raise ValueError(f"Argument `beta` must be in [0, 1). Received: beta={beta!r}")


def _num_samples(data, name: str) -> int:
    leaves = keras.tree.flatten(data)
    if not leaves or np.ndim(leaves[0]) == 0:
        raise ValueError(
            f"Argument `{name}` must be an array of samples. Received: {name}={data!r:.80}"
        )
    return len(leaves[0])


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
