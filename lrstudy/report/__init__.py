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
(``plot_*``), :mod:`~lrstudy.report.gallery` (every scenario's LR curve, no training). This
package re-exports what the notebook uses, so ``report.load_trials(...)`` works as is.
"""

from lrstudy.report.figures import (
    plot_family_curves,
    plot_forest,
    plot_lr_curves,
    plot_lr_sensitivity,
    plot_range_tests,
    plot_test_accuracy,
    plot_tuning,
)
from lrstudy.report.frames import (
    EPOCH_KEYS,
    FINAL_KEYS,
    FINDER_KEYS,
    STEP_KEYS,
    SUGGESTION_KEYS,
    NoTrialsError,
    best_val_loss,
    budget,
    load_histories,
    load_range_tests,
    load_trials,
    one_seed_per_scenario,
    phases,
    sensitivity_trials,
    study_differs,
    store_uri,
    study_settings,
)
from lrstudy.report.leaderboard import leaderboard_markdown, leaderboard_table
from lrstudy.report.links import study_links
from lrstudy.report.publish import study_design
from lrstudy.report.reproduction import format_reproduction, load_reproduction
from lrstudy.report.stats import aggregate, mean_ci, t_interval
from lrstudy.report.tables import (
    averaged_iterate,
    benchmark_table,
    finder_calibration,
    format_table,
    table_parts,
)
from lrstudy.report.tuning import (
    choice_stability,
    finder_regret,
    plateau_fired,
    tuning_table,
)
from lrstudy.report.verdict import (
    recommendation,
    verdict_details,
    verdict_headline,
    verdict_paragraphs,
    verdict_text,
    verdicts,
)

__all__ = [
    "EPOCH_KEYS",
    "FINAL_KEYS",
    "FINDER_KEYS",
    "STEP_KEYS",
    "SUGGESTION_KEYS",
    "NoTrialsError",
    "aggregate",
    "averaged_iterate",
    "benchmark_table",
    "best_val_loss",
    "budget",
    "choice_stability",
    "finder_calibration",
    "finder_regret",
    "format_reproduction",
    "format_table",
    "leaderboard_markdown",
    "leaderboard_table",
    "load_histories",
    "load_range_tests",
    "load_reproduction",
    "load_trials",
    "mean_ci",
    "one_seed_per_scenario",
    "phases",
    "plateau_fired",
    "plot_family_curves",
    "plot_forest",
    "plot_lr_curves",
    "plot_lr_sensitivity",
    "plot_range_tests",
    "plot_test_accuracy",
    "plot_tuning",
    "recommendation",
    "sensitivity_trials",
    "study_design",
    "study_links",
    "store_uri",
    "study_differs",
    "study_settings",
    "t_interval",
    "table_parts",
    "tuning_table",
    "verdict_details",
    "verdict_headline",
    "verdict_paragraphs",
    "verdict_text",
    "verdicts",
]
