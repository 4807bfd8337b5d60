"""Arrays that TensorFlow can share without a copy.

A NumPy array handed to TensorFlow is copied (``tf.convert_to_tensor`` always copies), unless
it is passed through DLPack, which shares its memory. TensorFlow accepts a shared buffer only
when it starts on a :data:`ALIGNMENT` boundary. NumPy's allocations start on 16 bytes, so
shared arrays have to be made for it.

The training sets are made here (:func:`take`), so that the tensors training reads
(:func:`tensor`: a stack's variables, a trial's pipeline) are the dataset's own memory. A
copy cost a pass over the whole training set in fresh memory.

>>> x = np.arange(12, dtype=np.float32).reshape(6, 2)
>>> rows = take(x, [4, 0, 2])
>>> rows.tolist(), shareable(rows)
([[8.0, 9.0], [0.0, 1.0], [4.0, 5.0]], True)
"""

from __future__ import annotations

import numpy as np

#: The alignment TensorFlow needs of a buffer it shares (Eigen's largest, 64 bytes): a
#: tensor on a buffer that misses it fails a check that aborts the process.
ALIGNMENT = 64


def empty(shape, dtype) -> np.ndarray:
    """A new C-contiguous array of ``shape`` and ``dtype`` whose data starts on an
    :data:`ALIGNMENT` boundary."""
    shape = tuple(int(d) for d in shape)
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT
    return buffer[start:start + nbytes].view(dtype).reshape(shape)


def take(x: np.ndarray, rows) -> np.ndarray:
    """``x[rows]`` (rows of the first axis, ``x`` an array or a memory map) in an array of
    :func:`empty`."""
    rows = np.asarray(rows, dtype=np.intp)
    out = empty((len(rows), *x.shape[1:]), x.dtype)
    np.take(x, rows, axis=0, out=out)
    return out


def tensor(array):
    """``array`` as a tensor on its own memory (through DLPack) when :func:`shareable`, else
    a copy (``tf.convert_to_tensor``). Nothing may write the array while the tensor lives."""
    from lrstudy import tfquiet

    tf = tfquiet.import_tensorflow()
    if shareable(array):
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.convert_to_tensor(array)


def shareable(array: np.ndarray) -> bool:
    """Whether TensorFlow can share ``array``'s memory: C-contiguous, writeable (DLPack has
    no read-only arrays) and aligned."""
    return (isinstance(array, np.ndarray) and array.flags.c_contiguous
            and array.flags.writeable and array.ctypes.data % ALIGNMENT == 0)
