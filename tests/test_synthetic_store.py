"""The synthetic store of ``bench/bench.py`` part (d) and the timing of the summary over it."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import synthetic_store  # noqa: E402

from lrstudy import report  # noqa: E402


@pytest.mark.slow
def test_bench_summary_times_each_stage(tmp_path):
    timings = synthetic_store.bench_summary(n_trials=6, epochs=3, tmpdir=tmp_path, seeds=3,
                                   steps_per_epoch=2)
    stages = ("load_trials_s", "load_histories_s", "benchmark_table_s", "figures_s")
    assert all(timings[s] > 0 for s in stages)
    assert timings["summary_s"] == pytest.approx(sum(timings[s] for s in stages))
    assert timings["rows_loaded"] == 6 * 3 * len(report.EPOCH_KEYS) + 2 * 3 * 2 * 2 + 2 * 100 * 3


def test_bench_summary_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Received: n_trials=0"):
        synthetic_store.bench_summary(n_trials=0)
