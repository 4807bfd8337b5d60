"""The pieces of the verdict's statistics on their own: group-sequential boundaries
(:mod:`lrstudy.report.sequential`) against scipy's multivariate normal, the design's tags, the
run loop of ``--until-decided`` (no training: the look and the rounds are stand-ins), the call
rule, seeds needed (:mod:`lrstudy.report.seeds_needed`) and P(improvement)
(:mod:`lrstudy.report.improvement`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lrstudy.execution import runner, until_decided
from lrstudy.report import improvement, publish, seeds_needed, sequential, simultaneous
from lrstudy.tracking.schema import Tag
from lrstudy.tracking.store import TAG


@pytest.mark.parametrize("sides", [1, 2])
def test_boundaries_spend_what_the_function_says_by_scipys_multivariate_normal(sides):
    """At each look the probability of crossing there and not before (computed here with
    ``scipy.stats.multivariate_normal.cdf``) is the spending function's increment."""
    fractions = (1 / 3, 2 / 3, 1.0)
    alpha = 0.01
    z = np.array(sequential.boundaries(fractions, alpha, sides))
    t = np.array(fractions)
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    spent = sequential.obrien_fleming_spending(t, alpha)
    assert spent[-1] == pytest.approx(alpha)
    for k in range(1, 4):
        mvn = stats.multivariate_normal(np.zeros(k), cov[:k, :k], abseps=1e-7, releps=0)
        low = -z[:k] if sides == 2 else np.full(k, -np.inf)
        stay = mvn.cdf(z[:k], lower_limit=low, rng=np.random.default_rng(0))
        assert 1 - stay == pytest.approx(spent[k - 1], rel=0.02, abs=2e-7)
    assert np.all(np.diff(z) < 0)  # O'Brien-Fleming: strict early, near the fixed value late


def test_one_look_is_the_fixed_design_and_t_conversion_keeps_the_tail():
    design = sequential.Design(sequential.SEQUENTIAL, 10, 5, ())
    assert sequential.critical_t(design, 10, 0.005) == pytest.approx(
        sequential.critical_t(sequential.Design(), 10, 0.005), rel=1e-6)
    z = sequential.boundaries((0.5, 1.0), 0.005, 2)[0]
    t = sequential.critical_t(sequential.Design(sequential.SEQUENTIAL, 20, 5, (10,)), 10, 0.005)
    assert stats.t.sf(t, 9) == pytest.approx(stats.norm.sf(z))
    assert math.isnan(sequential.critical_t(design, 1, 0.05))


def test_the_design_round_trips_through_tags():
    design = sequential.Design(sequential.SEQUENTIAL, 30, 5, (10, 15))
    tags = {TAG + k: v for k, v in design.tags().items()}
    assert sequential.design_from_tags(tags, TAG) == design
    assert sequential.design_from_tags({}, TAG) == sequential.Design()
    assert design.looks_at(20) == (10, 15, 20) and design.looks_at(15) == (10, 15)
    assert design.fractions(40) == (10 / 40, 15 / 40, 1.0)  # beyond the maximum: the last look
    assert "look 3 (at 10, 15, 20 seeds; at most 30)" in design.describe(20)


class _Watch:
    def call(self, fn, *args):
        return fn(*args)


class _Client:
    def __init__(self):
        self.tags = {}

    def set_experiment_tag(self, exp_id, key, value):
        self.tags[key] = value


def test_until_decided_adds_seeds_in_steps_and_records_each_look(monkeypatch):
    """Undecided until 20 seeds: looks at 10, 15, 20, each recorded before the next round."""
    client, rounds, seen = _Client(), [], []

    def look(study, uri, design, seeds):
        seen.append((seeds, design.looks))
        return [] if seeds >= 20 else ["warmup-cosine"]

    monkeypatch.setattr(until_decided, "look", look)
    design = sequential.Design(sequential.SEQUENTIAL, 30, 5, ())
    out = until_decided.seeds_until_decided("s", "uri", client, "0", design, 10,
                                     lambda n: rounds.append(n) or True, _Watch())
    assert rounds == [15, 20]
    assert seen == [(10, ()), (15, (10,)), (20, (10, 15))]
    assert out == {"looks": [10, 15, 20], "max_seeds": 30, "undecided": [],
                   "stopped": "decided"}
    assert client.tags[Tag.LOOKS] == "10,15,20"
    assert client.tags[Tag.DESIGN] == "sequential"
    assert "looks" in runner.format_outcome(runner.StudyOutcome(
        "s", 0, 0, 0, 0, [], [], 0.0, sequential=out))

    monkeypatch.setattr(until_decided, "look", lambda *a: ["x"])  # never decided: stops at the max
    out = until_decided.seeds_until_decided("s", "uri", client, "0", design, 10, lambda n: True,
                                     _Watch())
    assert out["looks"] == [10, 15, 20, 25, 30] and out["stopped"] == "max_seeds"
    assert out["undecided"] == ["x"]
    out = until_decided.seeds_until_decided("s", "uri", client, "0", design, 10, lambda n: False,
                                     _Watch())  # a failed round: no more seeds
    assert out["looks"] == [10] and out["stopped"] == "failed"


def test_a_plain_run_is_fixed_and_a_sequential_study_keeps_its_design():
    class Exp:
        tags: dict = {}

    client = _Client()
    client.get_experiment = lambda exp_id: Exp
    assert until_decided.sequential_design(client, "0", 10, False, None) == sequential.Design()
    made = until_decided.sequential_design(client, "0", 10, True, 25)
    assert (made.kind, made.max_seeds, made.looks) == ("sequential", 25, ())
    Exp.tags = {TAG + k: v for k, v in made.with_look(10).tags().items()}
    assert until_decided.sequential_design(client, "0", 10, False, None).looks == (10,)
    with pytest.raises(ValueError, match="--max-seeds 25"):
        until_decided.sequential_design(client, "0", 10, True, 40)
    assert publish.study_design  # the report reads the same tags


def test_the_call_reads_the_interval_equivalence_first():
    call = simultaneous.call
    assert call(0.001, 0.002, 0.003) == "equivalent"  # clears zero, but inside the margin
    assert call(0.001, 0.004, 0.003) == "better"
    assert call(-0.004, -0.001, 0.003) == "worse"
    assert call(-0.004, 0.001, 0.003) == "undecided"
    assert call(math.nan, math.nan, 0.003) == "undecided"
    low, high = np.array([0.001, 0.001, -0.004]), np.array([0.002, 0.004, 0.001])
    assert simultaneous.calls(low, high, 0.003).tolist() == [
        "equivalent", "better", "undecided"]
    assert simultaneous.adjusted_p([0.1, 0.2, 0.3], 3) == pytest.approx(
        min(1, 3 * stats.ttest_1samp([0.1, 0.2, 0.3], 0).pvalue))


def test_seeds_needed_at_the_adjusted_level_from_the_upper_bound_of_the_spread():
    from statsmodels.stats.power import TTestPower

    rng = np.random.default_rng(0)
    d = rng.normal(0.002, 0.005, 10)
    sd = float(np.std(d, ddof=1))
    upper = sd * math.sqrt(9 / stats.chi2.ppf(0.2, 9))
    found = seeds_needed.seeds_needed(d, 0.003, 0.005)
    assert (found["sd"], found["sd_upper"]) == pytest.approx((sd, upper))
    n = found["for_margin"]
    power = TTestPower().power(effect_size=0.003 / upper, nobs=n, alpha=0.005)
    below = TTestPower().power(effect_size=0.003 / upper, nobs=n - 1, alpha=0.005)
    assert below < 0.8 <= power  # the smallest count with power 0.8
    # adjusting for 10 comparisons and for the spread's uncertainty both ask for more seeds
    assert seeds_needed.seeds_to_detect(0.003, sd, 0.05) < seeds_needed.seeds_to_detect(
        0.003, sd, 0.005) < n
    assert found["for_effect"] == seeds_needed.seeds_to_detect(d.mean(), upper, 0.005)
    assert seeds_needed.seeds_to_detect(0.0, sd, 0.005) == math.inf
    assert seeds_needed.seeds_to_detect(0.003, 0.0, 0.005) == 2
    assert math.isnan(seeds_needed.seeds_needed([0.1], 0.003, 0.005)["for_margin"])


def test_p_improvement_has_a_wilson_interval_that_does_not_collapse():
    assert improvement.probability_of_improvement(np.ones(10), np.zeros(10)) == pytest.approx(
        (1.0, 0.7225, 1.0), abs=1e-4)  # 10 of 10: not [1.00, 1.00]
    assert improvement.probability_of_improvement(np.zeros(5), np.ones(5))[1:] == pytest.approx(
        (0.0, 0.4345), abs=1e-4)
    share, low, high = improvement.probability_of_improvement([1, 1, 0, 2], [1, 0, 1, 1])
    assert share == pytest.approx((0.5 + 1 + 0 + 1) / 4) and low < share < high
    assert math.isnan(improvement.probability_of_improvement([], [])[0])
