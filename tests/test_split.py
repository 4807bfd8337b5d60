"""A budget's ``split = "per-seed"``: each trial's seed draws its train/validation split (the
test set stays fixed), the strategies of one seed share it, the run key names it only when
set, stacks hold one seed's trials, and a bad value is refused in one line."""

from __future__ import annotations

import types

import numpy as np
import pytest

from lrstudy.data import datasets as data
from lrstudy.spec import competition
from lrstudy.spec import study as scenarios
from lrstudy.training import fitting, stacking


def study(write_study, split: str | None = None, **kwargs):
    extra = f'split = "{split}"' if split is not None else ""
    path = write_study(scenarios='["fixed-baseline", "fixed-sgd"]', extra=extra, **kwargs)
    return scenarios.load_study(str(path)).scenarios


def test_per_seed_splits_differ_between_seeds_and_keep_the_test_set():
    a, b = (data.load_cached("synthetic", 0, 200, split="per-seed", seed=s) for s in (0, 1))
    assert not np.array_equal(a.x_val, b.x_val) and not np.array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    fixed = data.load_cached("synthetic", 0, 200)
    np.testing.assert_array_equal(a.x_test, fixed.x_test)  # and the fixed split's
    pool = {r.tobytes() for r in fixed.x_train} | {r.tobytes() for r in fixed.x_val}
    assert {r.tobytes() for r in a.x_train} | {r.tobytes() for r in a.x_val} == pool
    assert data.load_cached("synthetic", 0, 200, seed=1) is fixed  # a fixed split: no seed
    with pytest.raises(ValueError, match="per-seed.*no seed was given"):
        data.load_cached("synthetic", 0, 200, split="per-seed")


def test_one_seed_gives_every_strategy_the_same_split(write_study):
    scs = study(write_study, "per-seed", epochs=1)
    base, sgd = scs["fixed-baseline"], scs["fixed-sgd"]
    prepared = {(sc.name, seed): fitting.prepare_fit(sc, seed, None)
                for sc in (base, sgd) for seed in (0, 1)}
    for seed in (0, 1):
        one, other = prepared["fixed-baseline", seed].dataset, prepared["fixed-sgd", seed].dataset
        np.testing.assert_array_equal(one.x_val, other.x_val)
        np.testing.assert_array_equal(one.x_train, other.x_train)
    zero, one = prepared["fixed-sgd", 0].dataset, prepared["fixed-sgd", 1].dataset
    assert not np.array_equal(zero.x_val, one.x_val)
    np.testing.assert_array_equal(zero.x_test, one.x_test)
    p = prepared["fixed-sgd", 1]
    params = fitting.trial_params(sgd, p.schedule, p.dataset, 1)
    assert params["split"] == "per-seed"
    fixed = study(write_study, None, epochs=1, name="fixed")["fixed-sgd"]
    assert fitting.trial_params(fixed, None, p.dataset, 1)["split"] == "fixed"
    sample = study(write_study, "random.sample", epochs=1, name="sample")["fixed-sgd"]
    assert fitting.trial_params(sample, None, p.dataset, 1)["split"] == "fixed"


def test_the_run_key_names_the_split_only_when_per_seed(write_study):
    default = study(write_study, None, name="default")["fixed-sgd"]
    seeded = study(write_study, "seeded", name="seeded")["fixed-sgd"]
    per_seed = study(write_study, "per-seed", name="per-seed")["fixed-sgd"]
    assert "split" not in default.key_config()["budget"]
    assert default.key_config() == seeded.key_config()
    assert competition.key_of(default, 0) == competition.key_of(seeded, 0)
    assert per_seed.key_config()["budget"]["split"] == "per-seed"
    assert competition.key_of(per_seed, 0) != competition.key_of(default, 0)


@pytest.mark.parametrize("value", ["per_seed", "fixed-per-seed", 3])
def test_a_bad_split_is_refused_in_one_line_naming_it(write_study, value):
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    path = write_study(extra=f"split = {shown}")
    with pytest.raises(scenarios.SpecError) as info:
        scenarios.load_study(str(path))
    message = str(info.value)
    assert "\n" not in message and "split" in message and repr(value) in message
    if isinstance(value, str):
        assert "'per-seed'" in message  # the allowed values are named


def test_per_seed_is_refused_for_a_source_with_its_own_validation_set(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{x}_{part}": rng.random((n, 4), dtype=np.float32) if x == "x"
              else rng.integers(0, 2, n).astype(np.int32)
              for part, n in (("train", 60), ("val", 20), ("test", 20)) for x in ("x", "y")}
    np.savez(tmp_path / "own.npz", **arrays)
    path = tmp_path / "own.toml"
    path.write_text('scenarios = ["fixed-baseline"]\n[budget]\ndataset = { npz = "own.npz" }\n'
                    'split = "per-seed"\nbatch_size = 8\nepochs = 1\n')
    with pytest.raises(scenarios.SpecError, match="per-seed.*own.npz brings its own"):
        scenarios.load_study(str(path))
    path.write_text(path.read_text().replace('split = "per-seed"', 'split = "seeded"'))
    scenarios.load_study(str(path))


def test_stacks_hold_one_seeds_trials_under_a_per_seed_split(write_study):
    per_seed = study(write_study, "per-seed", name="per-seed")["fixed-sgd"]
    fixed = study(write_study, None, name="fixed")["fixed-sgd"]

    def trials(sc):  # a tuning's order: grid point by grid point, seeds within
        return [types.SimpleNamespace(scenario=sc, seed=s, point=p)
                for p in range(3) for s in (0, 1)]

    cut = stacking.groups(trials(per_seed), 2)
    assert [[(t.point, t.seed) for t in g] for g in cut] == [
        [(0, 0), (1, 0)], [(2, 0)], [(0, 1), (1, 1)], [(2, 1)]]
    assert [[t.seed for t in g] for g in stacking.groups(trials(fixed), 4)] == [[0, 1, 0, 1],
                                                                             [0, 1]]
    with pytest.raises(ValueError, match="per-seed.*must share one seed"):
        fitting.fit_stack([(per_seed, 0, False), (per_seed, 1, False)], [None, None])
