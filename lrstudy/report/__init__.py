"""The summary of a study, read from MLflow: tidy frames, the statistics of the verdict, the
tables and the figures (what ``notebooks/summary.ipynb`` shows;
:mod:`lrstudy.execution.report_run` executes it).

One module per concept: :mod:`~lrstudy.report.frames` (store to tidy frames),
:mod:`~lrstudy.report.stats` (means, t-intervals),
:mod:`~lrstudy.report.verdict` (the paired comparison and the verdict), built on
:mod:`~lrstudy.report.simultaneous` (the simultaneous intervals and the calls),
:mod:`~lrstudy.report.best_group` (multiple comparisons with the best),
:mod:`~lrstudy.report.sequential` (group-sequential boundaries, the study's design),
:mod:`~lrstudy.report.seeds_needed` and :mod:`~lrstudy.report.improvement` (P(improvement));
:mod:`~lrstudy.report.publish` (the verdict written back to MLflow, the design's tags),
:mod:`~lrstudy.report.tables` (the benchmark table),
:mod:`~lrstudy.report.leaderboard` (its short form, linked to the runs: :mod:`~lrstudy.report.links`),
:mod:`~lrstudy.report.tuning` (the tuning's evidence, the range test's regret),
:mod:`~lrstudy.report.reproduction` (published claims beside ours), :mod:`~lrstudy.report.figures`
(``plot_*``), :mod:`~lrstudy.report.gallery` (every scenario's LR curve, no training).
Across workloads (a study whose scenarios are ``<strategy>@<workload>``):
:mod:`~lrstudy.report.workloads` (strategy and workload of a trial, per-workload scores),
:mod:`~lrstudy.report.profiles` (performance profiles),
:mod:`~lrstudy.report.aggregate_score` (IQM of normalized scores, stratified bootstrap),
:mod:`~lrstudy.report.pairwise` (pairs of strategies called per workload, their
win / tie / loss counts),
:mod:`~lrstudy.report.tuning_budget` (expected best validation score of n tuning runs),
:mod:`~lrstudy.report.calibration` (the range test's regret and LR ratio per workload),
:mod:`~lrstudy.report.workload_figures` (their ``plot_*``),
:mod:`~lrstudy.report.across` (all of them computed once, and the answer in words).
This package re-exports what the notebook uses, so ``report.load_trials(...)`` works as is.

The names are imported when first asked for (``report.load_trials``): a module that needs one
submodule (:mod:`~lrstudy.report.sequential` for the runner) does not import them all
(rliable, SciPy's statistics, the figures).
"""

from __future__ import annotations

import importlib

#: Each name this package offers, by the submodule that defines it.
_SUBMODULE_NAMES = {
    "across": ("across_headline", "across_workloads", "has_workloads"),
    "aggregate_score": ("iqm_table", "normalized_scores"),
    "calibration": ("calibration_table",),
    "figures": (
        "plot_family_curves", "plot_forest", "plot_lr_curves", "plot_lr_sensitivity",
        "plot_range_tests", "plot_test_accuracy", "plot_tuning",
    ),
    "frames": (
        "best_val_loss", "budget", "EPOCH_KEYS", "FINAL_KEYS", "FINDER_KEYS",
        "load_histories", "load_range_tests", "load_trials", "NoTrialsError",
        "one_seed_per_scenario", "phases", "REGRESSION_EPOCH_KEYS",
        "sensitivity_trials", "STEP_KEYS", "store_uri", "study_differs",
        "study_settings", "SUGGESTION_KEYS",
    ),
    "leaderboard": ("leaderboard_markdown", "leaderboard_table"),
    "links": ("study_links",),
    "pairwise": ("pairwise_calls", "win_tie_loss"),
    "profiles": ("performance_profile", "performance_ratios"),
    "publish": ("study_design",),
    "reproduction": ("format_reproduction", "load_reproduction"),
    "stats": ("aggregate", "mean_ci", "t_interval"),
    "tables": (
        "averaged_iterate", "benchmark_table", "finder_calibration", "format_table",
        "table_parts",
    ),
    "tuning": ("choice_stability", "finder_regret", "plateau_fired", "tuning_table"),
    "tuning_budget": (
        "best_by_budget", "budget_scores", "expected_best", "tuning_curves",
        "tuning_points",
    ),
    "verdict": (
        "recommendation", "verdict_details", "verdict_headline", "verdict_paragraphs",
        "verdict_text", "verdicts",
    ),
    "workload_figures": (
        "plot_calibration", "plot_iqm", "plot_performance_profiles",
        "plot_tuning_budget", "plot_win_tie_loss",
    ),
    "workloads": ("split_scenario", "with_workloads"),
}
_WHERE = {name: module for module, names in _SUBMODULE_NAMES.items() for name in names}

__all__ = [
    "across_headline",
    "across_workloads",
    "EPOCH_KEYS",
    "FINAL_KEYS",
    "FINDER_KEYS",
    "REGRESSION_EPOCH_KEYS",
    "STEP_KEYS",
    "SUGGESTION_KEYS",
    "NoTrialsError",
    "aggregate",
    "averaged_iterate",
    "benchmark_table",
    "best_by_budget",
    "best_val_loss",
    "budget",
    "budget_scores",
    "calibration_table",
    "choice_stability",
    "expected_best",
    "finder_calibration",
    "finder_regret",
    "format_reproduction",
    "format_table",
    "has_workloads",
    "iqm_table",
    "leaderboard_markdown",
    "leaderboard_table",
    "load_histories",
    "load_range_tests",
    "load_reproduction",
    "load_trials",
    "mean_ci",
    "normalized_scores",
    "one_seed_per_scenario",
    "pairwise_calls",
    "performance_profile",
    "performance_ratios",
    "phases",
    "plateau_fired",
    "plot_calibration",
    "plot_family_curves",
    "plot_forest",
    "plot_iqm",
    "plot_lr_curves",
    "plot_lr_sensitivity",
    "plot_performance_profiles",
    "plot_range_tests",
    "plot_test_accuracy",
    "plot_tuning",
    "plot_tuning_budget",
    "plot_win_tie_loss",
    "recommendation",
    "sensitivity_trials",
    "split_scenario",
    "study_design",
    "study_links",
    "store_uri",
    "study_differs",
    "study_settings",
    "t_interval",
    "table_parts",
    "tuning_curves",
    "tuning_points",
    "tuning_table",
    "verdict_details",
    "verdict_headline",
    "verdict_paragraphs",
    "verdict_text",
    "verdicts",
    "win_tie_loss",
    "with_workloads",
]


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # asked once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
