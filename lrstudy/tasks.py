"""What a budget's ``task`` changes: the loss, the metrics and the primary metric.

- ``classification`` (integer labels 0 .. k-1): sparse categorical cross-entropy, accuracy;
  the primary metric is ``accuracy``, higher is better.
- ``regression`` (one float target): mean squared error, with MAE and RMSE; the primary
  metric is ``rmse``, lower is better, and a budget's ``target`` is an RMSE to reach.

The MLflow names follow Keras's: ``loss``/``val_loss``/``test_loss`` for both, then
``accuracy``/``val_accuracy``/``test_accuracy`` or ``mae``, ``rmse`` and their ``val_`` and
``test_`` forms.
"""

from __future__ import annotations

import dataclasses

TASKS = ("classification", "regression")


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    metrics: tuple[str, ...]  # Keras's metric names, in the order model.evaluate returns them
    primary: str              # what the summary ranks on
    higher_is_better: bool

    @property
    def val_metric(self) -> str:
        return f"val_{self.primary}"

    @property
    def test_metric(self) -> str:
        return f"test_{self.primary}"

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b

    def reached(self, value: float, target: float) -> bool:
        """Whether ``value`` reaches ``target`` (>= for accuracy, <= for an RMSE)."""
        return value >= target if self.higher_is_better else value <= target

    def compile_args(self, keras, from_logits: bool) -> tuple:
        """(loss, metrics) for ``model.compile``."""
        if self.name == "regression":
            return (keras.losses.MeanSquaredError(),
                    [keras.metrics.MeanAbsoluteError(name="mae"),
                     keras.metrics.RootMeanSquaredError(name="rmse")])
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), ["accuracy"]


CLASSIFICATION = Task("classification", ("accuracy",), "accuracy", True)
REGRESSION = Task("regression", ("mae", "rmse"), "rmse", False)
_BY_NAME = {t.name: t for t in (CLASSIFICATION, REGRESSION)}


def get(name: str) -> Task:
    if name not in _BY_NAME:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {name!r}")
    return _BY_NAME[name]
