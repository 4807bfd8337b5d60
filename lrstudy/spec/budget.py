"""A budget: what a scenario trains on (model, data, batch, epochs), its defaults, its checks
and its words. Scenarios are comparable only within one budget."""

from __future__ import annotations

import math
from pathlib import Path

from lrstudy import tasks
from lrstudy.data import sources
from lrstudy.spec import fields
from lrstudy.spec.fields import SpecError

SUBSTITUTED = "dataset_substituted"  # budget key (and tag) of data used in place of another
#: The training pool of each built-in dataset (its test set apart), as
#: :func:`lrstudy.data.datasets.pool_size` gives it (a test keeps them equal).
DATASET_SIZES = {"fashion_mnist": 60000, "mnist": 60000, "synthetic": 1000, "digits": 1437,
                 "friedman1": 10000, "sequence": 10000}
#: Default targets: a validation accuracy, or for a regression a validation RMSE.
TARGETS = {"fashion_mnist": 0.85, "mnist": 0.97, "synthetic": 0.6, "digits": 0.95,
           "friedman1": 0.3, "sequence": 0.9}
#: The built-in datasets that are not classifications (a test keeps this equal to
#: :func:`lrstudy.data.datasets.task_of`).
REGRESSION_DATASETS = ("friedman1",)

BUDGET_DEFAULTS = {
    "model": "mlp128",
    "dataset": "fashion_mnist",
    "dataset_fallback": "",
    "train_size": 0,  # 0: every image not in the validation set
    "val_size": 10000,  # 0: no validation set (a tutorial that had none)
    # or "random.sample" (the decay tutorial's draw), both at a fixed seed; or "per-seed":
    # each trial's seed draws its train/validation split (lrstudy.data.splits.BUDGET_SPLITS)
    "split": "seeded",
    "batch_size": 32,
    "epochs": 5,
    "target": 0.0,  # 0: the dataset's default target validation accuracy
    "log_every": 1,
    "steps_per_execution": 0,  # 0: automatic
    "jit_compile": True,
    "task": "classification",  # or "regression" (a user's dataset, see lrstudy.data.sources)
    "test_size": sources.DEFAULT_TEST_SIZE,  # a user's dataset without a test split of its own
}
#: Budget keys left out of the run key at their default (the keys of older studies stand).
KEY_WHEN_SET = ("task", "test_size", "split")
#: The validation set of a built-in dataset when the study does not say.
DEFAULT_VAL_SIZE = 10000
DATA_VAL_FRACTION = 1 / 6  # of a user source's training pool, as lrstudy.data.datasets's default


def budget_label(budget: dict) -> str:
    """A budget in words, from its ``model``, ``dataset``, ``train_size``, ``batch_size`` and
    ``epochs`` (and ``val_size`` and ``split`` where known): ``mlp128 on fashion_mnist
    (50000 train / 10000 val), batch 128, 8 epochs``; "?" for a value that is missing."""
    def get(key):
        value = budget.get(key)
        if value is None or value != value:  # missing, or NaN from a frame
            return "?"
        return int(value) if isinstance(value, float) and value.is_integer() else value

    sizes = f"{get('train_size')} train"
    if budget.get("val_size") is not None:
        sizes += f" / {get('val_size')} val"
    if budget.get("split") == "per-seed":
        sizes += ", split per seed"
    return (f"{get('model')} on {get('dataset')} ({sizes}), batch {get('batch_size')}, "
            f"{get('epochs')} epochs")


def check_budget(where: str, budget: dict) -> dict:
    fields.table(where, budget)
    fields.unknown(where, budget, BUDGET_DEFAULTS)
    out = dict(budget)
    for key, value in budget.items():
        default = BUDGET_DEFAULTS[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise SpecError(f"{where}: key {key!r} must be true or false, "
                                f"got {fields.show(value)}")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(f"{where}: key {key!r} must be an integer, got {fields.show(value)}")
        elif key == "dataset":
            if not isinstance(value, (str, dict)):
                raise SpecError(f"{where}: key 'dataset' must be a name, "
                                f"\"package.module:function\" or a table, got {fields.show(value)}")
        elif isinstance(default, float):
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value)):
                raise SpecError(f"{where}: key {key!r} must be a finite number, "
                                f"got {fields.show(value)}")
            out[key] = float(value)
        else:
            fields.string(where, key, value)
    return out


def check_values(where: str, budget: dict) -> None:
    for key in ("epochs", "batch_size", "log_every"):
        fields.count(where, key, budget[key], low=1)
    for key in ("train_size", "val_size", "steps_per_execution"):
        fields.count(where, key, budget[key], low=0)
    from lrstudy.data.splits import BUDGET_SPLITS, PER_SEED

    if budget["split"] not in BUDGET_SPLITS:
        raise SpecError(f"{where}: split must be one of {', '.join(map(repr, BUDGET_SPLITS))}"
                        f", got {fields.show(budget['split'])}")
    if (budget["split"] == PER_SEED and sources.is_spec(budget["dataset"])
            and sources.sizes(budget["dataset"])[1] is not None):
        raise SpecError(f"{where}: split = \"per-seed\" redraws the validation set, but "
                        f"{sources.label(budget['dataset'])} brings its own (x_val, y_val)")
    if budget["task"] == "classification" and not 0 <= budget["target"] <= 1:
        raise SpecError(f"{where}: target must be a validation accuracy in [0, 1], "
                        f"got {budget['target']}")
    if budget["target"] < 0:
        raise SpecError(f"{where}: target must be a validation RMSE >= 0, "
                        f"got {budget['target']}")
    if sources.is_spec(budget["dataset"]):
        size = sum(n or 0 for n in sources.sizes(budget["dataset"]))
        what = f"{sources.label(budget['dataset'])} has {size} rows"
    else:
        size = DATASET_SIZES.get(budget["dataset"])
        what = f"{budget['dataset']} has {size} training images"
    if size is None:
        raise SpecError(f"{where}: unknown dataset {budget['dataset']!r}; "
                        f"known: {', '.join(DATASET_SIZES)}")
    if budget["val_size"] >= size:
        raise SpecError(f"{where}: val_size {budget['val_size']} leaves no training data "
                        f"({what})")
    room = size - budget["val_size"]
    if budget["train_size"] > room:
        raise SpecError(f"{where}: train_size {budget['train_size']} is larger than the data: "
                        f"{room} examples are left after {budget['val_size']} for validation "
                        f"({what})")
    train = budget["train_size"] or room
    if budget["batch_size"] > train:
        raise SpecError(f"{where}: batch_size {budget['batch_size']} is larger than the "
                        f"training set ({train} examples)")


def resolve_dataset(where: str, budget: dict, base: Path, resolved: dict) -> dict:
    """The budget with its dataset resolved: a user source becomes its spec (loaded and
    checked, see :mod:`lrstudy.data.sources`), and an unset ``val_size`` its default (10,000
    images of a built-in dataset; a user source's own validation set, else a sixth of its
    training pool). ``resolved`` caches the specs of one study file."""
    out = dict(budget)
    if out["task"] not in tasks.TASKS:
        raise SpecError(f"{where}: task must be one of {', '.join(tasks.TASKS)}, "
                        f"got {fields.show(out['task'])}")
    dataset = out["dataset"]
    if isinstance(dataset, str) and (dataset in DATASET_SIZES or sources.is_spec(dataset)):
        own = "regression" if dataset in REGRESSION_DATASETS else "classification"
        if dataset in DATASET_SIZES and out["task"] != own:
            raise SpecError(f"{where}: {dataset} is a {own} dataset: set task = \"{own}\", "
                            f"not {out['task']!r}")
        if out["val_size"] is None:
            out["val_size"] = DEFAULT_VAL_SIZE
        return out
    if isinstance(dataset, str) and ":" not in dataset:
        raise SpecError(f"{where}: unknown dataset {dataset!r}; known: "
                        f"{', '.join(DATASET_SIZES)}, \"package.module:function\", "
                        "{ csv = ... }, { npz = ... } or { images = ... }")
    test_size = out["test_size"]
    cache = repr((dataset, out["task"], test_size))
    if cache not in resolved:
        try:
            test_size = sources.check_test_size(where, test_size)
            resolved[cache] = sources.resolve(where, dataset, base, out["task"], test_size)
        except ValueError as exc:  # DataError included: bad data, one line
            msg = " ".join(str(exc).split())
            raise SpecError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    out["dataset"] = resolved[cache]
    n, n_val = sources.sizes(out["dataset"])
    if n_val is not None:
        out["val_size"] = n_val
    elif out["val_size"] is None:
        out["val_size"] = max(1, round(n * DATA_VAL_FRACTION))
    return out


def substitute(budget: dict, unavailable: dict) -> dict:
    """``budget`` with its ``dataset_fallback`` in place of a dataset that cannot be had here,
    marked ``dataset_substituted = "mnist -> fashion_mnist"`` (a tag of its runs): the target,
    the sizes and the run key then follow the data really used. ``unavailable`` caches the
    reason per dataset (a study asks once)."""
    requested, fallback = budget["dataset"], budget["dataset_fallback"]
    if not fallback or not isinstance(requested, str):
        return budget
    if requested not in unavailable:
        from lrstudy.data import datasets as data

        unavailable[requested] = data.unavailable(requested)
    if unavailable[requested] is None:
        return budget
    return {**budget, "dataset": fallback, "dataset_fallback": "",
            SUBSTITUTED: f"{requested} -> {fallback}"}
