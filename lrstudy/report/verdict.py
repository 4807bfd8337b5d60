"""The verdict: which strategy, by how much, how sure; paired across seeds, within one budget.

The design is paired: within one budget (model, data, batch size, epochs) seed ``i`` gives every
strategy the same initial weights and the same batch order (common random numbers; checked
from the ``init_weights_sha`` and ``batch_order_sha`` params of the trials by
:func:`pairing`). Every number below therefore works on per-seed differences.

Rules, stated once:

* **Diverged seeds** are not dropped: a diverged seed scores chance accuracy, ``1 / classes``,
  whatever it measured (:func:`seed_scores`).
* **The metric** is the task's primary one (:func:`lrstudy.report.frames.task_of`): test
  accuracy, or for a regression the test RMSE, lower is better. Scores are oriented so that
  higher is better (an RMSE enters as ``-rmse``; a diverged seed as the worst RMSE of its
  budget), so every rule below reads the same; the words and tables show the RMSE itself.
* **Against the reference**, per strategy, over the seeds both have: the mean difference of
  test accuracy with its 95% t-interval and the paired t-test p-value
  (``scipy.stats.ttest_rel``), Holm-adjusted over the comparisons with the reference
  (``statsmodels.stats.multitest.multipletests(method="holm")``); the probability of
  improvement ``P(X > Y)`` of rliable (Agarwal et al., 2021): the Mann-Whitney U statistic
  over ``n_x * n_y`` (``scipy.stats.mannwhitneyu``; ties count a half), with a percentile
  bootstrap interval that resamples seeds jointly, keeping the pairing
  (``scipy.stats.bootstrap(paired=True)``). rliable itself resamples runs independently and
  brings ``arch``; its definition is what we keep.
* **The call** with the practical-equivalence margin ``m`` (default 0.3 accuracy points):
  *equivalent* when the 95% interval of the difference lies within ``(-m, +m)``; else *better*
  (or *worse*) when the Holm-adjusted p-value is below 0.05 and the difference is positive
  (negative); else *undecided*, with the seeds a paired t-test would need to detect a
  difference of ``m`` with power 0.8 at the observed spread of the differences
  (``statsmodels.stats.power.TTestPower``).
* **P(best)**: the share of bootstrap resamples of the seeds (the same resampled seeds for
  every strategy, so the pairing holds) in which a strategy has the highest mean; ties share.
  Over the seeds every strategy of the budget has; the values of a budget sum to 1.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from lrstudy import tracking
from lrstudy import tasks
from lrstudy.report.frames import BUDGET_COLUMNS, task_of
from lrstudy.report.stats import ALPHA, CONFIDENCE, mean_ci
from lrstudy.scenarios import Study
from lrstudy.tracking import TAG

MARGIN = Study.margin  # 0.003: 0.3 accuracy points, unless a study says otherwise
POWER = 0.8
RESAMPLES = 10_000
RNG_SEED = 0  # the bootstrap is seeded: the same store gives the same report
CALLS = ("better", "equivalent", "worse", "undecided")


# ---- per-seed scores ---------------------------------------------------------------------------

def budgets(trials: pd.DataFrame) -> list[tuple[dict, pd.DataFrame]]:
    """The trials split by budget: ``[(budget, trials), ...]``, the largest budget first."""
    columns = [c for c in BUDGET_COLUMNS if c in trials]
    if not columns or trials.empty:
        return [({}, trials)]
    out = [(dict(zip(columns, key if isinstance(key, tuple) else (key,))), group)
           for key, group in trials.groupby(columns, dropna=False, sort=True)]
    return sorted(out, key=lambda item: -len(item[1]))


def budget_label(budget: dict) -> str:
    """``mlp128 on fashion_mnist (50000 train), batch 128, 8 epochs``; "" for no budget."""
    if not budget:
        return ""
    b = {k: ("?" if pd.isna(v) else (int(v) if isinstance(v, float) and v.is_integer() else v))
         for k, v in budget.items()}
    return (f"{b.get('model', '?')} on {b.get('dataset', '?')} ({b.get('train_size', '?')} "
            f"train), batch {b.get('batch_size', '?')}, {b.get('epochs', '?')} epochs")


def reference_of(trials: pd.DataFrame, reference: str | None) -> str | None:
    """The reference within one budget's ``trials``: ``reference`` when the budget has it,
    else the family baseline most scenarios of the budget name (and the budget has), else
    None (no comparisons: P(best) and the intervals only)."""
    present = set(trials["scenario"])
    if reference and reference in present:
        return reference
    if "baseline" in trials:
        named = trials.drop_duplicates("scenario")["baseline"].dropna()
        named = named[named.isin(present)]
        if not named.empty:
            counts = named.value_counts()
            return str(sorted(counts[counts == counts.max()].index)[0])
    return None


def chance(trials: pd.DataFrame) -> pd.Series:
    """Chance accuracy per trial: ``1 / num_classes`` (10 classes when not recorded)."""
    classes = pd.to_numeric(trials.get("num_classes", pd.Series(10, index=trials.index)),
                            errors="coerce").fillna(10)
    return 1.0 / classes


def seed_scores(trials: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Seeds by strategies: ``metric`` per (seed, scenario), a diverged seed at chance.

    ``metric`` defaults to the task's (:func:`~lrstudy.report.frames.task_of`); a
    lower-is-better one (RMSE) is negated, a diverged seed then scoring the worst value of the
    trials. A missing value (no such seed) stays NaN. Several trials of one (scenario, seed),
    which a store with duplicated runs could hold, are averaged.
    """
    task = task_of(trials)
    metric = metric or task.test_metric
    diverged = trials["diverged"].astype(bool)
    values = trials[metric].astype(float)
    if task.higher_is_better:
        score = values.where(~diverged, chance(trials))
    else:
        worst = values.where(np.isfinite(values)).max()  # NaN when none is finite
        score = -values.where(~diverged, worst)
    frame = pd.DataFrame({"seed": trials["seed"].astype(int), "scenario": trials["scenario"],
                          "score": score})
    return frame.pivot_table(index="seed", columns="scenario", values="score", aggfunc="mean")


def pairing(trials: pd.DataFrame) -> dict:
    """Whether seed ``i`` gave every strategy the same initial weights and batch order.

    From the trials' ``init_weights_sha`` and ``batch_order_sha`` params: ``paired`` is True
    when, for every seed, each has one value across the strategies; ``checked`` is False when
    the trials do not record them (older runs).
    """
    out = {"checked": False, "paired": None, "seeds": 0}
    columns = [c for c in ("init_weights_sha", "batch_order_sha") if c in trials]
    if len(columns) < 2 or trials[columns].isna().any().any():
        return out
    distinct = trials.groupby("seed")[columns].nunique()
    return {"checked": True, "paired": bool((distinct == 1).all().all()),
            "seeds": int(len(distinct))}


# ---- comparisons -------------------------------------------------------------------------------

def probability_of_improvement(x, y) -> float:
    """rliable's ``P(X > Y)``: ``U / (n_x n_y)`` from ``scipy.stats.mannwhitneyu`` (ties count
    a half); 0.5 when ``x`` and ``y`` are equal."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if np.array_equal(x, y):
        return 0.5
    return float(stats.mannwhitneyu(x, y, alternative="greater").statistic / (x.size * y.size))


def _poi_interval(x, y, confidence: float, rng) -> tuple[float, float]:
    if x.size < 2 or np.array_equal(x, y):
        return (math.nan, math.nan) if x.size < 2 else (0.5, 0.5)

    def statistic(a, b, axis=-1):
        # U / (n m) per resample, vectorized: mean over pairs of [a > b] + 0.5 [a == b]
        diff = a[..., :, None] - b[..., None, :]
        return ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(-2, -1))

    res = stats.bootstrap((x, y), statistic, paired=True, vectorized=True,
                          n_resamples=RESAMPLES, confidence_level=confidence,
                          method="percentile", random_state=rng)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def seeds_to_resolve(differences, margin: float = MARGIN, alpha: float = ALPHA,
                     power: float = POWER) -> float:
    """Seeds a two-sided paired t-test needs to detect a difference of ``margin`` with
    ``power``, at the observed standard deviation of ``differences`` (``TTestPower``).
    NaN with fewer than 2 differences; 2 when they do not vary."""
    from statsmodels.stats.power import TTestPower

    d = np.asarray(differences, float)
    if d.size < 2:
        return math.nan
    sd = float(np.std(d, ddof=1))
    if sd == 0:
        return 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = TTestPower().solve_power(effect_size=margin / sd, alpha=alpha, power=power,
                                     alternative="two-sided")
    return float(math.ceil(float(np.squeeze(n))))


def call(low: float, high: float, p_holm: float, diff: float, margin: float = MARGIN,
         alpha: float = ALPHA) -> str:
    """better, worse, equivalent or undecided, by the rule of this module's docstring."""
    if np.isfinite(low) and np.isfinite(high) and -margin < low and high < margin:
        return "equivalent"
    if np.isfinite(p_holm) and p_holm < alpha:
        return "better" if diff > 0 else "worse"
    return "undecided"


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values (``multipletests(method="holm")``); NaN stays NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def p_best(scores: pd.DataFrame, resamples: int = RESAMPLES, seed: int = RNG_SEED) -> pd.Series:
    """P(best) per strategy (columns of ``scores``) from a bootstrap over the seeds (rows)
    every strategy has; ties in a resample share it. Sums to 1 (empty when no seed is
    common)."""
    complete = scores.dropna()
    if complete.empty or complete.shape[1] == 0:
        return pd.Series(np.nan, index=scores.columns, dtype=float)
    values = complete.to_numpy(float)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[rows].mean(axis=1)  # resamples x strategies
    best = np.isclose(means, means.max(axis=1, keepdims=True), rtol=0, atol=1e-12)
    share = (best / best.sum(axis=1, keepdims=True)).mean(axis=0)
    return pd.Series(share, index=complete.columns)


def compare(scores: pd.DataFrame, reference: str | None, margin: float = MARGIN,
            confidence: float = CONFIDENCE, seed: int = RNG_SEED) -> pd.DataFrame:
    """One row per strategy of one budget (columns of ``scores``, seeds as rows), best first.

    Columns: ``scenario, n_seeds, mean, ci_low, ci_high`` (95% t-interval over its seeds),
    ``p_best``; and against ``reference`` (None: no comparisons): ``n_pairs, diff,
    diff_low, diff_high, p, p_holm, p_improvement, poi_low, poi_high, call,
    seeds_needed``; the reference's own row has ``call = "reference"``.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for name in scores.columns:
        x = scores[name].dropna().to_numpy(float)
        mean, half, n = mean_ci(x, confidence)
        rows.append({"scenario": name, "n_seeds": n, "mean": mean,
                     "ci_low": mean - half, "ci_high": mean + half})
    table = pd.DataFrame(rows)
    table["p_best"] = p_best(scores, seed=seed).reindex(table["scenario"]).to_numpy()
    comparing = reference is not None and reference in scores.columns
    for column in ("n_pairs", "diff", "diff_low", "diff_high", "p", "p_improvement",
                   "poi_low", "poi_high", "seeds_needed"):
        table[column] = np.nan
    table["call"] = ""
    if comparing:
        for i, name in enumerate(table["scenario"]):
            if name == reference:
                table.loc[i, "call"] = "reference"
                continue
            both = scores[[name, reference]].dropna()
            x, y = both[name].to_numpy(float), both[reference].to_numpy(float)
            table.loc[i, "n_pairs"] = len(both)
            if len(both) == 0:
                continue
            table.loc[i, "diff"] = float((x - y).mean())
            table.loc[i, "p_improvement"] = probability_of_improvement(x, y)
            table.loc[i, ["poi_low", "poi_high"]] = _poi_interval(x, y, confidence, rng)
            if len(both) >= 2:
                low, high, p = _paired_t(x, y, confidence)
                table.loc[i, ["diff_low", "diff_high", "p"]] = low, high, p
                table.loc[i, "seeds_needed"] = seeds_to_resolve(x - y, margin)
        others = table["call"] != "reference"
        table["p_holm"] = np.nan
        table.loc[others, "p_holm"] = holm(table.loc[others, "p"])
        table.loc[others, "call"] = [
            call(lo, hi, ph, d, margin) for lo, hi, ph, d in table.loc[
                others, ["diff_low", "diff_high", "p_holm", "diff"]].itertuples(index=False)]
    else:
        table["p_holm"] = np.nan
    return table.sort_values(["mean", "scenario"], ascending=[False, True], ignore_index=True)


def _paired_t(x, y, confidence: float) -> tuple[float, float, float]:
    """``ttest_rel(x, y)``: the interval of the mean difference and the two-sided p-value.
    Identical samples: a zero-width interval at 0 and p = 1."""
    d = x - y
    if np.all(d == d[0]):
        return float(d[0]), float(d[0]), 1.0 if d[0] == 0 else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(x, y)
        ci = res.confidence_interval(confidence)
    return float(ci.low), float(ci.high), float(res.pvalue)


# ---- the verdict, in words and in MLflow -------------------------------------------------------

def _pts(value: float, task: tasks.Task = tasks.CLASSIFICATION) -> str:
    """An oriented difference as shown: accuracy points, or the RMSE's own change."""
    return f"{100 * value:+.2f}" if task.higher_is_better else f"{-value:+.4g}"


def _interval(low: float, high: float, task: tasks.Task = tasks.CLASSIFICATION) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return ""
    low, high = (low, high) if task.higher_is_better else (high, low)
    return f" [{_pts(low, task)}, {_pts(high, task)}]"


def _score(mean: float, task: tasks.Task) -> str:
    """An oriented mean score as shown: ``test accuracy 85.12%`` or ``test RMSE 3.2``."""
    if task.higher_is_better:
        return f"test accuracy {100 * mean:.2f}%"
    return f"test {task.primary.upper()} {-mean:.4g} (lower is better)"


def budget_verdict(table: pd.DataFrame, reference: str | None, margin: float,
                   diverged: int = 0, paired: dict | None = None,
                   task: tasks.Task = tasks.CLASSIFICATION) -> str:
    """The verdict of one budget in a few sentences, from :func:`compare`'s ``table``."""
    if table.empty:
        return "No finished trials to compare."
    best = table.iloc[0]
    words = []
    pts = "points" if task.higher_is_better else task.primary.upper()
    if reference is None:
        words.append(f"Best: {best.scenario}, {_score(best['mean'], task)}, "
                     f"P(best) {best.p_best:.2f}. No reference in this budget, so no "
                     "comparisons.")
    elif best.scenario == reference:
        words.append(f"Best: {reference} (the reference), {_score(best['mean'], task)}, "
                     f"P(best) {best.p_best:.2f}.")
    else:
        words.append(
            f"Best: {best.scenario}, {_pts(best['diff'], task)} {pts} "
            f"{'over' if task.higher_is_better else 'against'} the reference "
            f"{reference}{_interval(best.diff_low, best.diff_high, task)}, P(best) "
            f"{best.p_best:.2f} ({best.call}).")
    if reference is not None:
        others = table[table["call"] != "reference"]
        for label, name in (("Better than the reference", "better"),
                            (f"Equivalent within {100 * margin:.1f} points"
                             if task.higher_is_better else
                             f"Equivalent within {margin:.4g} {pts}", "equivalent"),
                            ("Worse", "worse"), ("Undecided", "undecided")):
            rows = others[others["call"] == name]
            if rows.empty:
                continue
            listed = ", ".join(
                f"{r.scenario} ({_pts(r['diff'], task)}"
                f"{_interval(r.diff_low, r.diff_high, task)})"
                if name in ("better", "worse") else str(r.scenario)
                for _, r in rows.iterrows())
            sentence = f"{label}: {listed}"
            if name == "undecided" and rows["seeds_needed"].notna().any():
                sentence += (f" (about {int(rows['seeds_needed'].median())} seeds would "
                             "decide)")
            words.append(sentence + ".")
        words.append(f"Differences in {'accuracy points' if task.higher_is_better else pts}, "
                     f"paired over {int(table['n_seeds'].max())}"
                     f" seeds, 95% intervals, Holm over {len(others)} comparisons.")
    if diverged:
        words.append(f"{diverged} diverged seed{'s' if diverged != 1 else ''} scored at "
                     + ("chance." if task.higher_is_better else "the worst RMSE."))
    if paired and paired.get("checked"):
        words.append("Seed i gave every strategy the same initial weights and batch order "
                     f"(checked on {paired['seeds']} seeds)." if paired["paired"] else
                     "Warning: some strategies did not get the same initial weights or batch "
                     "order from the same seed, so the pairing is weaker than assumed.")
    return " ".join(words)


def verdicts(trials: pd.DataFrame, reference: str | None = None,
             margin: float = MARGIN) -> list[dict]:
    """Per budget: ``budget`` (label), ``reference``, ``table`` (:func:`compare`), ``text``
    (:func:`budget_verdict`), ``pairing`` (:func:`pairing`), ``diverged``."""
    out = []
    for budget, group in budgets(trials):
        ref = reference_of(group, reference)
        table = compare(seed_scores(group), ref, margin)
        diverged = int(group["diverged"].astype(bool).sum())
        paired = pairing(group)
        task = task_of(group)
        out.append({"budget": budget_label(budget), "reference": ref, "table": table,
                    "pairing": paired, "diverged": diverged, "task": task,
                    "text": budget_verdict(table, ref, margin, diverged, paired, task)})
    return out


def verdict_text(trials: pd.DataFrame, reference: str | None = None,
                 margin: float = MARGIN) -> str:
    """The report's opening paragraph(s): one per budget, named when there are several."""
    return verdict_paragraphs(verdicts(trials, reference, margin))


def verdict_paragraphs(found: list[dict]) -> str:
    """The paragraphs of :func:`verdicts`' budgets."""
    if len(found) == 1:
        return found[0]["text"]
    return "\n\n".join(f"**{v['budget']}.** {v['text']}" for v in found)


def shown_scores(row: pd.Series, task: tasks.Task) -> pd.Series:
    """A :func:`compare` row with, for a lower-is-better metric, its own values beside the
    oriented ones: ``rmse_mean``, ``rmse_low``, ``rmse_high`` (the RMSE, not ``-rmse``)."""
    if task.higher_is_better:
        return row
    m = task.primary
    return pd.concat([row, pd.Series({f"{m}_mean": -row["mean"], f"{m}_low": -row["ci_high"],
                                      f"{m}_high": -row["ci_low"]})])


SCENARIO_METRICS = {"test_accuracy_mean": "mean", "test_accuracy_ci_low": "ci_low",
                    "test_accuracy_ci_high": "ci_high", "n_seeds": "n_seeds",
                    "n_diverged": "n_diverged", "p_best": "p_best",
                    "p_vs_reference_holm": "p_holm"}


def write_back(mlflow_client, exp_id: str, trials: pd.DataFrame, found: list[dict]) -> int:
    """Put each strategy's aggregates on its scenario runs (``lrstudy.kind = scenario``; in a
    competition those of its finals), so that the MLflow UI shows them: the metrics of
    :data:`SCENARIO_METRICS` (``p_vs_reference_holm`` on every strategy but the reference)
    and the tag ``lrstudy.reference = true`` on the reference's (``false`` on the others).
    Returns the number of scenario runs written."""
    from mlflow.entities import Metric, RunTag

    diverged = trials.groupby("scenario")["diverged"].sum().astype(int)
    rows = {}
    for v in found:
        for _, row in v["table"].iterrows():
            rows[row.scenario] = (shown_scores(row, v.get("task", tasks.CLASSIFICATION)),
                                  row.scenario == v["reference"])
    runs = tracking.search(mlflow_client, [exp_id], f"tags.`{TAG}kind` = 'scenario'")
    written = 0
    now = int(pd.Timestamp.now().timestamp() * 1000)
    for run in runs:
        tags = run.data.tags
        name = tags.get(TAG + "scenario")
        if name not in rows or tags.get(TAG + "phase", "") not in ("", "final"):
            continue
        row, is_reference = rows[name]
        values = {**{key: row[column] for key, column in SCENARIO_METRICS.items()
                     if column in row}, "n_diverged": int(diverged.get(name, 0))}
        if "rmse_mean" in row:  # a regression: test_rmse_mean, _ci_low, _ci_high
            values = {k.replace("test_accuracy_", "test_rmse_"): v for k, v in values.items()}
            for key, column in (("test_rmse_mean", "rmse_mean"), ("test_rmse_ci_low", "rmse_low"),
                                ("test_rmse_ci_high", "rmse_high")):
                values[key] = row[column]
        if is_reference:
            values.pop("p_vs_reference_holm", None)
        metrics = [Metric(key, float(value), now, 0) for key, value in values.items()
                   if value is not None and np.isfinite(float(value))]
        mlflow_client.log_batch(run.info.run_id, metrics=metrics, tags=[
            RunTag(TAG + "reference", "true" if is_reference else "false")])
        written += 1
    return written
