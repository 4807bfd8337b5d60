"""Datasets, splits and caching.

Three datasets, chosen by name (:data:`DATASETS`):

- ``fashion_mnist`` (the default): the four idx ``.gz`` files, looked for in
  ``$LRSTUDY_DATA_DIR``, the Keras cache (``~/.keras/datasets/fashion-mnist/``), Debian's package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``), then fetched by Keras's own
  download. The files are SHA-256 verified, parsed once and cached as ``.npy`` arrays under
  ``$LRSTUDY_CACHE_DIR`` (default ``~/.cache/lrstudy/``), so a load is a memory map plus a gather.
- ``mnist``: through ``keras.datasets.mnist.load_data()`` (a filled Keras cache or the network).
- ``synthetic``: the TensorFlow tutorial's random data, 20 features in [0, 1), binary labels.

Images are float32 in [0, 1] (``x / 255``), labels int32. The validation set is carved from the
training pool with a fixed seed, before the training subset, so it does not change with
``train_size``; the test set is returned whole::

    perm = default_rng(split_seed).permutation(n_pool)
    val = perm[:val_size]                      # val_size = round(val_fraction * n_pool)
    train = perm[val_size:val_size + train_size]

This module imports TensorFlow/Keras only when ``mnist`` or a download is asked for.

>>> ds = load("synthetic", train_size=100, val_size=50)
>>> ds.x_train.shape, ds.x_val.shape, ds.x_test.shape, ds.num_classes
((100, 20), (50, 20), (200, 20), 2)

Command line (used by the Makefile): ``python -m lrstudy.data ensure [NAME]`` prints the cache
path, or one line on stderr and exit status 2.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import numbers
import operator
import os
import socket
import sys
import tempfile
import urllib.request
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = [
    "CACHE_DIR_ENV",
    "CANDIDATES_ONLY_ENV",
    "DATASETS",
    "DATA_DIR_ENV",
    "DEBIAN_DIR",
    "DataError",
    "Dataset",
    "FASHION_MNIST_SHA256",
    "cache_root",
    "check",
    "default_candidates",
    "ensure",
    "fashion_mnist_dir",
    "keras_home",
    "load",
    "read_idx",
    "split_indices",
]

DATASETS = ("fashion_mnist", "mnist", "synthetic")
DATA_DIR_ENV = "LRSTUDY_DATA_DIR"
CANDIDATES_ONLY_ENV = "LRSTUDY_DATA_CANDIDATES_ONLY"
CACHE_DIR_ENV = "LRSTUDY_CACHE_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

#: SHA-256 of the four Fashion-MNIST files (the same bytes in Debian's package and Keras's cache).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
# Array name -> idx file name.
_FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
FASHION_MNIST_FIX = (
    "install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
    f"or set {DATA_DIR_ENV} to a directory with the four idx .gz files"
)

DEFAULT_SPLIT_SEED = 9125
DEFAULT_VAL_FRACTION = 1 / 6  # 10,000 of the 60,000 training images
SYNTHETIC_FEATURES = 20
SYNTHETIC_TRAIN = 1000
SYNTHETIC_TEST = 200
MNIST_TRAIN = 60000

# Where Keras downloads from; probed (3 s timeout) before a download so that offline fails fast.
KERAS_DOWNLOAD_HOST = ("storage.googleapis.com", 443)
_PROBE_TIMEOUT_S = 3.0
_CACHE_FORMAT = 1
_MANIFEST = "manifest.json"

# idx type code -> big-endian NumPy dtype (yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataError(ValueError):
    """The data cannot be had: a file is missing, corrupted or not downloadable.

    The message is one line naming the file or dataset and the fix.
    """


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
# idx files


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an idx file (gzip-compressed or raw) into a native-endian array.

    Layout: two zero bytes, a type code (0x08 uint8 ... 0x0E float64), the number of dimensions
    ``d``, ``d`` big-endian uint32 sizes, then ``prod(sizes) * itemsize`` bytes of data.
    A wrong magic, an unknown type code or a byte count that differs from what the header
    announces (a truncated file) raises :class:`DataError` naming the file.
    """
    path = Path(path)
    raw = _read_bytes(path)
    dtype, dims, offset = _parse_idx_header(raw, path)
    expected = offset + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(
            f"{path}: idx file {problem} ({len(raw)} bytes, the header {dims} announces "
            f"{expected}); replace the file with a complete copy"
        )
    array = np.frombuffer(raw, dtype=dtype, count=math.prod(dims), offset=offset)
    return array.reshape(dims).astype(dtype.newbyteorder("="))


def _read_bytes(path: Path, limit: int = -1) -> bytes:
    """The file's bytes (the first ``limit`` if given), gunzipped when it starts with 1f 8b."""
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            if not gzipped:
                return f.read(limit)
            with gzip.GzipFile(fileobj=f) as g:
                return g.read(limit)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: unreadable gzip data ({_one_line(exc)})") from None


def _parse_idx_header(raw: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, dims, data offset) from the first bytes of an idx file."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(
            f"{path}: not an idx file (magic bytes {raw[:4].hex(' ') or 'missing'}, expected "
            "00 00 <type code 08-0e> <ndim>); replace the file with a complete copy"
        )
    ndim = raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DataError(f"{path}: idx file truncated inside its header of {ndim} dimensions")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return _IDX_DTYPES[raw[2]], dims, offset


def _idx_dims(path: Path) -> tuple[int, ...]:
    """The dimensions announced by an idx file's header, read without parsing the data."""
    head = _read_bytes(path, limit=4 + 4 * 255)
    return _parse_idx_header(head, path)[1]


# --------------------------------------------------------------------------------------------
# Locating Fashion-MNIST


def keras_home() -> Path:
    """Keras's cache root as Keras computes it: ``$KERAS_HOME``, else ``~/.keras``."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"])
    home = Path.home()
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"


def default_candidates() -> tuple[Path, ...]:
    """Where Fashion-MNIST is looked for, in order.

    ``$LRSTUDY_DATA_DIR`` (when set), the Keras cache ``<keras home>/datasets/fashion-mnist``,
    then :data:`DEBIAN_DIR`. With ``$LRSTUDY_DATA_CANDIDATES_ONLY=1`` only
    ``$LRSTUDY_DATA_DIR`` is searched (none when it is unset): a machine's Keras cache and
    Debian copy are hidden, e.g. to test what happens where there is no data.
    """
    env = os.environ.get(DATA_DIR_ENV)
    explicit = (Path(env).expanduser(),) if env else ()
    if os.environ.get(CANDIDATES_ONLY_ENV, "") not in ("", "0"):
        return explicit
    return explicit + (keras_home() / "datasets" / "fashion-mnist", DEBIAN_DIR)


def fashion_mnist_dir(
    candidates: Iterable[str | os.PathLike] | None = None, *, download: bool = True
) -> Path:
    """The first candidate directory holding all four Fashion-MNIST files, SHA-256 verified.

    ``candidates`` defaults to :func:`default_candidates`. A directory that lacks a file is
    skipped; a directory whose files do not match :data:`FASHION_MNIST_SHA256` raises
    :class:`DataError` (a corrupted copy is reported, never stepped over). When no candidate
    has the files and ``download`` is true, Keras's own download is tried (it fails fast
    offline); any failure becomes a :class:`DataError` that names the fix.
    """
    dirs = default_candidates() if candidates is None else tuple(Path(c) for c in candidates)
    for directory in dirs:
        if _has_all_files(directory):
            return _verified(directory)
    looked = ", ".join(str(d) for d in dirs) or "no candidate directory"
    reason = "the download was not attempted"
    if download:
        reason = _keras_download_fashion_mnist()
        downloaded = keras_home() / "datasets" / "fashion-mnist"
        if reason is None and _has_all_files(downloaded):
            return _verified(downloaded)
        reason = reason or f"Keras's download left no complete copy in {downloaded}"
    raise DataError(
        f"fashion_mnist: the four idx .gz files are in none of {looked} and {reason}; "
        f"{FASHION_MNIST_FIX}"
    )


def _has_all_files(directory: Path) -> bool:
    return all((directory / name).is_file() for name in FASHION_MNIST_SHA256)


def _verified(directory: Path) -> Path:
    """``directory`` if its four files match the expected SHA-256, else :class:`DataError`."""
    for name, expected in FASHION_MNIST_SHA256.items():
        with open(directory / name, "rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
        if actual != expected:
            raise DataError(
                f"{directory / name}: SHA-256 mismatch (expected {expected[:12]}..., "
                f"got {actual[:12]}...); the file is corrupted: delete it, then "
                f"{FASHION_MNIST_FIX}"
            )
    return directory


def _network_unreachable() -> str | None:
    """Why Keras's download host cannot be reached (quickly), or None if it can."""
    if urllib.request.getproxies().get("https"):
        return None  # urllib goes through the proxy: let Keras try
    host, port = KERAS_DOWNLOAD_HOST
    try:
        socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as exc:
        return f"the download host {host} cannot be reached (offline? {_one_line(exc)})"
    return None


def _keras_download_fashion_mnist() -> str | None:
    """Run Keras's download into its cache; the reason it failed, or None."""
    reason = _network_unreachable()
    if reason:
        return reason
    try:
        import keras

        keras.datasets.fashion_mnist.load_data()
    except Exception as exc:  # noqa: BLE001 - any failure becomes our one-line error
        return f"Keras's download failed ({_one_line(exc)})"
    return None


# --------------------------------------------------------------------------------------------
# The array cache


def cache_root() -> Path:
    """``$LRSTUDY_CACHE_DIR``, else ``~/.cache/lrstudy``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lrstudy"


def _fashion_cache_dir() -> Path:
    """The cache directory, keyed by the source checksums and the cache format."""
    spec = json.dumps([_CACHE_FORMAT, sorted(FASHION_MNIST_SHA256.items())])
    return cache_root() / f"fashion_mnist-{hashlib.sha256(spec.encode()).hexdigest()[:16]}"


def _write_cache(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write one ``.npy`` per array, then a manifest; each file atomically (tmp + rename).

    Two processes building the same cache at once each write their own temporary files and
    rename them over the same (identical) result; a reader sees a whole file or none, and
    the manifest, written last, marks the cache complete.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        _atomic_write(directory / f"{name}.npy", lambda f, a=array: np.save(f, a))
    manifest = {n: {"shape": list(a.shape), "dtype": a.dtype.str} for n, a in arrays.items()}
    _atomic_write(directory / _MANIFEST, lambda f: f.write(json.dumps(manifest).encode()))


def _atomic_write(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is readable like any file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(directory: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, memory-mapped, or None when the cache is absent or incomplete."""
    try:
        manifest = json.loads((directory / _MANIFEST).read_text())
        arrays = {n: np.load(directory / f"{n}.npy", mmap_mode="r") for n in manifest}
    except (OSError, ValueError):
        return None
    for name, spec in manifest.items():
        if list(arrays[name].shape) != spec["shape"] or arrays[name].dtype.str != spec["dtype"]:
            return None
    return arrays


def _build_fashion_mnist(directory: Path) -> None:
    """Find, verify and parse the four files; cache them normalized."""
    source = fashion_mnist_dir()
    raw = {name: read_idx(source / fname) for name, fname in _FASHION_FILES.items()}
    _check_fashion_arrays(raw, source)
    _write_cache(
        directory,
        {
            "x_train": _normalize(raw["x_train"]),
            "y_train": raw["y_train"].astype(np.int32),
            "x_test": _normalize(raw["x_test"]),
            "y_test": raw["y_test"].astype(np.int32),
        },
    )


def _normalize(images: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1]: ``x / 255``."""
    return images.astype(np.float32) / np.float32(255)


def _check_fashion_arrays(raw: dict[str, np.ndarray], source: Path) -> None:
    for split in ("train", "test"):
        x, y = raw[f"x_{split}"], raw[f"y_{split}"]
        if x.ndim != 3 or x.dtype != np.uint8 or y.ndim != 1 or len(x) != len(y):
            raise DataError(
                f"fashion_mnist: {source} holds {split} images {x.shape} {x.dtype} and labels "
                f"{y.shape}, expected (n, 28, 28) uint8 and (n,); {FASHION_MNIST_FIX}"
            )


def _fashion_mnist_arrays() -> dict[str, np.ndarray]:
    directory = _fashion_cache_dir()
    arrays = _read_cache(directory)
    if arrays is None:
        _build_fashion_mnist(directory)
        arrays = _read_cache(directory)
    if arrays is None:
        raise DataError(f"fashion_mnist: the cache in {directory} could not be read back")
    return arrays


# --------------------------------------------------------------------------------------------
# mnist and synthetic


def _mnist_file() -> Path:
    return keras_home() / "datasets" / "mnist.npz"


def _mnist_unavailable() -> str | None:
    """Why mnist cannot be had, or None when Keras's cache has it or the network is up."""
    if _mnist_file().is_file():
        return None
    reason = _network_unreachable()
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
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # noqa: BLE001 - any failure becomes our one-line error
        raise DataError(
            f"mnist is not available offline: Keras's loader failed ({_one_line(exc)}); "
            f"put mnist.npz in {_mnist_file().parent} or use fashion_mnist"
        ) from None
    return {
        "x_train": _normalize(x_train),
        "y_train": y_train.astype(np.int32),
        "x_test": _normalize(x_test),
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


_NUM_CLASSES = {"fashion_mnist": 10, "mnist": 10, "synthetic": 2}


# --------------------------------------------------------------------------------------------
# Splits


def split_indices(
    n: int,
    *,
    train_size: int | None = None,
    val_size: int | None = None,
    val_fraction: float | None = None,
    seed: int = DEFAULT_SPLIT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """(validation, training) indices into a pool of ``n`` examples.

    ``perm = default_rng(seed).permutation(n)``; validation is ``perm[:v]`` with
    ``v = val_size`` or ``round(val_fraction * n)`` (default ``round(n / 6)``), training is
    ``perm[v:v + train_size]`` (default: all the rest). The validation set therefore does not
    depend on ``train_size``, and a smaller training set is a prefix of a larger one.
    """
    v, t = _split_sizes(n, train_size=train_size, val_size=val_size, val_fraction=val_fraction)
    perm = np.random.default_rng(_check_seed(seed)).permutation(n)
    return perm[:v], perm[v : v + t]


def _split_sizes(
    n: int, *, train_size=None, val_size=None, val_fraction=None
) -> tuple[int, int]:
    """(validation size, training size) for a pool of ``n``, validated."""
    if val_size is not None and val_fraction is not None:
        raise ValueError(
            "Pass either `val_size` or `val_fraction`, not both. "
            f"Received: val_size={val_size!r}, val_fraction={val_fraction!r}"
        )
    if val_size is not None:
        v = _as_int("val_size", val_size)
        if not 0 < v < n:
            raise ValueError(
                f"Argument `val_size` must be > 0 and < {n} (the training pool, leaving at least "
                f"one example to train on). Received: val_size={val_size!r}"
            )
    else:
        fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, numbers.Real)
            or not 0 < fraction < 1
        ):
            raise ValueError(
                f"Argument `val_fraction` must be in (0, 1). Received: val_fraction={fraction!r}"
            )
        v = round(fraction * n)
        if not 0 < v < n:
            raise ValueError(
                f"Argument `val_fraction` leaves {v} of the {n} pool examples for validation, "
                f"must leave between 1 and {n - 1}. Received: val_fraction={fraction!r}"
            )
    if train_size is None:
        return v, n - v
    t = _as_int("train_size", train_size)
    if not 0 < t <= n - v:
        raise ValueError(
            f"Argument `train_size` must be > 0 and <= {n - v} (the {n} pool examples minus {v} "
            f"for validation). Received: train_size={train_size!r}"
        )
    return v, t


def _as_int(argument: str, value) -> int:
    message = f"Argument `{argument}` must be an integer. Received: {argument}={value!r}"
    if isinstance(value, bool):
        raise ValueError(message)
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(message) from None


def _check_seed(seed) -> int:
    s = _as_int("split_seed", seed)
    if s < 0:
        raise ValueError(f"Argument `split_seed` must be >= 0. Received: split_seed={seed!r}")
    return s


def _check_name(name) -> str:
    if name not in DATASETS:
        raise ValueError(f"Argument `name` must be one of {DATASETS}. Received: name={name!r}")
    return name


# --------------------------------------------------------------------------------------------
# Public entry points


def load(
    name: str = "fashion_mnist",
    *,
    train_size: int | None = None,
    val_size: int | None = None,
    val_fraction: float | None = None,
    split_seed: int = DEFAULT_SPLIT_SEED,
) -> Dataset:
    """Load ``name`` and split its training pool into training and validation sets.

    See :func:`split_indices` for the split. Fashion-MNIST is served from the array cache
    (built on first use, see :func:`ensure`). Raises ValueError for bad arguments and
    :class:`DataError` when the data cannot be had.
    """
    _check_name(name)
    seed = _check_seed(split_seed)
    if name == "fashion_mnist":
        arrays = _fashion_mnist_arrays()
    elif name == "mnist":
        arrays = _mnist_arrays()
    else:
        arrays = _synthetic_arrays(seed)
    val, train = split_indices(
        len(arrays["y_train"]),
        train_size=train_size,
        val_size=val_size,
        val_fraction=val_fraction,
        seed=seed,
    )
    x, y = arrays["x_train"], arrays["y_train"]
    return Dataset(
        name=name,
        x_train=np.asarray(x[train]),
        y_train=np.asarray(y[train]),
        x_val=np.asarray(x[val]),
        y_val=np.asarray(y[val]),
        x_test=np.array(arrays["x_test"]),
        y_test=np.array(arrays["y_test"]),
        num_classes=_NUM_CLASSES[name],
    )


def check(
    name: str,
    *,
    train_size: int | None = None,
    val_size: int | None = None,
    val_fraction: float | None = None,
    split_seed: int = DEFAULT_SPLIT_SEED,
) -> None:
    """Validate the arguments of :func:`load` and that the data can be had, cheaply.

    Builds no arrays: Fashion-MNIST's cache is looked for, else its files are located and
    verified (through Keras's download if no copy is found, as :func:`load` would); mnist's
    Keras cache file or download host is looked for. Raises ValueError or
    :class:`DataError` with one line; returns None when :func:`load` would succeed.
    """
    _check_name(name)
    _check_seed(split_seed)
    if name == "fashion_mnist":
        cached = _read_cache(_fashion_cache_dir())
        if cached is not None:
            n = len(cached["y_train"])
        else:
            source = fashion_mnist_dir()
            n = _idx_dims(source / _FASHION_FILES["y_train"])[0]
    elif name == "mnist":
        reason = _mnist_unavailable()
        if reason:
            raise DataError(reason)
        n = MNIST_TRAIN
    else:
        n = SYNTHETIC_TRAIN
    _split_sizes(n, train_size=train_size, val_size=val_size, val_fraction=val_fraction)


def ensure(name: str = "fashion_mnist") -> Path:
    """Make sure the data of ``name`` is there; return where it lives.

    ``fashion_mnist``: builds the array cache if needed (locating, verifying and parsing the
    source files) and returns the cache directory. ``mnist``: has Keras fetch it if needed and
    returns Keras's ``mnist.npz``. ``synthetic`` is generated in memory: returns
    :func:`cache_root` (nothing is written).
    """
    _check_name(name)
    if name == "fashion_mnist":
        _fashion_mnist_arrays()
        return _fashion_cache_dir()
    if name == "mnist":
        _mnist_arrays()
        return _mnist_file()
    return cache_root()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """``python -m lrstudy.data ensure [NAME]``: print the data path, or one line and 2."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lrstudy.data", description="Datasets.")
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
