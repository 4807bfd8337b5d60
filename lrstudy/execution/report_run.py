"""The report: ``notebooks/summary.ipynb`` executed with papermill, exported to HTML, and both
files logged as artifacts of a ``lrstudy.kind = "summary"`` run of the study; the verdict
written back to MLflow, so that the UI answers too (:func:`make_report`)."""

from __future__ import annotations

from pathlib import Path

from lrstudy.report.frames import (
    experiment,
    finished_filter,
    load_trials,
    missing_sqlite,
    no_trials,
    phases,
    study_settings,
)
from lrstudy.report.publish import study_design, write_back
from lrstudy.report.reproduction import load_reproduction, records
from lrstudy.report.tables import benchmark_table, format_table
from lrstudy.report.verdict import verdict_paragraphs, verdicts
from lrstudy.tracking import store as tracking

NOTEBOOK = "summary.ipynb"  # in the notebooks of the checkout or of the installed package


def _require_trials(study: str, uri: str):
    """The client and experiment id of ``study``, which must have a finished trial."""
    if not missing_sqlite(uri):
        mlflow_client = tracking.client(uri)
        exp = experiment(study, mlflow_client)
        if exp is not None and mlflow_client.search_runs(
                [exp.experiment_id], finished_filter("trial"), max_results=1):
            return mlflow_client, exp.experiment_id
    raise no_trials(study, uri)


def _execute(study: str, uri: str, output: Path, reference: str | None, margin: float) -> Path:
    from lrstudy.execution import kernels

    kernels.execute(kernels.notebooks_dir() / NOTEBOOK, output,
                    {"study": study, "tracking_uri": uri, "reference": reference or "",
                     "margin": float(margin)}, tracking.project_root())
    return output


def _export_html(notebook: Path, output: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    output.write_text(body, encoding="utf-8")
    return output


def _log_summary(study: str, exp_id: str, mlflow_client, paths, verdict: str = "",
                 table=None, reproduced=None) -> str:
    """A summary run holding ``paths`` as artifacts, the verdict as its description (the
    ``mlflow.note.content`` tag), the benchmark table (``log_table``) and the reproduction
    table of the study's claims (``reproduction.json``, a list of rows, see
    :func:`lrstudy.report.reproduction.records`); it ends FINISHED, or FAILED / KILLED when
    logging them fails or is interrupted."""
    tags = tracking.run_tags("summary", study, name=f"summary-{study}")
    if verdict:
        tags["mlflow.note.content"] = verdict
    with tracking.open_run(mlflow_client, exp_id, tags) as run:
        for path in paths:
            mlflow_client.log_artifact(run.id, str(path))
        if table is not None:
            mlflow_client.log_table(run.id, data=table, artifact_file="benchmark_table.json")
        if reproduced is not None:  # the study checks published claims
            mlflow_client.log_dict(run.id, records(reproduced), "reproduction.json")
    return run.id


def publish_verdict(study: str, tracking_uri: str | None = None, reference: str | None = None,
                    margin: float | None = None):
    """Compute the verdict of ``study`` from the store and write it back to the scenario runs
    (:func:`lrstudy.report.publish.write_back`), under the design the study recorded
    (:func:`lrstudy.report.publish.study_design`). Returns ``(text, readable table, reference,
    margin)``; a ``reference`` asked for but not among the ranked scenarios is a ValueError."""
    uri = tracking.tracking_uri(tracking_uri)
    return _publish(study, uri, *_require_trials(study, uri), reference, margin)


def _publish(study: str, uri: str, mlflow_client, exp_id: str, reference, margin):
    ranked = phases(load_trials(study, uri))["ranked"]
    if reference and reference not in set(ranked["scenario"]):  # asked for, not there
        raise ValueError(f"reference {reference!r} is not a ranked scenario of study {study!r}; "
                         f"its scenarios: {', '.join(sorted(set(ranked['scenario'])))}")
    reference, margin = study_settings(study, uri, reference, margin)
    found = verdicts(ranked, reference, margin, study_design(study, uri))
    table = format_table(benchmark_table(ranked, reference, margin, found)).reset_index()
    write_back(mlflow_client, exp_id, ranked, found)
    return verdict_paragraphs(found), table, reference, margin


def report_dir(study: str, uri: str | None = None) -> Path:
    """Where a study's report is written: ``<project>/reports/<store>/<study>/``, the store's
    folder as for the executed notebooks (:func:`lrstudy.tracking.store.store_label`)."""
    return tracking.project_root() / "reports" / tracking.store_label(uri) / study


def make_report(study: str, tracking_uri: str | None = None, out_dir=None,
                reference: str | None = None, margin: float | None = None,
                on_verdict=None) -> Path:
    """Execute the summary notebook for ``study``, export it to HTML, log both; return the HTML.

    Steps: check that the study has finished trials (else :class:`NoTrialsError` naming the
    study and the store); the reference and margin (given, else the study's, see
    :func:`~lrstudy.report.frames.study_settings`); the verdict, written back to the scenario
    runs (:func:`lrstudy.report.publish.write_back`); execute ``notebooks/summary.ipynb``
    with papermill into ``out_dir`` (default :func:`report_dir`), export
    ``summary.html`` with embedded figures, and log both files, the verdict and the
    benchmark table on a new run tagged ``lrstudy.kind = "summary"``. ``on_verdict(text)``,
    when given, receives the verdict as soon as it is known (the command line prints it).
    """
    uri = tracking.tracking_uri(tracking_uri)
    mlflow_client, exp_id = _require_trials(study, uri)
    text, table, reference, margin = _publish(study, uri, mlflow_client, exp_id, reference,
                                              margin)
    if on_verdict is not None:
        on_verdict(text)
    out = Path(out_dir) if out_dir is not None else report_dir(study, uri)
    out.mkdir(parents=True, exist_ok=True)
    executed = _execute(study, uri, out / "summary.ipynb", reference, margin)
    html = _export_html(executed, out / "summary.html")
    _log_summary(study, exp_id, mlflow_client, [executed, html], text, table,
                 load_reproduction(study, uri))
    return html
