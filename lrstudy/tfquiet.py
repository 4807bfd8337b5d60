"""Import TensorFlow without its C++ start-up notices.

On some CPUs TensorFlow prints, while it is imported, ``WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR`` and ``I0000 ... port.cc:153] oneDNN
custom operations are on ...`` (and a ``cpu_feature_guard.cc`` note), each twice.
``TF_CPP_MIN_LOG_LEVEL`` cannot silence them: C++ writes them before any logging is set up,
straight to file descriptor 2. So :func:`import_tensorflow` points descriptor 2 at a
temporary file while the import runs, then puts it back and writes out again every line that
is not such a notice (a real warning or error still reaches stderr, in order).

Modules that need TensorFlow or Keras call :func:`import_tensorflow` before importing either.
The kernels the runner starts log their descriptors 1 and 2 to a file anyway
(:mod:`lrstudy.execution.kernels`); this keeps the notices out of the executed notebooks, JupyterLab
and the command line as well.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the notices logging does control

#: Lines TensorFlow prints at import that tell the user nothing actionable.
NOTICE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:. ]+\s*\d+ \S+\.cc:\d+\] .*"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate "
    r"compiler flags\.)$")


def is_notice(line: str) -> bool:
    """True for a start-up notice (an INFO line of TensorFlow's C++ logging, absl's pre-init
    warning, the CPU-instructions note), False for anything else."""
    return bool(NOTICE.match(line.rstrip("\r\n")))


@contextlib.contextmanager
def notices_hidden(fd: int = 2):
    """Within the block, C++ and Python writes to ``fd`` are filtered through
    :func:`is_notice`; what is not a notice is written to ``fd`` on exit."""
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (AttributeError, ValueError):
                pass
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(True)
                    if not is_notice(line)]
            if kept:
                os.write(fd, "".join(kept).encode())


def import_tensorflow(module: str = "tensorflow"):
    """``importlib.import_module(module)`` with TensorFlow's start-up notices hidden; once
    TensorFlow is imported this is a plain import."""
    if "tensorflow" in sys.modules:
        return importlib.import_module(module)
    with notices_hidden():
        return importlib.import_module(module)


class LazyModule:
    """A module imported (through :func:`import_tensorflow`) on first attribute access, so a
    module can name ``keras`` at its top and still be imported without TensorFlow.

    >>> keras = LazyModule("keras")  # nothing imported yet
    """

    def __init__(self, name: str):
        self._name = name
        self._module = None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = import_tensorflow(self._name)
        return getattr(self._module, attr)
