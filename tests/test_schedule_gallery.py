"""The schedule gallery (:mod:`lrstudy.report.gallery`): every scenario's LR at every step of
its budget, computed without training or a tracking store, one panel per family."""

from __future__ import annotations

import numpy as np
import pytest

from lrstudy.report import gallery as schedule_gallery
from lrstudy.spec import study as scenarios

OVERRIDES = {"epochs": 2}


@pytest.fixture(scope="module")
def curves():
    return schedule_gallery.schedule_curves("smoke", OVERRIDES)


def test_schedule_curves_cover_every_step_of_every_scenario(curves):
    study = scenarios.load_study("smoke", OVERRIDES)
    assert list(curves.columns) == ["run_id", "scenario", "family", "unit", "key", "step",
                                    "value"]
    assert set(curves["scenario"]) == set(study.scenarios)
    assert set(curves["key"]) == {"step_learning_rate"}
    for name, sc in study.scenarios.items():
        part = curves[curves["scenario"] == name]
        assert part["step"].tolist() == list(range(sc.steps_per_epoch * 2))
        assert set(part["family"]) == {sc.family}
        if sc.schedule is None:
            assert set(part["unit"]) == {"constant"}
            assert np.all(part["value"] == sc.learning_rate)
    spec = study.scenarios["warmup-cosine"].schedule
    warmup = curves[curves["scenario"] == "warmup-cosine"]["value"].to_numpy()
    assert warmup[0] == pytest.approx(spec["initial"], rel=1e-5)
    assert warmup.max() == pytest.approx(spec["peak"], rel=1e-5)
    assert warmup.argmax() > 0 and warmup[-1] < warmup.max()


def test_plot_schedule_gallery_one_panel_per_family(curves):
    fig = schedule_gallery.plot_schedule_gallery(curves)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["fixed", "warmup"]
    assert [len(ax.get_lines()) for ax in axes] == [2, 1]
    assert all(ax.get_yscale() == "log" for ax in axes)
    fixed = sorted(line.get_ydata()[0] for line in axes[0].get_lines())
    assert fixed == pytest.approx([1e-3, 0.5])
