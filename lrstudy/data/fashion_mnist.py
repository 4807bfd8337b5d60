"""The Fashion-MNIST files: located, SHA-256 verified, parsed from idx and cached as ``.npy``.

The four idx ``.gz`` files (:data:`FASHION_MNIST_SHA256`) are looked for in
``$LRSTUDY_DATA_DIR``, the Keras cache (``~/.keras/datasets/fashion-mnist/``), Debian's package
``dataset-fashion-mnist`` (:data:`DEBIAN_DIR`), then fetched by Keras's own download, which is
tried only after a quick probe of its host so that an offline machine fails fast
(:func:`fashion_mnist_dir`). The files are verified, parsed once (:func:`read_idx`), normalized
to float32 in [0, 1] and cached as ``.npy`` arrays under ``$LRSTUDY_CACHE_DIR`` (default
``~/.cache/lrstudy/``), keyed by the checksums, so a load is a memory map (:func:`arrays`).

Every problem with the data is a :class:`lrstudy.errors.DataError` with a one-line message
naming the file and the fix; :mod:`lrstudy.data.datasets` re-exports it as
``lrstudy.data.datasets.DataError``, the one error
class of data problems. This module imports nothing from :mod:`lrstudy` at module level, and
imports Keras (through :mod:`lrstudy.tfquiet`) only for a download.

>>> import pathlib, tempfile
>>> with tempfile.TemporaryDirectory() as tmp:  # a uint8 vector [5, 6, 7] in the idx format
...     path = pathlib.Path(tmp, "vector.idx")
...     _ = path.write_bytes(bytes.fromhex("00000801 00000003 050607"))
...     read_idx(path)
array([5, 6, 7], dtype=uint8)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import socket
import tempfile
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lrstudy import cache
from lrstudy.errors import DataError, one_line

__all__ = [
    "CANDIDATES_ONLY_ENV",
    "DATA_DIR_ENV",
    "DEBIAN_DIR",
    "DataError",
    "FASHION_MNIST_SHA256",
    "arrays",
    "cache_dir",
    "default_candidates",
    "fashion_mnist_dir",
    "keras_home",
    "network_unreachable",
    "normalize",
    "pool_size",
    "read_idx",
]

DATA_DIR_ENV = "LRSTUDY_DATA_DIR"
CANDIDATES_ONLY_ENV = "LRSTUDY_DATA_CANDIDATES_ONLY"
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
        raise DataError(f"{path}: unreadable gzip data ({one_line(exc)})") from None


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
# Locating and verifying the files


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


# --------------------------------------------------------------------------------------------
# Keras's download


def network_unreachable() -> str | None:
    """Why Keras's download host cannot be reached (quickly), or None if it can."""
    host, port = KERAS_DOWNLOAD_HOST
    proxy = urllib.request.getproxies().get("https")
    if proxy:  # urllib goes through the proxy: it is the host that must answer
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parsed.hostname or "", parsed.port or 8080
    try:
        socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as exc:
        return f"the download host {host} cannot be reached (offline? {one_line(exc)})"
    return None


def _keras_download_fashion_mnist() -> str | None:
    """Run Keras's download into its cache; the reason it failed, or None."""
    reason = network_unreachable()
    if reason:
        return reason
    try:
        from lrstudy import tfquiet

        tfquiet.import_tensorflow("keras").datasets.fashion_mnist.load_data()
    except Exception as exc:  # noqa: BLE001 - any failure becomes our one-line error
        return f"Keras's download failed ({one_line(exc)})"
    return None


# --------------------------------------------------------------------------------------------
# The array cache


def cache_dir() -> Path:
    """The cache directory, keyed by the source checksums and the cache format."""
    spec = json.dumps([_CACHE_FORMAT, sorted(FASHION_MNIST_SHA256.items())])
    return cache.root() / f"fashion_mnist-{hashlib.sha256(spec.encode()).hexdigest()[:16]}"


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
            "x_train": normalize(raw["x_train"]),
            "y_train": raw["y_train"].astype(np.int32),
            "x_test": normalize(raw["x_test"]),
            "y_test": raw["y_test"].astype(np.int32),
        },
    )


def normalize(images: np.ndarray) -> np.ndarray:
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


def arrays() -> dict[str, np.ndarray]:
    """``x_train``, ``y_train``, ``x_test``, ``y_test``, memory-mapped from the cache.

    The cache is built on first use (files located, verified and parsed); a damaged or
    incomplete cache is rebuilt. Raises :class:`DataError` when the data cannot be had.
    """
    directory = cache_dir()
    cached = _read_cache(directory)
    if cached is None:
        _build_fashion_mnist(directory)
        cached = _read_cache(directory)
    if cached is None:
        raise DataError(f"fashion_mnist: the cache in {directory} could not be read back")
    return cached


def pool_size() -> int:
    """The number of training images, without building the cache.

    Read from the cache when it is built, else from the header of the training labels of the
    located and verified files (through Keras's download if no copy is found, as
    :func:`arrays` would). Raises :class:`DataError` when the data cannot be had.
    """
    cached = _read_cache(cache_dir())
    if cached is not None:
        return len(cached["y_train"])
    return _idx_dims(fashion_mnist_dir() / _FASHION_FILES["y_train"])[0]
