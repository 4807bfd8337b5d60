"""A user's own data, named in a study's budget beside the built-in datasets.

A budget's ``dataset`` is a built-in name (:data:`lrstudy.data.datasets.DATASETS`) or one of::

    dataset = { csv = "train.csv", label = "y" }     # numeric feature columns, one label column
    dataset = { npz = "arrays.npz" }                 # x_train, y_train[, x_test, y_test][, x_val, y_val]
    dataset = { images = "photos", image_size = [64, 64], color_mode = "rgb" }  # a dir per class
    dataset = "package.module:function"              # returns ((x_train, y_train), (x_test, y_test))

Paths are relative to the study file. :func:`resolve` turns such an entry into a *spec*: a
canonical JSON string (so that a budget stays hashable and JSON-able) with the absolute
path, the task, the test fraction and the SHA-256 of the arrays (``sha256``, :func:`fingerprint`):
the source is loaded and checked when the study is loaded, before any training.
:func:`key_identity` is what the run key hashes instead: the spec without the path, so a
moved project keeps its keys and two different CSVs at the same path are two trials.

:func:`arrays` loads a spec into ``x_train, y_train, x_test, y_test`` (and ``x_val, y_val``
when the source has them) after :func:`validate_arrays`: every bad-data case is a
:class:`~lrstudy.data.datasets.DataError` of one line. A source without a test split of its own gets
``test_size`` (default 20 %) of its rows carved off with :data:`TEST_SPLIT_SEED`, the same
way :func:`lrstudy.data.splits.split_indices` carves the validation set; the test rows are never
used for choices.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import math
import numbers
from pathlib import Path

import numpy as np

from lrstudy import user_code
from lrstudy.errors import DataError, one_line

KINDS = ("csv", "npz", "images", "function")
DEFAULT_TEST_SIZE = 0.2
TEST_SPLIT_SEED = 2027
IMAGE_DEFAULTS = {"image_size": [32, 32], "color_mode": "rgb"}
COLOR_MODES = ("grayscale", "rgb", "rgba")
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
KEYS = {"csv": {"csv", "label"}, "npz": {"npz"},
        "images": {"images", "image_size", "color_mode"}}
#: What a spec carries beside the user's keys; not in the run key: ``path`` (where).
PATH_KEYS = ("csv", "npz", "images")


def is_spec(name) -> bool:
    """Whether ``name`` is a resolved user source (a JSON spec), not a built-in name."""
    return isinstance(name, str) and name.startswith("{")


def parse(spec: str) -> dict:
    return json.loads(spec)


def kind(spec: dict) -> str:
    return next(k for k in KINDS if k in spec)


def label(spec: str) -> str:
    """A short name for tables and MLflow: the file or directory name, or the function."""
    s = parse(spec)
    k = kind(s)
    return s[k] if k == "function" else Path(s[k]).name


def resolve(where: str, value, base: Path, task: str, test_size: float) -> str:
    """The spec of a budget's ``dataset`` entry (a table or ``"package.module:function"``),
    paths made absolute against ``base`` (the study file's directory). Raises ValueError
    naming ``where`` for a malformed entry and DataError for bad data."""
    if isinstance(value, str):
        if ":" not in value or value.count(":") != 1 or not all(value.split(":")):
            raise ValueError(f"{where}: dataset {value!r} is neither a built-in dataset nor "
                             "\"package.module:function\"")
        spec = {"function": value}
    elif isinstance(value, dict):
        kinds = [k for k in PATH_KEYS if k in value]
        if len(kinds) != 1:
            raise ValueError(f"{where}: a dataset table needs exactly one of "
                             f"{', '.join(PATH_KEYS)}, got {sorted(value)}")
        k = kinds[0]
        extra = sorted(set(value) - KEYS[k])
        if extra:
            raise ValueError(f"{where}: dataset: unknown key {extra[0]!r} for a {k} source; "
                             f"allowed: {', '.join(sorted(KEYS[k]))}")
        for key in ("csv", "npz", "images", "label", "color_mode"):
            if key in value and (not isinstance(value[key], str) or not value[key]):
                raise ValueError(f"{where}: dataset key {key!r} must be a non-empty string")
        if k == "csv" and "label" not in value:
            raise ValueError(f"{where}: a csv dataset needs label = \"column\"")
        spec = dict(value)
        spec[k] = str((base / value[k]).resolve())
        if k == "images":
            spec = {**IMAGE_DEFAULTS, **spec}
            size = spec["image_size"]
            if (not isinstance(size, list) or len(size) != 2
                    or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 4096
                               for n in size)):
                raise ValueError(f"{where}: dataset image_size must be [height, width], "
                                 f"got {size!r}")
            if spec["color_mode"] not in COLOR_MODES:
                raise ValueError(f"{where}: dataset color_mode must be one of "
                                 f"{', '.join(COLOR_MODES)}, got {spec['color_mode']!r}")
    else:
        raise ValueError(f"{where}: dataset must be a name, \"package.module:function\" or a "
                         f"table, got {value!r}"[:300])
    spec["task"], spec["test_size"] = task, float(test_size)
    loaded = arrays(json.dumps(spec, sort_keys=True))  # DataError: bad data, before training
    spec["sha256"] = fingerprint(*(loaded[k] for k in sorted(loaded)))
    return json.dumps(spec, sort_keys=True)


def sizes(spec: str) -> tuple[int, int | None]:
    """(rows of the training pool, rows of the source's own validation set or None)."""
    a = arrays(spec)
    n_val = len(a["y_val"]) if "y_val" in a else None
    return len(a["y_train"]), n_val


def module_dir(name: str):
    """The directory a kernel needs on its path to import a function source (None for any
    other dataset), found without running it (:func:`lrstudy.user_code.locate`)."""
    if not is_spec(name) or "function" not in parse(name):
        return None
    function = parse(name)["function"]
    module, _, attr = function.partition(":")
    return user_code.locate("dataset", function, module, attr)


def key_identity(spec: str) -> dict:
    """What the run key hashes for a user source: the spec without its path."""
    s = parse(spec)
    k = kind(s)
    if k != "function":
        s[k] = Path(s[k]).name
    return s


def fingerprint(*arrays: np.ndarray) -> str:
    """SHA-256 of the arrays' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Loading


def arrays(spec: str) -> dict[str, np.ndarray]:
    """The checked arrays of ``spec``: float32 features, int32 (classification) or float32
    (regression) labels; ``x_test``/``y_test`` carved off when the source has none. Loaded
    once per process (the spec's ``sha256`` aside, which is computed from them)."""
    s = parse(spec)
    s.pop("sha256", None)
    return _arrays(json.dumps(s, sort_keys=True), _stamp(s))


def _stamp(s: dict) -> tuple:
    """The source's files' (path, size, mtime): a file changed in place is loaded again."""
    k = kind(s)
    if k == "function":
        return ()
    path = Path(s[k])
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.exists())


@functools.lru_cache(maxsize=4)
def _arrays(spec: str, stamp: tuple = ()) -> dict[str, np.ndarray]:
    s = parse(spec)
    k = kind(s)
    out = {"csv": _csv, "npz": _npz, "images": _images, "function": _function}[k](s)
    validate_arrays(s, out)
    if "x_test" not in out:
        out = _carve_test(out, s["test_size"])
    return out


def _missing(path: str, what: str = "file") -> DataError:
    return DataError(f"dataset {what} {path} does not exist")


def _csv(s: dict) -> dict:
    import pandas as pd

    path = s["csv"]
    if not Path(path).is_file():
        raise _missing(path)
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - a parse error of any kind is bad data
        raise DataError(f"dataset {path}: cannot be read as CSV: {one_line(exc)}") from None
    if frame.empty:  # a header alone: its columns hold nothing, numeric or not
        raise DataError(f"dataset {path}: has no rows, only a header "
                        f"({', '.join(map(str, frame.columns))})"[:300])
    if s["label"] not in frame.columns:
        raise DataError(f"dataset {path}: no column {s['label']!r}; columns: "
                        f"{', '.join(map(str, frame.columns))}"[:300])
    features = frame.drop(columns=[s["label"]])
    if features.shape[1] == 0:
        raise DataError(f"dataset {path}: no feature column beside {s['label']!r}")
    bad = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
           or pd.api.types.is_bool_dtype(features[c])]
    if bad:
        raise DataError(f"dataset {path}: column {bad[0]!r} is not numeric (features must be "
                        "numbers)")
    return {"x_train": features.to_numpy(dtype=np.float64),
            "y_train": frame[s["label"]].to_numpy()}


NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val")


def _npz(s: dict) -> dict:
    path = s["npz"]
    if not Path(path).is_file():
        raise _missing(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {k: np.asarray(f[k]) for k in NPZ_ARRAYS if k in f.files}
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"dataset {path}: cannot be read as .npz: {one_line(exc)}") from None
    for a, b in (("x_train", "y_train"), ("x_test", "y_test"), ("x_val", "y_val")):
        if a in out or b in out:
            if a not in out or b not in out:
                missing = a if a not in out else b
                raise DataError(f"dataset {path}: has {b if missing == a else a} but no "
                                f"{missing}")
    if "x_train" not in out:
        raise DataError(f"dataset {path}: needs arrays x_train and y_train, has "
                        f"{', '.join(sorted(out)) or 'none of them'}")
    return out


def _class_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir())


def _images(s: dict) -> dict:
    path = Path(s["images"])
    _check_image_dir(path)
    from lrstudy import tfquiet

    keras = tfquiet.import_tensorflow("keras")
    try:
        ds = keras.utils.image_dataset_from_directory(
            str(path), labels="inferred", label_mode="int", color_mode=s["color_mode"],
            image_size=tuple(s["image_size"]), shuffle=False, batch_size=256, verbose=False)
        xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"dataset {path}: cannot read the images: {one_line(exc)}") from None
    return {"x_train": np.concatenate(xs) / 255.0, "y_train": np.concatenate(ys)}


def _check_image_dir(path: Path) -> int:
    """The number of images under ``path`` (a directory per class); DataError if not so."""
    if not path.is_dir():
        raise _missing(str(path), "directory")
    classes = _class_dirs(path)
    if len(classes) < 2:
        raise DataError(f"dataset {path}: needs one subdirectory per class (at least 2), "
                        f"found {len(classes)}")
    total = 0
    for c in classes:
        n = sum(1 for p in c.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if n == 0:
            raise DataError(f"dataset {path}: class directory {c.name!r} has no images "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        total += n
    return total


def _function(s: dict) -> dict:
    name = s["function"]
    module_name, attr = name.split(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # noqa: BLE001 - the module's own code may raise anything
        raise DataError(f"dataset {name}: cannot be imported: {one_line(exc)}") from None
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"dataset {name}: the function failed: {one_line(exc)}") from None
    try:
        (x_train, y_train), (x_test, y_test) = result
    except (TypeError, ValueError):
        raise DataError(f"dataset {name}: must return ((x_train, y_train), (x_test, y_test)) "
                        "as keras.datasets.*.load_data() does") from None
    out = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    out = {k: np.asarray(v) for k, v in out.items()}
    if out["x_train"].dtype == np.uint8:  # images as keras.datasets gives them
        out = {k: v / 255.0 if k.startswith("x") else v for k, v in out.items()}
    return out


# --------------------------------------------------------------------------------------------
# Checks


def where_of(s: dict) -> str:
    k = kind(s)
    return f"dataset {s[k]}"


def validate_arrays(s: dict, out: dict) -> None:
    """Bad data as one-line DataErrors; converts ``out`` in place to float32 features and
    int32 (classification) or float32 (regression) labels of shape (n,)."""
    where = where_of(s)
    x_shape = None
    for part in ("train", "test", "val"):
        if f"x_{part}" not in out:
            continue
        x, y = out[f"x_{part}"], out[f"y_{part}"]
        if x.ndim < 2 or len(x) == 0:
            raise DataError(f"{where}: x_{part} must have one row per example and at least one "
                            f"feature, got shape {x.shape}")
        if x_shape is None:
            x_shape = x.shape[1:]
        elif x.shape[1:] != x_shape:
            raise DataError(f"{where}: x_{part} has examples of shape {x.shape[1:]}, x_train "
                            f"of shape {x_shape}: they must be the same")
        if not (np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)):
            raise DataError(f"{where}: x_{part} is not numeric (dtype {x.dtype})")
        if not np.isfinite(x).all():
            bad = np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0][0]
            raise DataError(f"{where}: x_{part} has NaN or infinite values (first in row {bad})")
        y = np.squeeze(y) if y.ndim == 2 and y.shape[1] == 1 else y
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{where}: y_{part} must be one label per row of x_{part} "
                            f"({len(x)}), got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.bool_):
            raise DataError(f"{where}: y_{part} (the labels) is not numeric (dtype {y.dtype})")
        if not np.isfinite(y).all():
            raise DataError(f"{where}: y_{part} has NaN or infinite values")
        if s["task"] == "classification":
            if not np.issubdtype(y.dtype, np.integer) and not (np.round(y) == y).all():
                raise DataError(f"{where}: y_{part} has non-integer labels; classification needs "
                                "integer class labels 0, 1, ... (or task = \"regression\")")
            if (y < 0).any():
                raise DataError(f"{where}: y_{part} has negative labels; classes are 0, 1, ...")
            y = y.astype(np.int32)
        else:
            y = y.astype(np.float32)
        out[f"x_{part}"], out[f"y_{part}"] = x.astype(np.float32), y
    if s["task"] == "classification" and len(np.unique(out["y_train"])) < 2:
        raise DataError(f"{where}: y_train has a single class; classification needs two or more")


def _carve_test(out: dict, test_size: float) -> dict:
    """``test_size`` of the rows as the test set (seeded by :data:`TEST_SPLIT_SEED`)."""
    n = len(out["y_train"])
    t = round(test_size * n)
    if not 0 < t < n:
        raise DataError(f"dataset: test_size {test_size} of {n} rows leaves {t} test rows")
    perm = np.random.default_rng(TEST_SPLIT_SEED).permutation(n)
    test, pool = perm[:t], perm[t:]
    return {**{k: v for k, v in out.items() if k not in ("x_train", "y_train")},
            "x_train": out["x_train"][pool], "y_train": out["y_train"][pool],
            "x_test": out["x_train"][test], "y_test": out["y_train"][test]}


def check_test_size(where: str, value) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or not 0 < value < 1):
        raise ValueError(f"{where}: test_size must be a fraction in (0, 1), got {value!r}")
    return float(value)


def num_classes(s: dict, out: dict) -> int:
    """1 for regression (one output), else the largest label + 1."""
    if s["task"] == "regression":
        return 1
    labels = [out[k] for k in ("y_train", "y_val", "y_test") if k in out]
    return int(max(int(y.max()) for y in labels)) + 1
