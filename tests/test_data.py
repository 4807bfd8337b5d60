"""Tests for lrstudy.data.datasets and lrstudy.data.splits: datasets by name, splits,
load/check/ensure, the command line.

The Fashion-MNIST fixtures (small fake idx files, the network probe pointed at an unresolvable
host, caches in temporary directories) come from tests/test_fashion_mnist.py.
"""

from __future__ import annotations

import dataclasses
import doctest
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_fashion_mnist import (  # noqa: F401 - fixtures, isolated autouse
    ROOT,
    fake,
    isolated,
)

from lrstudy import cache
from lrstudy.data import datasets as data
from lrstudy.data import splits
from lrstudy.data import fashion_mnist


def test_data_error_is_a_value_error():
    assert issubclass(data.DataError, ValueError)
    assert data.DataError is fashion_mnist.DataError  # one class, whichever module raises it


def test_mnist_offline_is_a_clear_error():
    with pytest.raises(data.DataError, match="^mnist is not available offline: .*mnist.npz"):
        data.load("mnist")
    with pytest.raises(data.DataError, match="^mnist is not available offline"):
        data.check("mnist")


# ---------------------------------------------------------------------------------- splits


def test_default_split_is_10000_of_60000():
    val, train = splits.split_indices(60000)
    assert (len(val), len(train)) == (10000, 50000)
    np.testing.assert_array_equal(
        np.concatenate([val, train]), np.random.default_rng(9125).permutation(60000)
    )


def test_split_is_deterministic_and_seeded():
    a = splits.split_indices(1000, train_size=300, val_size=100, seed=7)
    b = splits.split_indices(1000, train_size=300, val_size=100, seed=7)
    c = splits.split_indices(1000, train_size=300, val_size=100, seed=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_split_is_disjoint_and_val_does_not_depend_on_train_size():
    val_small, train_small = splits.split_indices(1000, train_size=100, val_fraction=0.2)
    val_big, train_big = splits.split_indices(1000, train_size=800, val_fraction=0.2)
    assert len(val_small) == 200 and len(train_small) == 100 and len(train_big) == 800
    np.testing.assert_array_equal(val_small, val_big)
    np.testing.assert_array_equal(train_small, train_big[:100])  # a prefix of the larger set
    assert not set(val_big) & set(train_big)
    assert set(val_big) | set(train_big) == set(range(1000))


def test_synthetic_dataset():
    ds = data.load("synthetic")
    assert ds.name == "synthetic" and ds.num_classes == 2 and ds.input_shape == (20,)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (833, 167, 200)  # 1000 / 6
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert 0 <= ds.x_train.min() and ds.x_train.max() < 1
    assert set(np.unique(ds.y_train)) == {0, 1}
    assert len(ds.y_train) == len(ds.x_train) and len(ds.y_test) == len(ds.x_test)
    assert "train=833" in repr(ds)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"


def test_synthetic_split_properties():
    a = data.load("synthetic", train_size=100, val_size=50, split_seed=3)
    b = data.load("synthetic", train_size=400, val_size=50, split_seed=3)
    c = data.load("synthetic", train_size=100, val_size=50, split_seed=4)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.x_train, b.x_train[:100])
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.x_train, c.x_train)
    rows_val = {r.tobytes() for r in b.x_val}
    assert not rows_val & {r.tobytes() for r in b.x_train}


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"train_size": 834}, r"`train_size` must be > 0 and <= 833.*train_size=834"),
        ({"train_size": 0}, r"`train_size` must be > 0.*train_size=0"),
        ({"train_size": 1.5}, r"`train_size` must be an integer.*train_size=1.5"),
        ({"train_size": True}, r"`train_size` must be an integer.*train_size=True"),
        ({"val_size": -1}, r"`val_size` must be >= 0 and < 1000.*val_size=-1"),
        ({"val_size": 1000}, r"`val_size` must be >= 0 and < 1000.*val_size=1000"),
        ({"split": "keras"}, r"`split` must be one of 'seeded', 'random.sample'"),
        ({"val_fraction": 0.0}, r"`val_fraction` must be in \(0, 1\).*val_fraction=0.0"),
        ({"val_fraction": 1}, r"`val_fraction` must be in \(0, 1\).*val_fraction=1"),
        ({"val_fraction": -0.1}, r"val_fraction=-0.1"),
        ({"val_fraction": 0.0001}, r"leaves 0 of the 1000"),
        ({"val_size": 10, "val_fraction": 0.1}, r"either `val_size` or `val_fraction`"),
        ({"split_seed": -1}, r"`split_seed` must be >= 0.*split_seed=-1"),
        ({"val_size": 100, "train_size": 901}, r"<= 900 \(the 1000 pool examples minus 100"),
    ],
)
def test_bad_sizes_raise(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        data.load("synthetic", **kwargs)
    assert not isinstance(info.value, data.DataError)
    with pytest.raises(ValueError, match=pattern):
        data.check("synthetic", **kwargs)


def test_no_validation_set():
    ds = data.load("synthetic", val_size=0)
    assert (len(ds.x_train), len(ds.x_val)) == (data.SYNTHETIC_TRAIN, 0)


def test_unknown_name():
    with pytest.raises(ValueError, match=r"`name` must be one of .*Received: name='cifar'"):
        data.load("cifar")
    with pytest.raises(ValueError, match="name='cifar'"):
        data.check("cifar")


# ---------------------------------------------------------------------------------- fashion_mnist


def test_fashion_mnist_from_fake_files(fake):
    _, arrays = fake
    ds = data.load(train_size=20, val_size=10, split_seed=5)
    images, labels = arrays["train-images-idx3-ubyte.gz"], arrays["train-labels-idx1-ubyte.gz"]
    val, train = splits.split_indices(40, train_size=20, val_size=10, seed=5)
    np.testing.assert_array_equal(ds.x_train, images[train].astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.y_train, labels[train])
    np.testing.assert_array_equal(ds.x_val, images[val].astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.y_val, labels[val])
    np.testing.assert_array_equal(ds.x_test * 255, arrays["t10k-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte.gz"])
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.input_shape == (28, 28) and ds.num_classes == 10
    assert type(ds.x_train) is np.ndarray and type(ds.x_test) is np.ndarray  # not memmaps


def test_check_validates_against_the_real_pool_without_building(fake):
    data.check("fashion_mnist", train_size=30, val_size=10)
    with pytest.raises(ValueError, match=r"<= 30 .*train_size=31"):
        data.check("fashion_mnist", train_size=31, val_size=10)
    assert not Path(os.environ[cache.ENV]).exists()  # nothing built


def test_ensure_synthetic_writes_nothing():
    path = data.ensure("synthetic")
    assert path == cache.root() and not path.exists()


# ---------------------------------------------------------------------------------- command line


def test_main_prints_the_cache_path(fake, capsys):
    assert data.main(["ensure"]) == 0
    assert Path(capsys.readouterr().out.strip()) == data.ensure()


def test_main_missing_data_is_one_line_and_status_2(capsys):
    assert data.main(["ensure", "fashion_mnist"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: fashion_mnist: ")
    assert "apt-get install dataset-fashion-mnist" in captured.err
    assert captured.err.count("\n") == 1


def test_module_entry_point(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), LRSTUDY_CACHE_DIR=str(tmp_path / "c"))
    run = [sys.executable, "-m", "lrstudy.data", "ensure"]
    ok = subprocess.run(run + ["synthetic"], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == str(tmp_path / "c")
    bad = subprocess.run(run + ["nope"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        f"error: Argument `name` must be one of {data.DATASETS}. Received: name='nope'"
    ]


@pytest.mark.parametrize("module", ["lrstudy.data.datasets", "lrstudy.data.fashion_mnist"])
def test_import_is_light(module):
    code = f"import sys, {module}; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True, text=True, timeout=60,
    )
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("module", [data, splits], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0

