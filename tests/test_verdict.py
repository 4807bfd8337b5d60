"""The verdict (:mod:`lrstudy.report.verdict`): planted effects in a real MLflow store, every
number recomputed here independently (scipy, exact enumeration, Holm by hand); an A/A study
simulated 200 times; diverged seeds scored at chance; the verdict written back to MLflow."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from scipy import stats

from lrstudy import report, tracking
from lrstudy.report import tables, verdict
from lrstudy.tracking import TAG

pytestmark = pytest.mark.xdist_group("verdict")

STUDY = "planted"
SEEDS = 5
# per-seed test accuracy = strategy effect + a seed effect shared by every strategy (the
# paired design) + a little noise; "fragile" diverges on seeds 3 and 4
SEED_EFFECT = np.array([0.004, -0.003, 0.001, -0.005, 0.002])
PLANTED = {"reference": 0.880, "better": 0.890, "same": 0.880, "worse": 0.860,
           "fragile": 0.895}
NOISE = {name: np.random.default_rng(i).normal(0, 0.0008, SEEDS)
         for i, name in enumerate(PLANTED)}
DIVERGED = {("fragile", 3), ("fragile", 4)}


def planted(name: str, seed: int) -> float:
    return PLANTED[name] + SEED_EFFECT[seed] + NOISE[name][seed]


def scored(name: str) -> np.ndarray:
    """What the rule says each seed scores: chance (0.1) when diverged."""
    return np.array([0.1 if (name, s) in DIVERGED else planted(name, s) for s in range(SEEDS)])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verdict")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = tracking.client(uri)
    exp_id = tracking.experiment_id(STUDY, uri, client)
    client.set_experiment_tag(exp_id, TAG + "reference", "reference")
    client.set_experiment_tag(exp_id, TAG + "margin", "0.003")
    parents = {}
    for name in PLANTED:
        parents[name] = client.create_run(exp_id, tags={
            TAG + "kind": "scenario", TAG + "scenario": name, TAG + "study": STUDY,
            TAG + "phase": "final", "mlflow.runName": f"{name}-final"}).info.run_id
        client.set_terminated(parents[name], "FINISHED")
        for seed in range(SEEDS):
            diverged = (name, seed) in DIVERGED
            run_id = client.create_run(exp_id, tags={
                TAG + "kind": "trial", TAG + "scenario": name, TAG + "study": STUDY,
                TAG + "family": "fixed", TAG + "seed": str(seed), TAG + "phase": "final",
                TAG + "run_key": f"{name}-{seed}", TAG + "diverged": str(diverged).lower(),
                "mlflow.parentRunId": parents[name]}).info.run_id
            params = {"model": "mlp128", "dataset": "fashion_mnist", "train_size": 50000,
                      "batch_size": 128, "epochs": 8, "seed": seed, "num_classes": 10,
                      "optimizer": "adam", "schedule": "constant", "learning_rate": 1e-3,
                      "peak_lr": 1e-3, "init_weights_sha": f"w{seed}",
                      "batch_order_sha": f"b{seed}"}
            # a diverged seed measured something (here 0.35); the rule scores it at chance
            acc = 0.35 if diverged else planted(name, seed)
            client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()],
                             metrics=[Metric("test_accuracy", acc, 0, 8),
                                      Metric("test_loss", 0.4, 0, 8),
                                      Metric("val_accuracy", 0.87, 0, 7)])
            client.set_terminated(run_id, "FINISHED")
    trials = report.load_trials(STUDY, uri)
    return {"uri": uri, "client": client, "exp_id": exp_id, "trials": trials,
            "parents": parents, "tmp": tmp,
            "table": tables.benchmark_table(trials, "reference", 0.003).set_index("scenario")}


def holm_by_hand(p: dict) -> dict:
    """Holm's step-down: sort ascending, multiply the k-th smallest by (m - k), running max."""
    names = sorted(p, key=p.get)
    m, out, running = len(names), {}, 0.0
    for k, name in enumerate(names):
        running = max(running, min(1.0, (m - k) * p[name]))
        out[name] = running
    return out


def test_intervals_and_holm_adjusted_p_values_are_scipys(store):
    table = store["table"]
    raw = {}
    for name in PLANTED:
        x = scored(name)
        low, high = stats.t.interval(0.95, SEEDS - 1, loc=x.mean(), scale=stats.sem(x))
        row = table.loc[name]
        assert row["test_accuracy_mean"] == pytest.approx(x.mean(), abs=1e-12)
        assert (row["test_accuracy_low"], row["test_accuracy_high"]) == pytest.approx(
            (low, high), abs=1e-12)
        if name == "reference":
            assert row["call"] == "reference"
            continue
        d = x - scored("reference")
        low, high = stats.t.interval(0.95, SEEDS - 1, loc=d.mean(), scale=stats.sem(d))
        assert (row["diff"], row["diff_low"], row["diff_high"]) == pytest.approx(
            (d.mean(), low, high), abs=1e-12)
        raw[name] = stats.ttest_rel(x, scored("reference")).pvalue
        assert row["p"] == pytest.approx(raw[name], rel=1e-9)
        pairs = [(a > b) + 0.5 * (a == b) for a in x for b in scored("reference")]
        assert row["p_improvement"] == pytest.approx(np.mean(pairs))
        assert row["poi_low"] <= row["p_improvement"] <= row["poi_high"]
    for name, adjusted in holm_by_hand(raw).items():
        assert table.loc[name, "p_holm"] == pytest.approx(adjusted, rel=1e-9)
    assert table["call"].to_dict() == {"better": "better", "reference": "reference",
                                       "same": "equivalent", "worse": "worse",
                                       "fragile": "undecided"}
    assert math.isfinite(table.loc["fragile", "seeds_needed"])


def test_p_best_matches_the_exact_bootstrap_and_sums_to_one(store):
    """Every one of the 5^5 resamples of the seeds, enumerated: the exact bootstrap P(best),
    against the module's 10,000 random resamples."""
    names = list(PLANTED)
    scores = np.stack([scored(n) for n in names], axis=1)
    wins = np.zeros(len(names))
    for rows in itertools.product(range(SEEDS), repeat=SEEDS):
        means = scores[list(rows)].mean(axis=0)
        best = np.isclose(means, means.max(), rtol=0, atol=1e-12)
        wins += best / best.sum()
    exact = wins / SEEDS ** SEEDS
    table = store["table"]
    for name, p in zip(names, exact):
        assert table.loc[name, "p_best"] == pytest.approx(p, abs=0.02), name
    assert table["p_best"].sum() == pytest.approx(1.0)


def test_diverged_seeds_score_at_chance_and_change_the_ranking(store):
    table = store["table"]
    fragile = table.loc["fragile"]
    assert (fragile["seeds"], fragile["diverged"]) == (5, 2)
    # on its three healthy seeds it is the best strategy; at chance on the other two it is last
    healthy = [planted("fragile", s) for s in range(3)]
    assert np.mean(healthy) > max(np.mean([planted(n, s) for s in range(3)])
                                  for n in PLANTED if n != "fragile")
    assert fragile["rank"] == len(PLANTED)
    assert fragile["test_accuracy_mean"] == pytest.approx(scored("fragile").mean())
    assert table.sort_values("rank").index.tolist() == [
        "better", "reference", "same", "worse", "fragile"]


def test_an_aa_study_is_never_called_better_or_worse_95_percent_of_the_time():
    """200 simulated studies of two identical strategies (the reference and its copy), 5 seeds,
    a shared seed effect and independent noise: the call is equivalent or undecided in at
    least 95% of them."""
    import gc

    rng = np.random.default_rng(2026)
    calls = []
    gc.freeze()  # statsmodels' Holm calls gc.collect(): keep the test's heap out of it
    try:
        for _ in range(200):
            seed_effect = rng.normal(0, 0.003, SEEDS)
            scores = pd.DataFrame({name: 0.88 + seed_effect + rng.normal(0, 0.002, SEEDS)
                                   for name in ("reference", "copy")})
            table = verdict.compare(scores, "reference", margin=0.003).set_index("scenario")
            calls.append(table.loc["copy", "call"])
    finally:
        gc.unfreeze()
    counts = pd.Series(calls).value_counts()
    wrong = counts.get("better", 0) + counts.get("worse", 0)
    print(counts.to_dict())
    assert wrong <= 10, counts.to_dict()
    assert counts.get("equivalent", 0) > 0 and counts.get("undecided", 0) > 0


def test_the_verdict_opens_with_the_best_and_names_every_call(store):
    text = report.verdict_text(store["trials"], "reference", 0.003)
    assert text.startswith("Best: better, +")
    assert "over the reference reference [" in text and "P(best) " in text
    assert "Equivalent within 0.3 points: same." in text
    assert "Worse: worse (-" in text and "Undecided: fragile (about " in text
    assert "2 diverged seeds scored at chance." in text
    assert "same initial weights and batch order (checked on 5 seeds)" in text


def test_budgets_are_compared_apart():
    rows = []
    for budget, epochs in (("short", 2), ("long", 8)):
        for seed in range(3):
            for name, acc in (("a", 0.8), ("b", 0.7)):
                rows.append({"scenario": f"{name}-{budget}", "seed": seed, "diverged": False,
                             "test_accuracy": acc + 0.01 * seed + (epochs == 8) * 0.1,
                             "baseline": f"a-{budget}", "model": "m", "dataset": "d",
                             "train_size": 100, "batch_size": 10, "epochs": epochs})
    found = verdict.verdicts(pd.DataFrame(rows))
    assert sorted(v["reference"] for v in found) == ["a-long", "a-short"]  # family baselines
    for v in found:
        assert len(v["table"]) == 2  # nothing compared across budgets
        assert v["table"]["p_best"].sum() == pytest.approx(1.0)


def test_the_report_writes_the_verdict_back_to_mlflow(store):
    html = report.make_report(STUDY, store["uri"], store["tmp"] / "report")
    text = html.read_text()
    verdict_at = text.index("Best: better")
    assert verdict_at < text.index("<img")  # the verdict opens the report, before figures
    client = MlflowClient(store["uri"])
    table = store["table"]
    for name, run_id in store["parents"].items():
        run = client.get_run(run_id)
        m = run.data.metrics
        row = table.loc[name]
        assert m["test_accuracy_mean"] == pytest.approx(row["test_accuracy_mean"])
        assert m["test_accuracy_ci_low"] == pytest.approx(row["test_accuracy_low"])
        assert m["test_accuracy_ci_high"] == pytest.approx(row["test_accuracy_high"])
        assert (m["n_seeds"], m["n_diverged"]) == (5, 2 if name == "fragile" else 0)
        assert m["p_best"] == pytest.approx(row["p_best"])
        assert run.data.tags[TAG + "reference"] == str(name == "reference").lower()
        if name == "reference":
            assert "p_vs_reference_holm" not in m
        else:
            assert m["p_vs_reference_holm"] == pytest.approx(row["p_holm"])
    (summary,) = client.search_runs([store["exp_id"]], f"tags.`{TAG}kind` = 'summary'")
    assert summary.data.tags["mlflow.note.content"].startswith("Best: better, +")
    names = {a.path for a in client.list_artifacts(summary.info.run_id)}
    assert "benchmark_table.json" in names
    exp = client.get_experiment(store["exp_id"])
    assert exp.tags[tracking.EXPERIMENT_KIND[0]] == tracking.EXPERIMENT_KIND[1]
