"""Tests for lrstudy.data.aligned: the training and validation sets are made for TensorFlow to
share, and the tensors training reads are their memory, not a copy (a copy only where
TensorFlow cannot share: an array misaligned or read-only)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from lrstudy.data import aligned
from lrstudy.data import datasets as data


def test_docstring_examples_run():
    result = doctest.testmod(aligned)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint8, np.float64])
def test_empty_and_take_start_on_the_boundary_tensorflow_needs(dtype):
    for n in range(1, 6):  # whatever the allocator's offset, the data is aligned
        assert aligned.empty((n, 3), dtype).ctypes.data % aligned.ALIGNMENT == 0
    x = np.arange(40, dtype=dtype).reshape(10, 4)
    rows = aligned.take(x, [9, 0, 3])
    assert rows.dtype == dtype and rows.flags.c_contiguous
    np.testing.assert_array_equal(rows, x[[9, 0, 3]])
    assert aligned.shareable(rows)


def test_take_reads_a_memory_map(tmp_path):
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert not aligned.shareable(mapped)  # read-only: TensorFlow would get a copy
    rows = aligned.take(mapped, np.array([5, 1]))
    assert type(rows) is np.ndarray and aligned.shareable(rows)
    np.testing.assert_array_equal(rows, x[[5, 1]])


@pytest.mark.parametrize("name", ["synthetic", "digits"])
def test_loaded_training_and_validation_sets_are_shareable(name):
    ds = data.load(name, val_size=50)
    for array in (ds.x_train, ds.y_train, ds.x_val, ds.y_val):
        assert aligned.shareable(array)


def test_a_shareable_array_is_the_tensors_memory_and_another_is_copied():
    shared = aligned.take(np.zeros((8, 4), np.float32), np.arange(8))
    tensor = aligned.tensor(shared)
    shared[2, 1] = 7.0
    assert float(tensor[2, 1]) == 7.0  # the same memory

    misaligned = np.zeros(33, np.float32)[1:]  # NumPy's data starts on 16 bytes: this, 4 past
    read_only = aligned.take(np.zeros((4, 4), np.float32), np.arange(4))
    read_only.flags.writeable = False
    for array in (misaligned, read_only):
        assert not aligned.shareable(array)
        copy = aligned.tensor(array)
        np.testing.assert_array_equal(copy.numpy(), array)
    copy = aligned.tensor(misaligned)
    misaligned[0] = 6.0
    assert float(copy[0]) == 0.0  # a copy: not the array's memory

def test_a_stacks_training_variables_are_the_datasets_memory():
    from lrstudy.training import stacking

    ds = data.load("synthetic", val_size=50)
    x_var, y_var = stacking.training_arrays(ds)
    np.testing.assert_array_equal(x_var.numpy(), ds.x_train)
    np.testing.assert_array_equal(y_var.numpy(), ds.y_train)
    before = ds.x_train[3, 2]
    ds.x_train[3, 2] = 42.0  # only to show the memory is shared: nothing writes it
    try:
        assert float(x_var[3, 2]) == 42.0
    finally:
        ds.x_train[3, 2] = before
