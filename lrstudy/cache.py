"""lrstudy's cache directory: ``$LRSTUDY_CACHE_DIR``, else ``~/.cache/lrstudy``.

What it keeps can always be made again: the decoded Fashion-MNIST arrays
(:mod:`lrstudy.data.fashion_mnist`) and the empty MLflow store new sqlite stores are copied
from (:mod:`lrstudy.tracking.store_template`).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "LRSTUDY_CACHE_DIR"


def root() -> Path:
    """``$LRSTUDY_CACHE_DIR``, else ``~/.cache/lrstudy``."""
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lrstudy"
