"""Final seeds added until every comparison is decided (``lrstudy run --until-decided``): the
study's design recorded on its experiment, the verdict looked at after each round of seeds,
and the loop that adds them (its statistics: :mod:`lrstudy.report.sequential`).
"""

from __future__ import annotations

from lrstudy.tracking.schema import TAG


def sequential_design(mlflow_client, exp_id: str, seeds: int, until_decided: bool,
                      max_seeds: int | None):
    """The study's design, recorded on its experiment for the report
    (:mod:`lrstudy.report.sequential`, :func:`record_design`).

    ``until_decided``: group-sequential with at most ``max_seeds`` final seeds (default
    :data:`~lrstudy.report.sequential.MAX_SEEDS`, at least ``seeds``); a study already
    recorded as sequential keeps its design and looks (a different ``max_seeds`` is a
    ValueError: the boundaries already spent depend on it). A plain run is the fixed design,
    except on a study whose verdict was already looked at sequentially: those looks were
    taken, so the report keeps pricing them.
    """
    from lrstudy.report import sequential

    recorded = sequential.design_from_tags(
        mlflow_client.get_experiment(exp_id).tags, TAG)
    if recorded.sequential:
        if until_decided and max_seeds and max_seeds != recorded.max_seeds:
            raise ValueError(f"this study's group-sequential design allows at most "
                             f"{recorded.max_seeds} seeds, with looks at "
                             f"{', '.join(map(str, recorded.looks)) or 'none yet'}; its "
                             f"boundaries depend on that maximum: rerun with --max-seeds "
                             f"{recorded.max_seeds}")
        return recorded
    if not until_decided:
        record_design(mlflow_client, exp_id, sequential.Design())
        return sequential.Design()
    top = max_seeds or max(sequential.MAX_SEEDS, seeds)
    if top < seeds:
        raise ValueError(f"--max-seeds {top} is below the {seeds} final seeds to start with")
    design = sequential.Design(sequential.SEQUENTIAL, top, sequential.SEED_STEP, ())
    record_design(mlflow_client, exp_id, design)
    return design


def record_design(mlflow_client, exp_id: str, design) -> None:
    """Record ``design`` (a :class:`lrstudy.report.sequential.Design`) on the experiment's
    tags (:meth:`~lrstudy.report.sequential.Design.tags`)."""
    for key, value in design.tags().items():
        mlflow_client.set_experiment_tag(exp_id, TAG + key, value)


def look(study: str, uri: str, design, seeds: int) -> list[str]:
    """The verdict from the store at a look with ``seeds`` final seeds: the strategies still
    undecided against the reference (none when the study has no reference)."""
    from lrstudy import report
    from lrstudy.report.verdict import undecided

    ranked = report.phases(report.load_trials(study, uri))["ranked"]
    reference, margin = report.study_settings(study, uri)
    return undecided(report.verdicts(ranked[ranked["seed"] < seeds], reference, margin,
                                     design))


def seeds_until_decided(study: str, uri: str, mlflow_client, exp_id: str, design, seeds: int,
                        more_seeds, watch) -> dict:
    """Look at the verdict after the finals at ``seeds`` seeds; while a comparison is
    undecided and ``design.max_seeds`` is not reached, ``more_seeds(n)`` runs the finals at
    ``n = seeds + design.seed_step`` and the verdict is looked at again. Each look is
    recorded on the experiment (``lrstudy.looks``) before the next seeds run, so an
    interrupted study resumes with the looks it took. Returns ``{"looks", "max_seeds",
    "undecided", "stopped"}`` (``stopped``: decided, max_seeds, or failed)."""
    while True:
        pending = watch.call(look, study, uri, design, seeds)
        design = design.with_look(seeds)
        watch.call(record_design, mlflow_client, exp_id, design)
        stopped = "decided" if not pending else "max_seeds" if seeds >= design.max_seeds else ""
        if not stopped:
            seeds = min(seeds + design.seed_step, design.max_seeds)
            if not more_seeds(seeds):
                stopped = "failed"
        if stopped:
            return {"looks": list(design.looks), "max_seeds": design.max_seeds,
                    "undecided": pending if stopped != "failed" else [], "stopped": stopped}
