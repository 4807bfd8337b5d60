"""Datasets by name, loaded as training, validation and test sets.

Six datasets, chosen by name (:data:`DATASETS`):

- ``fashion_mnist`` (the default): the four idx files, located, SHA-256 verified and cached as
  ``.npy`` arrays by :mod:`lrstudy.data.fashion_mnist`, so a load is a memory map plus a gather.
- ``mnist``: through ``keras.datasets.mnist.load_data()`` (a filled Keras cache or the network).
- ``synthetic``: the TensorFlow tutorial's random data, 20 features in [0, 1), binary labels.
- ``digits``: scikit-learn's bundled 8x8 handwritten digits, 10 classes
  (:mod:`lrstudy.data.sklearn_bundled`).
- ``friedman1``: Friedman's regression problem #1, 10 features, a standardized float target
  (task ``regression``; :mod:`lrstudy.data.generated`).
- ``sequence``: one-hot token sequences (16 x 16), the label the token the first one points
  to, 16 classes (:mod:`lrstudy.data.generated`).

Images are float32 in [0, 1] (``x / 255``), labels int32 (float32 targets for a regression).
The training and validation sets are made for TensorFlow to share (:mod:`lrstudy.data.aligned`).
The datasets drawn or shipped by a library (``digits``, ``friedman1``, ``sequence``) carry the
SHA-256 of their arrays as :attr:`Dataset.digest` (logged as ``dataset.sha256``): their
content comes from code, not from files verified where they are read.

The validation and training sets are taken from the training pool as
:mod:`lrstudy.data.splits` draws them (a seeded split whose validation set does not change with
``train_size``); the test set is returned whole, the same whatever the split's seed.

Data that cannot be had raises :class:`DataError` (defined beside the Fashion-MNIST files,
which raise most of them, and re-exported here). This module imports TensorFlow/Keras only
when ``mnist``, a download or seeding is asked for.

>>> ds = load("synthetic", train_size=100, val_size=50)
>>> ds.x_train.shape, ds.x_val.shape, ds.x_test.shape, ds.num_classes
((100, 20), (50, 20), (200, 20), 2)

Command line (used by the Makefile): ``python -m lrstudy.data.datasets ensure [NAME]`` prints the cache
path, or one line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np

from lrstudy import cache
from lrstudy.data import aligned, fashion_mnist, generated, sklearn_bundled, sources, splits
from lrstudy.errors import DataError, one_line

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "check",
    "ensure",
    "fingerprint",
    "load",
    "pool_size",
    "task_of",
    "unavailable",
]

DATASETS = ("fashion_mnist", "mnist", "synthetic", "digits", "friedman1", "sequence")
#: The synthetic pool and test set are drawn from this seed, whatever the split's.
SYNTHETIC_SEED = splits.DEFAULT_SPLIT_SEED
SYNTHETIC_FEATURES = 20
SYNTHETIC_TRAIN = 1000
SYNTHETIC_TEST = 200
MNIST_TRAIN = 60000


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/validation/test split; images float32 in [0, 1], labels int32."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    #: "classification" (int32 labels) or "regression" (float32 targets, num_classes 1)
    task: str = "classification"
    #: SHA-256 of a user source's arrays (:func:`lrstudy.data.sources.fingerprint`), else ""
    digest: str = ""

    @property
    def input_shape(self) -> tuple:
        """The shape of one example, ``x_train.shape[1:]``."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.x_train)}, val={len(self.x_val)}, "
            f"test={len(self.x_test)}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes})"
        )


# --------------------------------------------------------------------------------------------
# mnist and synthetic


def _mnist_file() -> Path:
    return fashion_mnist.keras_home() / "datasets" / "mnist.npz"


def _mnist_unavailable() -> str | None:
    """Why mnist cannot be had, or None when Keras's cache has it or the network is up."""
    if _mnist_file().is_file():
        return None
    reason = fashion_mnist.network_unreachable()
    if reason:
        return (
            f"mnist is not available offline: {_mnist_file()} is missing and {reason}; "
            "put mnist.npz there or use fashion_mnist"
        )
    return None


def _mnist_arrays() -> dict[str, np.ndarray]:
    reason = _mnist_unavailable()
    if reason:
        raise DataError(reason)
    try:
        from lrstudy import tfquiet

        keras = tfquiet.import_tensorflow("keras")
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # noqa: BLE001 - any failure becomes our one-line error
        raise DataError(
            f"mnist is not available offline: Keras's loader failed ({one_line(exc)}); "
            f"put mnist.npz in {_mnist_file().parent} or use fashion_mnist"
        ) from None
    return {
        "x_train": fashion_mnist.normalize(x_train),
        "y_train": y_train.astype(np.int32),
        "x_test": fashion_mnist.normalize(x_test),
        "y_test": y_test.astype(np.int32),
    }


def _synthetic_arrays(seed: int) -> dict[str, np.ndarray]:
    """The TensorFlow tutorial's random data, deterministic from ``seed``.

    ``x ~ U[0, 1)^20`` (float32), ``y ~ U{0, 1}``: 1000 pool points and 200 test points.
    """
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.random((SYNTHETIC_TRAIN, SYNTHETIC_FEATURES), dtype=np.float32),
        "y_train": rng.integers(0, 2, SYNTHETIC_TRAIN, dtype=np.int32),
        "x_test": rng.random((SYNTHETIC_TEST, SYNTHETIC_FEATURES), dtype=np.float32),
        "y_test": rng.integers(0, 2, SYNTHETIC_TEST, dtype=np.int32),
    }


_NUM_CLASSES = {"fashion_mnist": 10, "mnist": 10, "synthetic": 2, "digits": 10,
                "friedman1": 1, "sequence": generated.SEQUENCE_VOCAB}
#: The built-in datasets whose task is not a classification.
_TASKS = {"friedman1": "regression"}
#: The built-in datasets made by code in memory, each ``() -> ((x, y), (x_test, y_test))``
#: (``synthetic`` aside: its draw predates the fingerprint, see :func:`fingerprint`).
_GENERATED = {"digits": sklearn_bundled.digits, "friedman1": generated.friedman1,
              "sequence": generated.sequence}
#: The built-ins that scikit-learn makes.
_SKLEARN = ("digits", "friedman1")
#: The training pools (before the validation split) that are known without loading.
_POOL_SIZES = {"mnist": MNIST_TRAIN, "synthetic": SYNTHETIC_TRAIN,
               "digits": sklearn_bundled.DIGITS_IMAGES - sklearn_bundled.DIGITS_TEST, "friedman1": generated.POOL,
               "sequence": generated.POOL}


def _generated_arrays(name: str) -> dict[str, np.ndarray]:
    (x_train, y_train), (x_test, y_test) = _GENERATED[name]()
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def task_of(name: str) -> str:
    """The task of built-in dataset ``name``: ``classification`` or ``regression``."""
    return _TASKS.get(_builtin(name), "classification")


def pool_size(name: str) -> int:
    """How many examples the training and validation sets of built-in ``name`` are carved
    from (without building its arrays; Fashion-MNIST's is its cache's or its files')."""
    if _builtin(name) == "fashion_mnist":
        return fashion_mnist.pool_size()
    return _POOL_SIZES[name]


@functools.cache
def fingerprint(name: str) -> str:
    """The SHA-256 of a generated built-in's arrays (:func:`lrstudy.data.sources.fingerprint`
    of the pool and the test set, in the order of their names), as a user source's is taken;
    "" for the others (Fashion-MNIST's files are SHA-256 verified where they are read;
    mnist's come from Keras; ``synthetic`` keeps the run params it always had)."""
    if _builtin(name) not in _GENERATED:
        return ""
    arrays = _generated_arrays(name)
    return sources.fingerprint(*(arrays[k] for k in sorted(arrays)))


def _builtin(name) -> str:
    if name not in DATASETS:
        raise ValueError(f"Argument `name` must be one of {DATASETS}. Received: name={name!r}")
    return name


def _check_name(name) -> str:
    if sources.is_spec(name):
        return name
    return _builtin(name)


# --------------------------------------------------------------------------------------------
# Public entry points


def load(
    name: str = "fashion_mnist",
    *,
    train_size: int | None = None,
    val_size: int | None = None,
    val_fraction: float | None = None,
    split_seed: int = splits.DEFAULT_SPLIT_SEED,
    split: str = "seeded",
) -> Dataset:
    """Load ``name`` and split its training pool into training and validation sets.

    ``split`` is ``"seeded"`` (:func:`~lrstudy.data.splits.split_indices`) or
    ``"random.sample"`` (the decay tutorial's draw, :func:`~lrstudy.data.splits.sample_split`;
    ``val_fraction`` does not apply). Fashion-MNIST is served from the array cache (built on
    first use, see :func:`ensure`). Raises ValueError for bad arguments and
    :class:`DataError` when the data cannot be had.
    """
    _check_name(name)
    seed = splits.check_seed(split_seed)
    splits.check_split(split)
    if sources.is_spec(name):
        return _load_source(name, train_size=train_size, val_size=val_size,
                            val_fraction=val_fraction, seed=seed)
    if name == "fashion_mnist":
        arrays = fashion_mnist.arrays()
    elif name == "mnist":
        arrays = _mnist_arrays()
    elif name in _GENERATED:
        arrays = _generated_arrays(name)
    else:
        arrays = _synthetic_arrays(SYNTHETIC_SEED)
    if split == "random.sample":
        val, train = splits.sample_split(len(arrays["y_train"]), train_size=train_size,
                                  val_size=val_size or 0, seed=seed)
    else:
        val, train = splits.split_indices(len(arrays["y_train"]), train_size=train_size,
                                   val_size=val_size, val_fraction=val_fraction, seed=seed)
    x, y = arrays["x_train"], arrays["y_train"]
    return Dataset(
        name=name,
        x_train=aligned.take(x, train),
        y_train=aligned.take(y, train),
        x_val=aligned.take(x, val),
        y_val=aligned.take(y, val),
        x_test=np.array(arrays["x_test"]),
        y_test=np.array(arrays["y_test"]),
        num_classes=_NUM_CLASSES[name],
        task=task_of(name),
        digest=fingerprint(name),
    )


def _load_source(spec: str, *, train_size, val_size, val_fraction, seed) -> Dataset:
    """A user source (:mod:`lrstudy.data.sources`): its own validation set, or one carved by
    :func:`~lrstudy.data.splits.split_indices`; its test set, its own or carved when the study
    was loaded."""
    arrays = sources.arrays(spec)
    s = sources.parse(spec)
    if "x_val" in arrays:
        n = len(arrays["y_train"])
        train = np.arange(train_size or n)
        x_val, y_val = arrays["x_val"], arrays["y_val"]
    else:
        val, train = splits.split_indices(len(arrays["y_train"]), train_size=train_size,
                                   val_size=val_size, val_fraction=val_fraction, seed=seed)
        x_val = aligned.take(arrays["x_train"], val)
        y_val = aligned.take(arrays["y_train"], val)
    return Dataset(
        name=sources.label(spec),
        x_train=aligned.take(arrays["x_train"], train),
        y_train=aligned.take(arrays["y_train"], train),
        x_val=np.asarray(x_val),
        y_val=np.asarray(y_val),
        x_test=np.array(arrays["x_test"]),
        y_test=np.array(arrays["y_test"]),
        num_classes=sources.num_classes(s, arrays),
        task=s["task"],
        digest=s.get("sha256") or sources.fingerprint(*(arrays[k] for k in sorted(arrays))),
    )


def check(
    name: str,
    *,
    train_size: int | None = None,
    val_size: int | None = None,
    val_fraction: float | None = None,
    split_seed: int = splits.DEFAULT_SPLIT_SEED,
    split: str = "seeded",
) -> None:
    """Validate the arguments of :func:`load` and that the data can be had, cheaply.

    Builds no arrays: Fashion-MNIST's cache is looked for, else its files are located and
    verified (through Keras's download if no copy is found, as :func:`load` would); mnist's
    Keras cache file or download host is looked for. Raises ValueError or
    :class:`DataError` with one line; returns None when :func:`load` would succeed.
    """
    _check_name(name)
    splits.check_seed(split_seed)
    splits.check_split(split)
    if sources.is_spec(name):
        n, n_val = sources.sizes(name)  # loaded and checked (DataError) when the study was
        if n_val is not None:
            return
    elif name == "fashion_mnist":
        n = fashion_mnist.pool_size()
    elif name == "mnist":
        reason = _mnist_unavailable()
        if reason:
            raise DataError(reason)
        n = MNIST_TRAIN
    else:
        if name in _SKLEARN and importlib.util.find_spec("sklearn") is None:
            raise DataError(f"{name} needs scikit-learn, which is not installed: "
                            "pip install scikit-learn")
        n = _POOL_SIZES[name]
    splits.sizes(n, train_size=train_size, val_size=val_size, val_fraction=val_fraction)


def unavailable(name: str) -> str | None:
    """Why ``name`` cannot be had here (one line), or None when :func:`load` can have it."""
    try:
        check(name)
    except DataError as exc:
        return str(exc)
    return None


def ensure(name: str = "fashion_mnist") -> Path:
    """Make sure the data of ``name`` is there; return where it lives.

    ``fashion_mnist``: builds the array cache if needed (locating, verifying and parsing the
    source files) and returns the cache directory. ``mnist``: has Keras fetch it if needed and
    returns Keras's ``mnist.npz``. ``synthetic`` and the datasets drawn or shipped by a
    library (``digits``, ``friedman1``, ``sequence``) are made in memory: they are made once
    (so a missing scikit-learn shows here) and :func:`lrstudy.cache.root`
    is returned (nothing is written).
    """
    _check_name(name)
    if name == "fashion_mnist":
        fashion_mnist.arrays()
        return fashion_mnist.cache_dir()
    if name == "mnist":
        _mnist_arrays()
        return _mnist_file()
    if name in _GENERATED:
        try:
            _generated_arrays(name)
        except ImportError as exc:
            raise DataError(f"{name} needs scikit-learn: {one_line(exc)}") from None
    return cache.root()


def load_cached(name: str, train_size: int, val_size: int, *, split: str = "seeded",
                seed: int | None = None) -> Dataset:
    """:func:`load` once per process and set-up (the seeds of a scenario share the arrays).
    ``train_size`` 0: all. ``split``: a budget's (:data:`~lrstudy.data.splits.BUDGET_SPLITS`);
    for :data:`~lrstudy.data.splits.PER_SEED`, ``seed`` (the trial's) is the split's seed and
    must be given, else it is not used. No fallback here: a study substitutes data that cannot be had when it is loaded
    (:func:`lrstudy.spec.study.load_study`), and says so."""
    if split != splits.PER_SEED:
        return _load_cached(name, train_size, val_size, split, splits.DEFAULT_SPLIT_SEED)
    if seed is None:
        raise ValueError('split = "per-seed" draws the train/validation split from the '
                         "trial's seed, and no seed was given")
    return _load_cached(name, train_size, val_size, splits.draw(split), splits.check_seed(seed))


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, train_size: int, val_size: int, split: str, split_seed: int
                 ) -> Dataset:
    return load(name, train_size=train_size or None, val_size=val_size, split=split,
                split_seed=split_seed)


def main(argv: list[str] | None = None) -> int:
    """``python -m lrstudy.data.datasets ensure [NAME]``: print the data path, or one line and 2."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lrstudy.data.datasets", description="Datasets.")
    commands = parser.add_subparsers(dest="command", required=True)
    ensure_cmd = commands.add_parser("ensure", help="make sure a dataset is there")
    ensure_cmd.add_argument("name", nargs="?", default="fashion_mnist", help=f"one of {DATASETS}")
    args = parser.parse_args(argv)
    try:
        path = ensure(args.name)
    except ValueError as exc:  # DataError included
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
