"""papermill's engine for a kernel lrstudy keeps (:class:`lrstudy.execution.kernels.KeptKernel`),
registered as :data:`NAME`.

Apart from :mod:`lrstudy.execution.kernels` so that starting a kernel does not import
papermill: a warmed kernel is started before the runner plans, and every import on the way
delays the start of its own imports.
"""

from __future__ import annotations

from papermill.engines import NBClientEngine, papermill_engines


class KeptKernelEngine(NBClientEngine):
    """papermill's nbclient engine on a kernel it is handed (``km``) and leaves running; the
    client it made to talk to it is closed when the execution ends."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                 stderr_file=None, start_timeout=60, execution_timeout=None,
                                 **kwargs):
        from papermill.clientwrap import PapermillNotebookClient
        from papermill.log import logger

        kwargs.pop("input_path", None)
        client = PapermillNotebookClient(
            nb_man, kernel_name=kernel_name, log=logger, log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file, startup_timeout=start_timeout, timeout=execution_timeout,
            **kwargs)
        try:
            return client.execute()
        finally:
            if client.kc is not None:
                client.kc.stop_channels()


NAME = "lrstudy-kept-kernel"
papermill_engines.register(NAME, KeptKernelEngine)
