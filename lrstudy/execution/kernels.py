"""Executing our notebooks with papermill: private kernels whose output goes to a log file.

Every execution gets its own kernel, talking to us over IPC sockets in a private temporary
directory (mode 0700), not over unencrypted loopback TCP ports that any local user could
reach. The kernel process's own stdout and stderr (file descriptors 1 and 2, where C++
libraries write: TensorFlow's start-up notices, XLA's, a crash's last words) go to a log file
beside the executed notebook instead of the terminal, whatever the CPU makes TensorFlow say,
so they never break into a progress bar. What the notebook's cells print is in the executed
notebook as usual.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Unicode


def notebooks_dir() -> Path:
    """The notebooks: an installed package's own copy (package data, ``lrstudy/notebooks``),
    else the checkout's ``notebooks/`` (or ``$LRSTUDY_HOME``'s)."""
    from lrstudy.tracking import store as tracking

    installed = Path(__file__).resolve().parents[1] / "notebooks"  # lrstudy/notebooks
    return installed if installed.is_dir() else tracking.project_root() / "notebooks"


def log_path(output: Path | str) -> Path:
    """Where the kernel of the execution writing ``output`` logs: ``<output>.log``."""
    output = Path(output)
    return output.with_name(output.name + ".log")


class LoggedKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel with stdout and stderr on :attr:`log_file`."""

    log_file = Unicode("", help="file receiving the kernel's stdout and stderr").tag(config=True)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if not self.log_file:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        with open(self.log_file, "ab") as log:  # the child keeps its own copy of the fd
            kw.setdefault("stdout", log)
            kw.setdefault("stderr", log)
            return await super()._async_launch_kernel(kernel_cmd, **kw)


def execute(notebook: Path | str, output: Path | str, parameters: dict,
            cwd: Path | str | None = None, log: Path | str | None = None):
    """papermill-execute ``notebook`` into ``output`` on a private python3 kernel.

    The kernel's stdout and stderr are appended to ``log`` (default :func:`log_path`).
    Raises what papermill raises (``PapermillExecutionError`` when a cell raised).
    """
    import papermill
    from traitlets.config import Config

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    log = Path(log) if log is not None else log_path(output)
    with tempfile.TemporaryDirectory(prefix="lrstudy-kernel-") as sockets:
        # "immediate": the kernel is stopped once the last cell is done, not asked to exit:
        # a kernel that has run TensorFlow took 2-3 s to exit (its atexit hooks have nothing
        # to do here: the cells end their runs and wait for their writes)
        config = Config(
            NotebookClient={"kernel_manager_class": LoggedKernelManager,
                            "shutdown_kernel": "immediate"},
            LoggedKernelManager={"transport": "ipc", "ip": os.path.join(sockets, "k"),
                                 "log_file": str(log)})
        return papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters, kernel_name="python3",
            progress_bar=False, cwd=str(cwd or notebooks_dir()), config=config)
