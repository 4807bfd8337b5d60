"""The executed notebook's own table and figure of a scenario's trials
(:func:`lrstudy.execution.scenario_run.results_table`, :func:`~lrstudy.execution.scenario_run.plot_results`)."""

import matplotlib

matplotlib.use("agg")

from lrstudy.execution import scenario_run  # noqa: E402
from lrstudy.tracking.schema import Metric  # noqa: E402


def trial(seed: int, peak_lr: float | None, accuracy: float, status: str = "finished") -> dict:
    return {"seed": seed, "peak_lr": peak_lr, "status": status, "run_id": f"r{seed}-{peak_lr}",
            "test_accuracy": float("nan"),
            "points": {"val_accuracy": [(0, accuracy - 0.1), (1, accuracy)],
                       "val_loss": [(0, 0.6), (1, 0.5)],
                       Metric.STEP_LEARNING_RATE: [(0, peak_lr or 0.01), (8, peak_lr or 0.01)]}}


TUNING = [trial(seed, lr, 0.8 + lr) for lr in (0.001, 0.01) for seed in (1000, 1001)]


def test_a_tunings_table_and_legend_name_each_trial_by_its_lr_and_seed():
    """A tuning trains each seed at every grid point: its rows and its legend's entries are
    told apart by the peak LR, not by the seed alone. The figure has one legend for its three
    panels."""
    table = scenario_run.results_table(TUNING)
    assert table.index.names == ["peak_lr", "seed"] and table.index.is_unique
    assert table.loc[(0.01, 1001), "val_accuracy"] == 0.81
    fig = scenario_run.plot_results(TUNING + [trial(1002, 0.1, 0.5, status="diverged")])
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "LR 0.001, seed 1000", "LR 0.001, seed 1001", "LR 0.01, seed 1000", "LR 0.01, seed 1001",
        "LR 0.1, seed 1002 (diverged)"]
    assert all(ax.get_legend() is None for ax in fig.axes)


def test_the_trials_of_one_lr_are_named_by_their_seeds():
    """Trials at one LR (a final, a demonstration): a row and an entry per seed."""
    finals = [trial(seed, 0.003, 0.85) for seed in (0, 1, 2)]
    table = scenario_run.results_table(finals)
    assert table.index.name == "seed" and list(table.index) == [0, 1, 2]
    (legend,) = scenario_run.plot_results(finals).legends
    assert [t.get_text() for t in legend.get_texts()] == ["seed 0", "seed 1", "seed 2"]
