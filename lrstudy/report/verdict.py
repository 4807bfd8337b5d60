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
* **Against the reference**, per strategy, over the seeds both have: the mean difference with
  its simultaneous interval (:mod:`lrstudy.report.simultaneous`: Bonferroni t-intervals over
  the ``k`` comparisons at family-wise 95%; in a group-sequential study the repeated
  confidence intervals of :mod:`lrstudy.report.sequential` at the current look). One set of
  numbers: the verdict, the table, the forest plot and MLflow show that interval.
* **The call** reads that interval with the practical-equivalence margin ``m`` (default 0.3
  accuracy points): *equivalent* when it lies inside ``(-m, +m)``, even if it clears zero;
  else *better* (*worse*) when it clears zero upwards (downwards); else *undecided*, with
  the seeds that would decide (:mod:`lrstudy.report.seeds_needed`).
* **The best group** (:mod:`lrstudy.report.best_group`): the strategies multiple comparisons
  with the best (Hsu 1984) cannot separate from the best; the verdict names them together.
* **P(improvement)** (:mod:`lrstudy.report.improvement`): the share of paired seeds on which
  the strategy beats the reference, with a Wilson interval.
* **P(best)**, descriptive: the share of bootstrap resamples of the seeds (the same resampled
  seeds for every strategy, so the pairing holds) in which a strategy has the highest mean;
  ties share. Over the seeds every strategy of the budget has; the values of a budget sum to 1.
* **What the intervals cover**: the variation between seeds, which draw the initial weights,
  the batch order and dropout together; the train/validation split too only when the trials'
  ``split`` param says ``per-seed``; never the test sample, which is fixed (Bouthillier et al.
  2021, "Accounting for variance in machine learning benchmarks", MLSys).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrstudy import tasks
import lrstudy.report.best_group as best_group
import lrstudy.report.improvement as improvement
import lrstudy.report.seeds_needed as seeds_needed
import lrstudy.report.simultaneous as simultaneous
from lrstudy.report.frames import BUDGET_COLUMNS, task_of
from lrstudy.report.sequential import Design
from lrstudy.report.stats import CONFIDENCE, mean_ci
from lrstudy.spec.study import Study, budget_label, strategy_of

MARGIN = Study.margin  # 0.003: 0.3 accuracy points, unless a study says otherwise
RESAMPLES = 10_000
RNG_SEED = 0  # the bootstrap is seeded: the same store gives the same report
PER_SEED_SPLIT = "per-seed"  # the ``split`` param of trials whose seed also draws the split


# ---- per-seed scores ---------------------------------------------------------------------------

def budgets(trials: pd.DataFrame) -> list[tuple[dict, pd.DataFrame]]:
    """The trials split by budget: ``[(budget, trials), ...]``, the largest budget first."""
    columns = [c for c in BUDGET_COLUMNS if c in trials]
    if not columns or trials.empty:
        return [({}, trials)]
    out = [(dict(zip(columns, key if isinstance(key, tuple) else (key,))), group)
           for key, group in trials.groupby(columns, dropna=False, sort=True)]
    return sorted(out, key=lambda item: -len(item[1]))


def reference_of(trials: pd.DataFrame, reference: str | None) -> str | None:
    """The reference within one budget's ``trials``: ``reference`` when the budget has it
    (in a study with workloads, ``reference@workload``: the one scenario of that strategy
    there), else the family baseline most scenarios of the budget name (and the budget has), else
    None (no comparisons: P(best) and the intervals only)."""
    present = set(trials["scenario"])
    if reference and reference in present:
        return reference
    on_workload = sorted(s for s in present if strategy_of(s) == reference)  # "S@W"
    if reference and len(on_workload) == 1:
        return on_workload[0]
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
    the trials do not record them (older runs). ``batch_order_sha`` digests the orders a
    trial was fed over all its epochs, so a diverged trial, stopped early, has one of its
    own: the orders are compared over the trials that did not diverge (the weights over all).
    """
    out = {"checked": False, "paired": None, "seeds": 0}
    columns = [c for c in ("init_weights_sha", "batch_order_sha") if c in trials]
    if len(columns) < 2 or trials[columns].isna().any().any():
        return out
    weights = trials.groupby("seed")["init_weights_sha"].nunique()
    whole = trials[~trials["diverged"].astype(bool)]
    orders = whole.groupby("seed")["batch_order_sha"].nunique()
    return {"checked": True, "paired": bool((weights == 1).all() and (orders == 1).all()),
            "seeds": int(len(weights))}


# ---- comparisons -------------------------------------------------------------------------------

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
            confidence: float = CONFIDENCE, seed: int = RNG_SEED,
            design: Design = Design()) -> pd.DataFrame:
    """One row per strategy of one budget (columns of ``scores``, seeds as rows), best first.

    Columns: ``scenario, n_seeds, mean, ci_low, ci_high`` (its own 95% t-interval over its
    seeds), ``p_best``, ``best_group`` (:func:`lrstudy.report.best_group.best_group`); and
    against ``reference`` (None: no comparisons): ``n_pairs, diff, diff_low, diff_high``
    (the simultaneous interval, family-wise ``confidence``, of
    :func:`lrstudy.report.simultaneous.interval`), ``critical`` (its t multiplier),
    ``p_adjusted`` (the same procedure's adjusted p-value; fixed design only, else NaN),
    ``call``, ``p_improvement, poi_low, poi_high`` (:mod:`lrstudy.report.improvement`),
    ``sd_diff, sd_diff_upper, seeds_needed_effect, seeds_needed`` (for the observed effect
    and for the margin, :mod:`lrstudy.report.seeds_needed`). The reference's own row has
    ``call = "reference"``.
    """
    alpha = 1 - confidence
    rows = []
    for name in scores.columns:
        x = scores[name].dropna().to_numpy(float)
        mean, half, n = mean_ci(x, confidence)
        rows.append({"scenario": name, "n_seeds": n, "mean": mean,
                     "ci_low": mean - half, "ci_high": mean + half})
    table = pd.DataFrame(rows)
    table["p_best"] = p_best(scores, seed=seed).reindex(table["scenario"]).to_numpy()
    table["best_group"] = best_group.best_group(scores, alpha, design).reindex(
        table["scenario"]).to_numpy(bool)
    for column in ("n_pairs", "diff", "diff_low", "diff_high", "critical", "p_adjusted",
                   "p_improvement", "poi_low", "poi_high", "sd_diff", "sd_diff_upper",
                   "seeds_needed_effect", "seeds_needed"):
        table[column] = np.nan
    table["call"] = ""
    if reference is not None and reference in scores.columns:
        pairs = {name: scores[[name, reference]].dropna() for name in table["scenario"]
                 if name != reference}
        diffs = {name: (both[name] - both[reference]).to_numpy(float)
                 for name, both in pairs.items()}
        k = sum(d.size >= 2 for d in diffs.values())  # the comparisons with an interval
        level = simultaneous.per_comparison_alpha(alpha, k)
        for i, name in enumerate(table["scenario"]):
            if name == reference:
                table.loc[i, "call"] = "reference"
                continue
            d, both = diffs[name], pairs[name]
            found = simultaneous.interval(d, alpha, k, design)
            needed = seeds_needed.seeds_needed(d, margin, level)
            table.loc[i, ["n_pairs", "diff", "diff_low", "diff_high", "critical", "sd_diff",
                          "sd_diff_upper", "seeds_needed_effect", "seeds_needed"]] = (
                found["n"], found["diff"], found["low"], found["high"], found["critical"],
                needed["sd"], needed["sd_upper"], needed["for_effect"], needed["for_margin"])
            if not design.sequential:
                table.loc[i, "p_adjusted"] = simultaneous.adjusted_p(d, k)
            table.loc[i, ["p_improvement", "poi_low", "poi_high"]] = (
                improvement.probability_of_improvement(both[name], both[reference]))
            table.loc[i, "call"] = simultaneous.call(found["low"], found["high"], margin)
    return table.sort_values(["mean", "scenario"], ascending=[False, True], ignore_index=True)


def coverage(trials: pd.DataFrame) -> str:
    """Which sources of variance the intervals include, from the trials' ``split`` param
    (``per-seed``: the seed also draws the train/validation split; anything else, or none:
    the split is fixed)."""
    split = trials["split"].astype(str) if "split" in trials else pd.Series(dtype=str)
    per_seed = split.eq(PER_SEED_SPLIT)
    seeded = "initial weights, batch order, dropout"
    if len(split) and per_seed.all():
        return (f"The intervals include the variation between seeds ({seeded}) and the "
                "train/validation split, which each seed draws anew; not the test sample, "
                "which is fixed.")
    if per_seed.any():
        return (f"The intervals include the variation between seeds ({seeded}); only some "
                "trials drew their train/validation split per seed, so the split's variation "
                "is in some strategies' numbers and not others'; the test sample is fixed.")
    return (f"The intervals include the variation between seeds ({seeded}); not the "
            "train/validation split or the test sample, which are fixed, so another draw "
            "of the data could move every strategy.")


# ---- the verdict, in words -------------------------------------------------------------------

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


def _names(names: list[str]) -> str:
    """``A``, ``A and B``, ``A, B and C``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _best(table: pd.DataFrame, reference: str | None, task: tasks.Task) -> str:
    """The opening sentence: the best group, named together; its one member's numbers."""
    group = table[table["best_group"].astype(bool)]
    if group.empty:  # cannot happen (the top mean is never beaten); kept for safety
        group = table.iloc[:1]
    seeds = int(table["n_seeds"].min()) if len(table) else 0
    pts = "points" if task.higher_is_better else task.primary.upper()
    if len(group) > 1:
        names = [f"{n} (the reference)" if n == reference else str(n)
                 for n in group["scenario"]]
        return (f"Best: {_names(names)}, not separable with {_seeds(seeds)} (multiple "
                "comparisons with the best, 95%).")
    best = group.iloc[0]
    alone = (f"separated from every other strategy with {_seeds(seeds)} (multiple comparisons "
             "with the best, 95%)" if len(table) > 1 else "the only strategy")
    if reference is None:
        return (f"Best: {best.scenario}, {_score(best['mean'], task)}, {alone}. No reference "
                "in this budget, so no comparisons.")
    if best.scenario == reference:
        return f"Best: {reference} (the reference), {_score(best['mean'], task)}, {alone}."
    return (f"Best: {best.scenario}, {_pts(best['diff'], task)} {pts} "
            f"{'over' if task.higher_is_better else 'against'} the reference "
            f"{reference}{_interval(best.diff_low, best.diff_high, task)}, P(best) "
            f"{best.p_best:.2f} ({best.call}); {alone}.")


def _undecided(rows: pd.DataFrame, margin: float, task: tasks.Task) -> str:
    """Each undecided strategy with the seeds that would decide it: for a margin-sized
    difference and for its observed one (the finite count first)."""
    margin_shown = (f"a {100 * margin:.1f}-point difference" if task.higher_is_better
                    else f"a {margin:.4g} {task.primary.upper()} difference")
    parts = []
    for _, r in rows.iterrows():
        counts = [(r["seeds_needed"], margin_shown),
                  (r["seeds_needed_effect"], f"its {_pts(r['diff'], task)}")]
        counts = [(n, what) for n, what in counts if not pd.isna(n)]
        if not counts:
            parts.append(str(r.scenario))
            continue
        counts.sort(key=lambda c: not np.isfinite(c[0]))
        shown = [f"{int(n)}" if np.isfinite(n) else "no feasible number" for n, _ in counts]
        first = (f"about {shown[0]} seeds would decide {counts[0][1]}"
                 if np.isfinite(counts[0][0]) else f"no feasible number of seeds would decide "
                 f"{counts[0][1]}")
        rest = "".join(f", {n} {what}" for n, (_, what) in zip(shown[1:], counts[1:]))
        parts.append(f"{r.scenario} ({first}{rest})")
    return ", ".join(parts)


def budget_verdict(table: pd.DataFrame, reference: str | None, margin: float,
                   diverged: int = 0, paired: dict | None = None,
                   task: tasks.Task = tasks.CLASSIFICATION, design: Design = Design(),
                   covered: str = "") -> str:
    """The verdict of one budget in a few sentences, from :func:`compare`'s ``table``:
    the best group, the calls with their simultaneous intervals, the procedure (and in a
    group-sequential study its looks), what the intervals cover (``covered``,
    :func:`coverage`), diverged seeds and the pairing."""
    if table.empty:
        return "No finished trials to compare."
    words = [_best(table, reference, task)]
    pts = "points" if task.higher_is_better else task.primary.upper()
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
            if name == "undecided":
                listed = _undecided(rows, margin, task)
            else:
                listed = ", ".join(
                    f"{r.scenario} ({_pts(r['diff'], task)}"
                    f"{_interval(r.diff_low, r.diff_high, task)})" if name != "equivalent"
                    else str(r.scenario) for _, r in rows.iterrows())
            words.append(f"{label}: {listed}.")
        k = int(others["diff_low"].notna().sum())
        n = int(table["n_seeds"].max())
        unit = "accuracy points" if task.higher_is_better else f"{pts} (its own units)"
        procedure = (f"Bonferroni over {k} comparison{'s' if k != 1 else ''}" if k else
                     "no comparison has 2 paired seeds")
        sentence = (f"Differences in {unit}, paired over {n} seeds, with simultaneous 95% "
                    f"intervals ({procedure}), calls read from them")
        if design.sequential:
            sentence += (f"; repeated confidence intervals of a {design.describe(n)}, "
                         f"so stopping at this look keeps the 95%")
        words.append(sentence + "; seeds to decide at the same level, from the upper 80% "
                     "bound of the spread.")
    if covered:
        words.append(covered)
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
             margin: float = MARGIN, design: Design = Design()) -> list[dict]:
    """Per budget: ``budget`` (label), ``reference``, ``table`` (:func:`compare`), ``text``
    (:func:`budget_verdict`) as its ``headline`` (the opening sentence, on the best group) and
    the ``details`` that follow it, ``pairing`` (:func:`pairing`), ``diverged``, ``task``,
    ``design`` (how the seeds were gathered: fixed, or the looks of a group-sequential study;
    :func:`lrstudy.report.publish.study_design` reads it from the store)."""
    out = []
    for budget, group in budgets(trials):
        ref = reference_of(group, reference)
        table = compare(seed_scores(group), ref, margin, design=design)
        diverged = int(group["diverged"].astype(bool).sum())
        paired = pairing(group)
        task = task_of(group)
        text = " ".join(filter(None, [budget_verdict(table, ref, margin, diverged, paired,
                                                     task, design, coverage(group)),
                                      capped_note(group)]))
        headline = _best(table, ref, task) if not table.empty else text
        out.append({"budget": budget_label(budget), "reference": ref, "table": table,
                    "pairing": paired, "diverged": diverged, "task": task, "design": design,
                    "text": text, "headline": headline,
                    "details": text.removeprefix(headline).lstrip()})
    return out


def capped_note(trials: pd.DataFrame) -> str:
    """A sentence naming the strategies whose tuned LR sits on an edge of a grid that grew as
    far as it may (their finals' param ``tune.capped``): their optimum may lie beyond it."""
    if "tune.capped" not in trials:
        return ""
    names = sorted(set(trials.loc[trials["tune.capped"].astype(str) == "true", "scenario"]))
    if not names:
        return ""
    return (f"Tuned at the edge of a grid grown to its cap, so their best LR may lie beyond "
            f"it: {', '.join(names)}.")


def verdict_text(trials: pd.DataFrame, reference: str | None = None,
                 margin: float = MARGIN, design: Design = Design()) -> str:
    """The report's opening paragraph(s): one per budget, named when there are several."""
    return verdict_paragraphs(verdicts(trials, reference, margin, design))


def undecided(found: list[dict]) -> list[str]:
    """The strategies whose comparison with the reference is undecided, over all budgets."""
    return [str(name) for v in found
            for name in v["table"].loc[v["table"]["call"] == "undecided", "scenario"]]


def _use(table: pd.DataFrame, reference: str | None, task: tasks.Task) -> str:
    """One budget's answer in one line: the strategy to use (the best group's one member),
    or the strategies the seeds cannot tell apart, with the difference to the reference that
    backs it."""
    if table.empty:
        return "No finished trials to compare."
    group = table[table["best_group"].astype(bool)]
    # the best group is read on the seeds every strategy has; one shown worse than the
    # reference on its own pairs is no candidate
    candidates = group[group["call"] != "worse"]
    group = candidates if not candidates.empty else (group if not group.empty
                                                     else table.iloc[:1])
    pts = " points" if task.higher_is_better else f" {task.primary.upper()}"
    if len(group) > 1:
        better = [str(n) for n in group.loc[group["call"] == "better", "scenario"]]
        names = [f"{n} (the reference)" if n == reference else str(n) for n in group["scenario"]]
        line = f"**Use any of {_names(names)}**: the seeds cannot tell them apart"
        if better:
            line += (f"; {_names(better)} {'beats' if len(better) == 1 else 'beat'} the "
                     f"reference {reference}")
        return line + "."
    best = group.iloc[0]
    if reference is None:
        return f"**Use {best.scenario}**: the best, {_score(best['mean'], task)}."
    if best.scenario == reference:
        return f"**Keep {reference}** (the reference): no other strategy matches it."
    shown = f"{_pts(best['diff'], task)}{pts}{_interval(best.diff_low, best.diff_high, task)}"
    if best.call == "better":
        return f"**Use {best.scenario}**: {shown} against the reference {reference}, " \
               "and ahead of every other strategy."
    return (f"**Use {best.scenario}**: ahead of every other strategy, though against the "
            f"reference {reference} ({shown}) it is {best.call}.")


def recommendation(found: list[dict]) -> str:
    """The plain answer that opens the report, from :func:`verdicts`: which strategy to use
    (one line per budget, named when there are several); the verdict's paragraphs give the
    evidence."""
    lines = [_use(v["table"], v["reference"], v.get("task", tasks.CLASSIFICATION))
             for v in found]
    if len(found) == 1:
        return lines[0]
    return "\n\n".join(f"{v['budget']}: {line}" for v, line in zip(found, lines))


def _per_budget(found: list[dict], key: str) -> str:
    """Each budget's ``key`` text of :func:`verdicts`, a paragraph each, the budget named
    when there are several."""
    if len(found) == 1:
        return found[0][key]
    return "\n\n".join(f"**{v['budget']}.** {v[key]}" for v in found if v[key])


def verdict_paragraphs(found: list[dict]) -> str:
    """The paragraphs of :func:`verdicts`' budgets."""
    return _per_budget(found, "text")


def verdict_headline(found: list[dict]) -> str:
    """The verdicts' opening sentences, on the best strategies (what a reader sees first)."""
    return _per_budget(found, "headline")


def verdict_details(found: list[dict]) -> str:
    """The rest of the verdicts: the calls, the procedure, what the intervals cover."""
    return _per_budget(found, "details")


def shown_scores(row: pd.Series, task: tasks.Task) -> pd.Series:
    """A :func:`compare` row with, for a lower-is-better metric, its own values beside the
    oriented ones: ``rmse_mean``, ``rmse_low``, ``rmse_high`` (the RMSE, not ``-rmse``)."""
    if task.higher_is_better:
        return row
    m = task.primary
    return pd.concat([row, pd.Series({f"{m}_mean": -row["mean"], f"{m}_low": -row["ci_high"],
                                      f"{m}_high": -row["ci_low"]})])
