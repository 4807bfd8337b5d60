"""Traced functions made once per signature per process, and a warning when one traces again.

A ``tf.function`` made for each stack or each trial is traced (and, under XLA, compiled) for
each, even when an earlier one of the same shapes was traced already: a compile paid per
trial. The stacks and probes of :mod:`lrstudy.training` instead keep their traced functions in
an :class:`Engines` cache, keyed by their *signature* (everything the traced program depends
on: the number of copies, the layer shapes, the optimizer's class and configuration, ...),
and take what is particular to a trial as inputs or as variables assigned before a call.

Each function made by :func:`function` counts its traces under its name and signature
(its Python body runs only while it is traced); a second trace for one signature in one
process logs a WARNING on the logger ``lrstudy.training.traces`` whose message says
``retracing``, as TensorFlow's own warning does. TensorFlow's counts calls of one Python
function across every ``tf.function`` made of it and warns only once five of its last calls
or so traced; this line comes at the first trace too many, whatever the calls around it.
Nothing configures the logger: a WARNING reaches ``sys.stderr`` (Python's last-resort
handler), which in a kernel is the executed notebook's output.

Each traced function runs code of its own (a closure whose code object is renamed), so that
TensorFlow's detector, which counts per code object, counts the traces of one signature's
function, not those of every signature's (each traced once would add up to its warning).
"""

from __future__ import annotations

import collections
import logging
import types

from lrstudy import tfquiet

tf = tfquiet.import_tensorflow()
import keras  # noqa: E402

log = logging.getLogger(__name__)

_TRACES: collections.Counter = collections.Counter()  # (name, signature) -> traces
_CODES: dict = {}  # (name, signature) -> the code object its functions run (see function)


def optimizer_config(optimizer) -> dict:
    """The optimizer's configuration that a traced step depends on: all of it but the LR,
    the name and what a cycled momentum computes (tensors and variables)."""
    return {k: v for k, v in optimizer.get_config().items()
            if k not in ("name", "learning_rate") and not tf.is_tensor(v)
            and not isinstance(v, keras.Variable)}


@tf.autograph.experimental.do_not_convert  # bookkeeping: AutoGraph would descend into logging
def count(name: str, signature) -> int:
    """Count a trace of ``name`` for ``signature`` (call it while tracing); log the WARNING
    from the second on. Returns the count."""
    key = (name, signature)
    _TRACES[key] += 1
    if _TRACES[key] > 1:
        log.warning("%s retracing: traced %d times in this process for one signature %r "
                    "(a trace and compile paid again)", name, _TRACES[key], signature)
    return _TRACES[key]


def traces(name: str, signature=None) -> int:
    """How often ``name`` was traced for ``signature`` (None: for any) in this process."""
    if signature is not None:
        return _TRACES[(name, signature)]
    return sum(n for (fn, _), n in _TRACES.items() if fn == name)


def function(python_function, name: str, signature, **kwargs):
    """``tf.function(python_function, **kwargs)`` that counts its traces (:func:`count`)
    under ``name`` and ``signature``."""
    def traced(*args):
        count(name, signature)
        return python_function(*args)

    # a code object of the signature's own, kept: TensorFlow's detector keys its counts on the
    # code a function runs (weakly), which every closure made here shares
    code = _CODES.get((name, signature))
    if code is None:
        code = _CODES[(name, signature)] = traced.__code__.replace(
            co_name=f"{name}#{len(_CODES)}")
    traced = types.FunctionType(code, traced.__globals__, name, traced.__defaults__,
                                traced.__closure__)
    traced.__qualname__ = name  # TensorFlow's messages name it
    return tf.function(traced, **kwargs)


def forget(signature) -> None:
    """Drop the counts of an engine's functions: those of ``signature`` or of a tuple that
    starts with it (the engine was evicted: a later engine of the signature traces them
    anew, by design, see :class:`Engines`)."""
    for key in [k for k in _TRACES if k[1] == signature
                or (isinstance(k[1], tuple) and k[1][:1] == (signature,))]:
        del _TRACES[key]


class Engines:
    """A per-process cache of engines (objects holding traced functions and the variables
    they were traced on) by signature: the ``size`` used last are kept. Each engine holds
    its variables (a stack's weights and optimizer slots) and compiled programs for as long
    as it is kept, so the cache is bounded; an evicted signature that comes back is made and
    traced again (its counts forgotten, :func:`forget`)."""

    def __init__(self, size: int):
        self.size = int(size)
        self._engines: collections.OrderedDict = collections.OrderedDict()

    def get(self, signature, make):
        """The engine of ``signature``, made by ``make()`` if it is not kept."""
        engine = self._engines.pop(signature, None)
        if engine is None:
            engine = make()
        self._engines[signature] = engine
        while len(self._engines) > self.size:
            old, _ = self._engines.popitem(last=False)
            forget(old)
        return engine

    def clear(self) -> None:
        for signature in list(self._engines):
            forget(signature)
        self._engines.clear()
