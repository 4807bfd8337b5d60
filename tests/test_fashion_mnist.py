"""Tests for lrstudy.data.fashion_mnist: idx parsing, locating and verifying the files, the cache.

Every test runs on small idx files it writes itself, in temporary directories, with the network
probe pointed at an unresolvable host; only ``test_real_fashion_mnist`` reads the machine's
files (and is skipped when Debian's package is absent). The fixtures and helpers here serve
tests/test_data.py too.
"""

from __future__ import annotations

import doctest
import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lrstudy.cache import ENV as CACHE_ENV
from lrstudy.data import datasets as data
from lrstudy.data import fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = tuple(fashion_mnist.FASHION_MNIST_SHA256)  # train/t10k images and labels
UNREACHABLE = ("lrstudy-offline.invalid", 443)  # .invalid never resolves: the probe fails fast


# ---------------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` in the idx format (the inverse of read_idx)."""
    code = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}[
        array.dtype.str[1:]
    ]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return path


def fake_arrays(n_train: int = 40, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_fake_dir(directory: Path, arrays: dict[str, np.ndarray]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(directory / name, array)
    return directory


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test sees the machine's data, caches or network: all point into tmp_path."""
    monkeypatch.delenv(fashion_mnist.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian-absent")
    monkeypatch.setattr(fashion_mnist, "KERAS_DOWNLOAD_HOST", UNREACHABLE)
    for scheme in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(scheme, raising=False)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake Fashion-MNIST (40 train, 10 test images) whose checksums are the expected ones."""
    arrays = fake_arrays()
    directory = write_fake_dir(tmp_path / "fake", arrays)
    monkeypatch.setattr(
        fashion_mnist, "FASHION_MNIST_SHA256", {name: sha256(directory / name) for name in FILES}
    )
    monkeypatch.setenv(fashion_mnist.DATA_DIR_ENV, str(directory))
    return directory, arrays


@pytest.fixture
def parse_calls(monkeypatch):
    """Counts calls of the real read_idx."""
    calls = []
    real = fashion_mnist.read_idx

    def counting(path):
        calls.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(fashion_mnist, "read_idx", counting)
    return calls


# ---------------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_read_idx_parses_images_and_labels(tmp_path, gz):
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 0, 9, 1, 7], np.uint8)
    got_images = fashion_mnist.read_idx(write_idx(tmp_path / "images", images, gz=gz))
    got_labels = fashion_mnist.read_idx(write_idx(tmp_path / "labels", labels, gz=gz))
    assert got_images.dtype == np.uint8 and got_images.shape == (5, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    got_images[0, 0, 0] = 1  # a normal, writable array
    assert got_images.flags.writeable


@pytest.mark.parametrize("dtype", ["i1", "i2", "i4", "f4", "f8"])
def test_read_idx_multibyte_types_come_back_native(tmp_path, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    got = fashion_mnist.read_idx(write_idx(tmp_path / "a.idx", array, gz=False))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, array)


def test_read_idx_known_bytes(tmp_path):
    # 00 00 08 01 | 00 00 00 03 | 05 06 07: a uint8 vector [5, 6, 7], written by hand.
    path = tmp_path / "hand.idx"
    path.write_bytes(bytes.fromhex("00000801 00000003 050607"))
    np.testing.assert_array_equal(fashion_mnist.read_idx(path), [5, 6, 7])


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_truncated_idx_names_the_file(tmp_path, gz):
    raw = idx_bytes(np.zeros((5, 28, 28), np.uint8))
    path = tmp_path / "short-images.idx"
    path.write_bytes(gzip.compress(raw[:-100]) if gz else raw[:-100])
    with pytest.raises(fashion_mnist.DataError, match=r"short-images\.idx.*truncated"):
        fashion_mnist.read_idx(path)


def test_cut_gzip_stream_names_the_file(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8)))[:-30])
    with pytest.raises(fashion_mnist.DataError, match=r"cut\.gz"):
        fashion_mnist.read_idx(path)


def test_trailing_bytes_are_an_error(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(np.zeros(3, np.uint8)) + b"\x00")
    with pytest.raises(fashion_mnist.DataError, match=r"long\.idx.*trailing bytes"):
        fashion_mnist.read_idx(path)


@pytest.mark.parametrize(
    "head", ["08030000", "00000703", "00000800", "0000"], ids=["swapped", "type", "ndim0", "short"]
)
def test_wrong_magic_names_the_file(tmp_path, head):
    path = tmp_path / "not-idx.bin"
    path.write_bytes(bytes.fromhex(head) + bytes(16))
    with pytest.raises(fashion_mnist.DataError, match=r"not-idx\.bin.*not an idx file"):
        fashion_mnist.read_idx(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(fashion_mnist.DataError, match="nothere"):
        fashion_mnist.read_idx(tmp_path / "nothere")


# ---------------------------------------------------------------------------------- locating


def test_checksums_are_the_published_ones():
    assert fashion_mnist.FASHION_MNIST_SHA256 == {
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    }


def test_checksum_mismatch_is_reported_not_stepped_over(tmp_path, fake):
    good, _ = fake
    bad = write_fake_dir(tmp_path / "bad", fake_arrays(seed=1))  # other bytes, same names
    expected = fashion_mnist.FASHION_MNIST_SHA256["train-images-idx3-ubyte.gz"]
    actual = sha256(bad / "train-images-idx3-ubyte.gz")
    with pytest.raises(fashion_mnist.DataError) as info:
        fashion_mnist.fashion_mnist_dir([bad, good], download=False)
    message = str(info.value)
    assert str(bad / "train-images-idx3-ubyte.gz") in message
    assert expected[:12] in message and actual[:12] in message
    assert "\n" not in message


def test_incomplete_candidate_is_skipped(tmp_path, fake):
    good, arrays = fake
    partial = write_fake_dir(tmp_path / "partial", arrays)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    candidates = [tmp_path / "absent", partial, good]
    assert fashion_mnist.fashion_mnist_dir(candidates, download=False) == good


def test_resolution_order(tmp_path, fake, monkeypatch):
    env_dir, arrays = fake
    keras_dir = write_fake_dir(tmp_path / "keras" / "datasets" / "fashion-mnist", arrays)
    debian_dir = write_fake_dir(tmp_path / "debian", arrays)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", debian_dir)
    assert fashion_mnist.default_candidates() == (env_dir, keras_dir, debian_dir)
    assert fashion_mnist.fashion_mnist_dir(download=False) == env_dir  # LRSTUDY_DATA_DIR wins
    monkeypatch.delenv(fashion_mnist.DATA_DIR_ENV)
    assert fashion_mnist.fashion_mnist_dir(download=False) == keras_dir  # then the Keras cache
    (keras_dir / "train-images-idx3-ubyte.gz").unlink()
    assert fashion_mnist.fashion_mnist_dir(download=False) == debian_dir  # then Debian's package


def test_missing_dataset_error_names_the_fix_and_fails_fast(tmp_path):
    start = time.perf_counter()
    with pytest.raises(fashion_mnist.DataError) as info:
        fashion_mnist.fashion_mnist_dir([], download=True)  # download attempted, host unreachable
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "LRSTUDY_DATA_DIR" in message and "lrstudy-offline.invalid" in message
    assert "\n" not in message
    with pytest.raises(fashion_mnist.DataError, match="download was not attempted"):
        fashion_mnist.fashion_mnist_dir([tmp_path], download=False)
    with pytest.raises(data.DataError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion_mnist")  # default candidates, all empty here
    with pytest.raises(data.DataError, match="apt-get install dataset-fashion-mnist"):
        data.check("fashion_mnist")

# ---------------------------------------------------------------------------------- the cache


def test_second_load_is_served_from_the_cache(fake, parse_calls):
    first = data.load(val_size=10)
    assert sorted(parse_calls) == sorted(FILES)
    cache = data.ensure()
    assert cache.parent == Path(os.environ[CACHE_ENV])
    mtimes = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert {"x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy", "manifest.json"} <= set(
        mtimes
    )
    second = data.load(val_size=10)
    assert len(parse_calls) == 4  # not parsed again
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == mtimes
    np.testing.assert_array_equal(first.x_train, second.x_train)


def test_cache_is_keyed_by_the_source_checksums(tmp_path, fake, monkeypatch, parse_calls):
    first = data.ensure()
    other = write_fake_dir(tmp_path / "other", fake_arrays(n_train=30, seed=2))
    monkeypatch.setattr(
        fashion_mnist, "FASHION_MNIST_SHA256", {name: sha256(other / name) for name in FILES}
    )
    monkeypatch.setenv(fashion_mnist.DATA_DIR_ENV, str(other))
    second = data.ensure()
    assert second != first and len(parse_calls) == 8
    assert len(data.load(val_size=10).x_train) == 20  # the 30-image pool, not the cached 40


def test_damaged_cache_is_rebuilt(fake, parse_calls):
    cache = data.ensure()
    (cache / "x_train.npy").write_bytes((cache / "x_train.npy").read_bytes()[:-500])
    ds = data.load(val_size=10)
    assert len(parse_calls) == 8
    assert ds.x_train.shape == (30, 28, 28)


def test_cache_needs_no_source_once_built(fake, monkeypatch):
    data.ensure()
    monkeypatch.delenv(fashion_mnist.DATA_DIR_ENV)  # sources gone: the cache still serves
    assert len(data.load(val_size=10).x_test) == 10
    data.check("fashion_mnist", train_size=30, val_size=10)


def test_failed_cache_write_leaves_nothing_behind(tmp_path):
    directory = tmp_path / "c"
    unpicklable = np.array([lambda: None], dtype=object)
    with pytest.raises(Exception):
        fashion_mnist._write_cache(directory, {"x": unpicklable})
    assert list(directory.iterdir()) == []


CONCURRENT_SCRIPT = """
import hashlib, json, os, sys
from lrstudy.data import datasets as data
from lrstudy.data import fashion_mnist
fashion_mnist.FASHION_MNIST_SHA256 = json.loads(os.environ["TEST_SHA256"])
data.ensure()
ds = data.load(val_size=100)
print(hashlib.sha256(ds.x_train.tobytes() + ds.y_test.tobytes()).hexdigest())
"""


def test_concurrent_builds_are_safe(tmp_path, monkeypatch):
    directory = write_fake_dir(tmp_path / "big", fake_arrays(n_train=2000, n_test=500, seed=4))
    env = dict(
        os.environ,
        TEST_SHA256=json.dumps({name: sha256(directory / name) for name in FILES}),
        PYTHONPATH=str(ROOT),
        **{fashion_mnist.DATA_DIR_ENV: str(directory)},
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_SCRIPT], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    digests = {out.strip() for out, _ in outs}
    assert len(digests) == 1
    [cache] = (tmp_path / "cache").iterdir()
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in cache.iterdir())
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["x_train"]["shape"] == [2000, 28, 28]


def test_check_reports_a_corrupted_file(fake):
    directory, _ = fake
    path = directory / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz: SHA-256 mismatch"):
        data.check("fashion_mnist")


def test_docstring_examples_run():
    result = doctest.testmod(fashion_mnist)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------------------------- real data


@pytest.mark.skipif(
    not REAL_DIR.is_dir(),
    reason=f"{REAL_DIR} is absent: apt-get install dataset-fashion-mnist to run this test",
)
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", REAL_DIR)
    assert fashion_mnist.FASHION_MNIST_SHA256 == {
        name: sha256(REAL_DIR / name) for name in FILES
    }
    assert fashion_mnist.fashion_mnist_dir(download=False) == REAL_DIR
    data.ensure()  # builds the cache in tmp

    def no_parsing(path):
        raise AssertionError(f"{path} parsed again: the array cache was not used")

    with monkeypatch.context() as m:
        m.setattr(fashion_mnist, "read_idx", no_parsing)
        ds = data.load()  # served from the cache: a memory map plus a gather
    assert (ds.x_train.shape, ds.x_val.shape, ds.x_test.shape) == (
        (50000, 28, 28), (10000, 28, 28), (10000, 28, 28)
    )
    assert len(ds.y_train) + len(ds.y_val) == 60000 and len(ds.y_test) == 10000
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert 0.0 == ds.x_train.min() and ds.x_train.max() == 1.0
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))
    assert np.bincount(ds.y_test).tolist() == [1000] * 10  # Fashion-MNIST's balanced test set
    first = fashion_mnist.read_idx(REAL_DIR / "t10k-images-idx3-ubyte.gz")[0]
    np.testing.assert_array_equal(ds.x_test[0], first.astype(np.float32) / 255)
    smaller = data.load(train_size=1000)
    np.testing.assert_array_equal(smaller.y_val, ds.y_val)
