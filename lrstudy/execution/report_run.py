"""The report: ``notebooks/summary.ipynb`` executed with papermill, exported to HTML that reads
as an answer (no code; the executed notebook, with its code, beside it and linked from its
header), and both files logged as artifacts of a ``lrstudy.kind = "summary"`` run of the
study; the verdict written back to MLflow, so that the UI answers too (:func:`make_report`)."""

from __future__ import annotations

from pathlib import Path

from lrstudy.report.across import across_headline, across_workloads, has_workloads
from lrstudy.report.frames import (
    experiment,
    finished_filter,
    load_range_tests,
    load_trials,
    missing_sqlite,
    no_trials,
    phases,
    study_settings,
)
from lrstudy.report.leaderboard import leaderboard_table
from lrstudy.report.links import DEFAULT_UI, Links
from lrstudy.report.publish import (
    across_markdown,
    describe_experiment,
    log_across,
    study_design,
    verdict_markdown,
    within,
    write_across,
    write_back,
)
from lrstudy.report.reproduction import load_reproduction, records
from lrstudy.report.tables import benchmark_table, format_table
from lrstudy.report.verdict import verdict_paragraphs, verdicts
from lrstudy.tracking import run_life
from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Tag

NOTEBOOK = "summary.ipynb"  # in the notebooks of the checkout or of the installed package
#: Cells tagged so stay in the executed notebook and out of the HTML (nbconvert's convention).
NOTEBOOK_ONLY = "remove_cell"
#: What makes the exported page read as a page: tables wrap their cells and shrink to its
#: width (the widest go to the appendix in parts), and the link to the notebook is discreet.
PAGE_STYLE = """<style>
.jp-RenderedHTMLCommon table { max-width: 100%; font-size: 12px; }
.jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { white-space: normal; }
.lrstudy-source { color: #666; font-size: 12px; }
</style>"""
#: Whatever identifies the process that ran a run: only a RUNNING run needs it (to tell a live
#: owner from a dead one), so the summary run drops it once it has ended.
LIVENESS_TAGS = (Tag.HOST, Tag.PID, Tag.HEARTBEAT)


def _require_trials(study: str, uri: str):
    """The client and experiment id of ``study``, which must have a finished trial."""
    if not missing_sqlite(uri):
        mlflow_client = tracking.client(uri)
        exp = experiment(study, mlflow_client)
        if exp is not None and mlflow_client.search_runs(
                [exp.experiment_id], finished_filter("trial"), max_results=1):
            return mlflow_client, exp.experiment_id
    raise no_trials(study, uri)


def _execute(study: str, uri: str, output: Path, reference: str | None, margin: float,
             mlflow_ui: str) -> Path:
    from lrstudy.execution import kernels

    kernels.execute(kernels.notebooks_dir() / NOTEBOOK, output,
                    {"study": study, "tracking_uri": uri, "reference": reference or "",
                     "margin": float(margin), "mlflow_ui": mlflow_ui}, tracking.project_root())
    return output


def _export_html(notebook: Path, output: Path) -> Path:
    """``notebook`` as a page: its outputs and its text without any code (inputs, prompts,
    code cells that show nothing and the cells tagged :data:`NOTEBOOK_ONLY` left out), a line
    under the title linking the executed notebook beside it, and :data:`PAGE_STYLE`."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    node = nbformat.read(notebook, as_version=4)
    node.cells = [c for c in node.cells if c.cell_type != "code" or c.get("outputs")]
    source = nbformat.v4.new_markdown_cell(
        f'<p class="lrstudy-source">The code behind this page, with its outputs: '
        f'<a href="{notebook.name}">{notebook.name}</a>, the executed notebook beside it.</p>')
    title = next((i for i, c in enumerate(node.cells) if c.cell_type == "markdown"), -1)
    node.cells.insert(title + 1, source)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={NOTEBOOK_ONLY}),
                                   enabled=True)
    body, _ = exporter.from_notebook_node(node)
    body = body.replace("</head>", PAGE_STYLE + "\n</head>", 1)
    output.write_text(body, encoding="utf-8")
    return output


def _log_summary(study: str, exp_id: str, mlflow_client, paths, verdict: str = "",
                 table=None, reproduced=None, across=None, headline: str = "") -> str:
    """A summary run holding ``paths`` as artifacts, the verdict as its description (the
    ``mlflow.note.content`` tag), the benchmark table (``log_table``), the reproduction
    table of the study's claims (``reproduction.json``, a list of rows, see
    :func:`lrstudy.report.reproduction.records`) and, in a study with workloads, the answer
    across them (``across``, its ``headline``: tables and figures,
    :func:`lrstudy.report.publish.log_across`); it ends FINISHED, or FAILED / KILLED when
    logging them fails or is interrupted."""
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    tags = tracking.run_tags("summary", study, name=f"summary-{study}")
    if verdict:  # within MLflow's limit on a run tag; verdict.md keeps it whole
        tags[Tag.NOTE] = within(verdict, MAX_TAG_VAL_LENGTH, "this run's verdict.md")
    with run_life.open_run(mlflow_client, exp_id, tags) as run:
        if verdict:
            mlflow_client.log_text(run.id, verdict, "verdict.md")
        for path in paths:
            mlflow_client.log_artifact(run.id, str(path))
        if table is not None:
            mlflow_client.log_table(run.id, data=table, artifact_file="benchmark_table.json")
        if reproduced is not None:  # the study checks published claims
            mlflow_client.log_dict(run.id, records(reproduced), "reproduction.json")
        if across is not None:  # a study with workloads
            log_across(mlflow_client, run.id, across, headline)
    for key in LIVENESS_TAGS:  # ended: nobody needs to tell whether it is alive
        mlflow_client.delete_tag(run.id, key)
    return run.id


def publish_verdict(study: str, tracking_uri: str | None = None, reference: str | None = None,
                    margin: float | None = None):
    """Compute the verdict of ``study`` from the store and write it back to the scenario runs
    (:func:`lrstudy.report.publish.write_back`) and, with the leaderboard, to the experiment's
    description, under the design the study recorded
    (:func:`lrstudy.report.publish.study_design`). Returns ``(text, readable table, reference,
    margin, the verdict as Markdown with the leaderboard)``; a ``reference`` asked for but not
    among the ranked scenarios is a ValueError."""
    uri = tracking.tracking_uri(tracking_uri)
    return _publish(study, uri, *_require_trials(study, uri), reference, margin)[:5]


def _publish(study: str, uri: str, mlflow_client, exp_id: str, reference, margin):
    """:func:`publish_verdict`'s five values, then the answer across workloads
    (:func:`lrstudy.report.across.across_workloads`; None for a study without
    workloads) and its headline. In a study with workloads the verdict's text and Markdown
    open with that headline, and each scenario run also gets its share of the answer
    (:func:`lrstudy.report.publish.write_across`)."""
    trials = load_trials(study, uri)
    ranked = phases(trials)["ranked"]
    if reference and reference not in set(ranked["scenario"]):  # asked for, not there
        raise ValueError(f"reference {reference!r} is not a ranked scenario of study {study!r}; "
                         f"its scenarios: {', '.join(sorted(set(ranked['scenario'])))}")
    reference, margin = study_settings(study, uri, reference, margin)
    found = verdicts(ranked, reference, margin, study_design(study, uri))
    compared = benchmark_table(ranked, reference, margin, found)
    write_back(mlflow_client, exp_id, ranked, found)
    # inside the MLflow UI its links stay relative to it, wherever it is served
    markdown = verdict_markdown(found, leaderboard_table(compared, ranked, Links("", exp_id)))
    text = verdict_paragraphs(found)
    across, headline = None, ""
    if has_workloads(ranked):
        across = across_workloads(trials, load_range_tests(study, uri), reference, margin)
        headline = across_headline(across)
        write_across(mlflow_client, exp_id, across)
        markdown, text = across_markdown(headline, markdown), f"{headline}\n\n{text}"
    describe_experiment(mlflow_client, exp_id, markdown)
    return (text, format_table(compared).reset_index(), reference, margin, markdown, across,
            headline)


def report_dir(study: str, uri: str | None = None) -> Path:
    """Where a study's report is written: ``<project>/reports/<store>/<study>/``, the store's
    folder as for the executed notebooks (:func:`lrstudy.tracking.store.store_label`)."""
    return tracking.project_root() / "reports" / tracking.store_label(uri) / study


def make_report(study: str, tracking_uri: str | None = None, out_dir=None,
                reference: str | None = None, margin: float | None = None,
                on_verdict=None, mlflow_ui: str = DEFAULT_UI) -> Path:
    """Execute the summary notebook for ``study``, export it to HTML, log both; return the HTML.

    Steps: check that the study has finished trials (else :class:`NoTrialsError` naming the
    study and the store); the reference and margin (given, else the study's, see
    :func:`~lrstudy.report.frames.study_settings`); the verdict, written back to the scenario
    runs and the experiment's description (:func:`publish_verdict`); execute
    ``notebooks/summary.ipynb`` with papermill into ``out_dir`` (default :func:`report_dir`),
    its links to runs pointing at the MLflow UI ``mlflow_ui``; export ``summary.html`` with
    embedded figures and no code (:func:`_export_html`), and log both files, the verdict with
    the leaderboard and the benchmark table on a new run tagged ``lrstudy.kind = "summary"``;
    in a study with workloads, the answer across them opens the verdict and the descriptions,
    and its tables and figures are logged on that run too.
    ``on_verdict(text)``, when given, receives the verdict as soon as it is known (the command
    line prints it).
    """
    uri = tracking.tracking_uri(tracking_uri)
    mlflow_client, exp_id = _require_trials(study, uri)
    text, table, reference, margin, markdown, across, headline = _publish(
        study, uri, mlflow_client, exp_id, reference, margin)
    if on_verdict is not None:
        on_verdict(text)
    out = Path(out_dir) if out_dir is not None else report_dir(study, uri)
    out.mkdir(parents=True, exist_ok=True)
    executed = _execute(study, uri, out / "summary.ipynb", reference, margin, mlflow_ui)
    html = _export_html(executed, out / "summary.html")
    _log_summary(study, exp_id, mlflow_client, [executed, html], markdown, table,
                 load_reproduction(study, uri), across, headline)
    return html
