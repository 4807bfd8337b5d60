"""The report: ``notebooks/summary.ipynb`` executed with papermill, exported to HTML, and both
files logged as artifacts of a ``lrstudy.kind = "summary"`` run of the study."""

from __future__ import annotations

from pathlib import Path

from lrstudy import tracking
from lrstudy.report.frames import experiment, finished_filter, missing_sqlite, no_trials

NOTEBOOK = Path(__file__).resolve().parent.parent.parent / "notebooks" / "summary.ipynb"


def _require_trials(study: str, uri: str):
    """The client and experiment id of ``study``, which must have a finished trial."""
    if not missing_sqlite(uri):
        mlflow_client = tracking.client(uri)
        exp = experiment(study, mlflow_client)
        if exp is not None and mlflow_client.search_runs(
                [exp.experiment_id], finished_filter("trial"), max_results=1):
            return mlflow_client, exp.experiment_id
    raise no_trials(study, uri)


def _execute(study: str, uri: str, output: Path) -> Path:
    from lrstudy import kernels

    kernels.execute(NOTEBOOK, output, {"study": study, "tracking_uri": uri},
                    NOTEBOOK.parent.parent)
    return output


def _export_html(notebook: Path, output: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    output.write_text(body, encoding="utf-8")
    return output


def _log_summary(study: str, exp_id: str, mlflow_client, paths) -> str:
    """A summary run holding ``paths`` as artifacts; it ends FINISHED, or FAILED / KILLED
    when logging them fails or is interrupted."""
    tags = tracking.run_tags("summary", study, name=f"summary-{study}")
    with tracking.open_run(mlflow_client, exp_id, tags) as run:
        for path in paths:
            mlflow_client.log_artifact(run.id, str(path))
    return run.id


def make_report(study: str, tracking_uri: str | None = None, out_dir=None) -> Path:
    """Execute the summary notebook for ``study``, export it to HTML, log both; return the HTML.

    Steps: check that the study has finished trials (else :class:`NoTrialsError` naming the
    study and the store), execute ``notebooks/summary.ipynb`` with papermill (parameters
    ``study``, ``tracking_uri``) into ``out_dir`` (default ``<project>/reports/<study>/``),
    export ``summary.html`` with embedded figures, and log both files as artifacts of a new
    run tagged ``lrstudy.kind = "summary"`` in the study's experiment.
    """
    uri = tracking.tracking_uri(tracking_uri)
    mlflow_client, exp_id = _require_trials(study, uri)
    out = Path(out_dir) if out_dir is not None else tracking.project_root() / "reports" / study
    out.mkdir(parents=True, exist_ok=True)
    executed = _execute(study, uri, out / "summary.ipynb")
    html = _export_html(executed, out / "summary.html")
    _log_summary(study, exp_id, mlflow_client, [executed, html])
    return html
