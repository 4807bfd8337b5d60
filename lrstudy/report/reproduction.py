"""The reproduction table: each published claim beside our trials at the claim's own setting.

One row per claim (:mod:`lrstudy.spec.claims`): ``claim``, ``published``, ``tolerance`` (a value
claim's practical tolerance, an order claim's margin), ours as ``ours_mean``,
``ours_ci_low``, ``ours_ci_high`` (the 95% t-interval of the mean over seeds) and ``n``
(seeds), and ``holds``: "yes" (holds), "no" (does not hold), "equivalent" (an order whose
groups are practically the same), "undecided", "not comparable (data substituted)" or "not
run" (``n = 0``: no trial of the claim's scenario at the claim's setting). Only trials at
the claim's setting count (model, data, training-set size, batch, epochs): a scenario run at
another budget is not evidence for or against it, so budgets never mix.

The calls, as pure functions of the intervals (no MLflow here):

- **value** (:func:`value_call`): equivalence in the manner of two one-sided tests (TOST,
  Schuirmann 1987), read off the interval shown: the 95% interval of our mean inside
  ``published +- tolerance`` holds, entirely outside it does not hold, else undecided.
- **order** (:func:`simultaneous_intervals`, :func:`order_call`, :func:`claim_call`):
  adjacent groups are compared by their paired per-seed differences (the seeds of a budget
  share initial weights and batch order), each with a t-interval at level
  ``1 - 0.05 / k`` where ``k`` counts the order comparisons of all the study's claims that
  the table decides: Bonferroni's inequality makes the ``k`` intervals simultaneous at 95%
  at least (Dunn, "Multiple comparisons among means", JASA 56, 1961), as the main verdict's
  intervals are. The call follows from the interval shown and the claim's practical margin,
  equivalence first. An order claim's ``ours`` gives the group means in the claimed order
  and each difference with its simultaneous interval; its ``ours_*`` numbers are empty.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from lrstudy.report.frames import (
    HISTORY_COLUMNS,
    experiment,
    load_histories,
    load_trials,
    missing_sqlite,
)
from lrstudy.report.stats import CONFIDENCE, mean_ci
from lrstudy.spec import claims as claims_module
from lrstudy.tracking import store as tracking
from lrstudy.tracking.schema import Metric, Tag

COLUMNS = ["claim", "published", "tolerance", "ours_mean", "ours_ci_low", "ours_ci_high", "n",
           "holds"]
NOT_RUN, SUBSTITUTED, UNDECIDED = "not run", "not comparable (data substituted)", "undecided"
YES, NO, EQUIVALENT = "yes", "no", "equivalent"
SERIES = ("accuracy", "loss", "val_accuracy", "val_loss", Metric.STEP_LEARNING_RATE)


def _at_setting(trials: pd.DataFrame, claim) -> tuple[pd.DataFrame, bool]:
    """The trials of the claim's scenarios at its setting, and whether their data was a
    substitute for the claim's."""
    s = claim.setting
    mask = trials["scenario"].isin(claim.scenarios) & (trials["model"].astype(str) == s["model"])
    for key in ("train_size", "batch_size", "epochs"):
        mask &= pd.to_numeric(trials[key], errors="coerce") == s[key]
    substituted = trials.get("dataset_substituted", pd.Series("", index=trials.index))
    stood_in = substituted.fillna("").str.startswith(f"{s['dataset']} ->")
    picked = trials[mask & ((trials["dataset"] == s["dataset"]) | stood_in)]
    return picked, bool(stood_in[picked.index].any())


def _values(picked: pd.DataFrame, claim, histories: pd.DataFrame) -> pd.Series:
    """The claim's metric per trial (indexed like ``picked``)."""
    if claim.metric == "diverged":
        return picked["diverged"].astype(float)
    if claim.metric in SERIES and (claim.step is not None or claim.epoch is not None):
        step = claim.step if claim.step is not None else claim.epoch - 1
        h = histories[(histories["key"] == claim.metric) & (histories["step"] == step)]
        at = h.groupby("run_id")["value"].last()
        return picked["run_id"].map(at).astype(float)
    column = f"final_{claim.metric}" if claim.metric in SERIES else claim.metric
    if column not in picked:
        return pd.Series(np.nan, index=picked.index)
    return pd.to_numeric(picked[column], errors="coerce")


# ---- the calls (pure functions) -----------------------------------------------------------------

def value_call(low: float, high: float, published: float, tolerance: float | None) -> str:
    """A published value against our interval ``[low, high]``: "yes" inside
    ``published +- tolerance``, "no" entirely outside it, else "undecided" (also without an
    interval or a tolerance)."""
    if tolerance is None or not (math.isfinite(low) and math.isfinite(high)):
        return UNDECIDED
    bottom, top = published - tolerance, published + tolerance
    if bottom <= low and high <= top:
        return YES
    if high < bottom or low > top:
        return NO
    return UNDECIDED


def simultaneous_intervals(differences, confidence: float = CONFIDENCE
                           ) -> list[tuple[float, float, float, int]]:
    """``(mean, low, high, n)`` per array of paired per-seed differences: Bonferroni-adjusted
    t-intervals (Dunn 1961), each at level ``1 - (1 - confidence) / k`` with ``k`` the
    comparisons that have 2 seeds or more, so that all hold together with probability
    ``confidence`` at least. Non-finite differences are left out; under 2 seeds the interval
    is NaN; differences that do not vary give the point (a zero-width interval)."""
    arrays = [np.asarray(d, dtype=float) for d in differences]
    arrays = [d[np.isfinite(d)] for d in arrays]
    n = np.array([d.size for d in arrays], dtype=int)
    k = int((n >= 2).sum())
    level = 1 - (1 - confidence) / max(k, 1)
    quantile = sps.t.ppf((1 + level) / 2, np.maximum(n - 1, 1))  # one call for all
    out = []
    for d, size, t in zip(arrays, n, quantile):
        mean = float(d.mean()) if size else math.nan
        if size < 2:
            out.append((mean, math.nan, math.nan, int(size)))
        elif np.ptp(d) == 0:
            out.append((mean, mean, mean, int(size)))
        else:
            half = float(t * sps.sem(d))
            out.append((mean, mean - half, mean + half, int(size)))
    return out


def order_call(low: float, high: float, margin: float | None, relation: str = "better") -> str:
    """One comparison of an order claim from the simultaneous interval ``[low, high]`` of the
    difference "claimed better minus claimed worse" and the practical ``margin``.

    ``relation = "better"``: inside ``(-margin, margin)`` "equivalent" (first: even when
    the interval clears zero, the difference is too small to matter); else clearing zero in
    the claimed direction "yes", in the other "no", else "undecided".
    ``relation = "equivalent"`` (the claim is that the groups are the same): inside
    ``(-margin, margin)`` "yes", entirely outside it "no", else "undecided".
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return UNDECIDED
    margin = 0.0 if margin is None else margin
    inside = -margin < low and high < margin
    if relation == "equivalent":
        return YES if inside else NO if low >= margin or high <= -margin else UNDECIDED
    if inside:
        return EQUIVALENT
    return YES if low > 0 else NO if high < 0 else UNDECIDED


def claim_call(calls, relation: str = "better") -> str:
    """An order claim's call from its comparisons' (:func:`order_call`): "no" when one
    contradicts it; otherwise the weakest of the rest, undecided < equivalent < yes (a chain
    holds when every link does; a link that is practically nil makes it "equivalent")."""
    calls = list(calls)
    if not calls:
        return UNDECIDED
    if NO in calls:
        return NO
    if UNDECIDED in calls:
        return UNDECIDED
    if relation == "better" and EQUIVALENT in calls:
        return EQUIVALENT
    return YES


def _decide(x: np.ndarray, low: float, high: float, claim) -> str:
    """A value, threshold or divergence claim from our values ``x`` and their interval."""
    if claim.rule == "diverged":  # x: 1.0 for a seed that diverged
        every, none = bool(x.all()), not x.any()
        if every or none:
            return YES if every == claim.published else NO
        return UNDECIDED
    if claim.rule == "value":
        return value_call(low, high, claim.published, claim.tolerance)
    if not (math.isfinite(low) and math.isfinite(high)):
        return UNDECIDED
    below, above = high < claim.published, low > claim.published
    good, bad = (below, above) if claim.rule == "at_most" else (above, below)
    return YES if good else NO if bad else UNDECIDED


def _order_scores(picked: pd.DataFrame, values: pd.Series, claim
                  ) -> tuple[list[pd.Series], list[str], int]:
    """(per-seed score of each group, oriented so higher is the claimed better; the missing
    scenarios; seeds with every scenario)."""
    score = pd.DataFrame({"seed": picked["seed"], "scenario": picked["scenario"],
                          "value": values}).pivot_table(index="seed", columns="scenario",
                                                        values="value", aggfunc="mean")
    missing = [n for n in claim.scenarios if n not in score]
    if missing:
        return [], missing, 0
    sign = 1.0 if claim.higher_is_better else -1.0
    groups = [sign * score[list(group)].mean(axis=1) for group in claim.groups]
    return groups, [], int(len(score.dropna(subset=claim.scenarios)))


def _order_words(claim, groups: list[pd.Series], intervals, calls) -> str:
    """The group means in the claimed order, then each difference with its interval."""
    sign = 1.0 if claim.higher_is_better else -1.0
    joint = " ~ " if claim.relation == "equivalent" else " > " if sign > 0 else " < "
    words = joint.join(f"{sign * g.mean():.4g}" for g in groups)
    names = [" + ".join(group) for group in claim.groups]
    parts = []
    for (a, b), (mean, low, high, _), call in zip(zip(names, names[1:]), intervals, calls):
        interval = f" [{low:+.3g}, {high:+.3g}]" if math.isfinite(low) else ""
        parts.append(f"{a} vs {b} {mean:+.3g}{interval} {call}")
    return f"{words}; " + "; ".join(parts) if parts else words


def reproduction_table(trials: pd.DataFrame, claims, histories: pd.DataFrame | None = None
                       ) -> pd.DataFrame:
    """One row per claim (see the module docstring); ``histories`` (long format, see
    :func:`lrstudy.report.frames.load_histories`) holds the series a claim reads at an epoch
    or a step. The order claims' intervals are simultaneous over every comparison of
    ``claims`` that is decided here (run, and not on substituted data unless it transfers)."""
    if histories is None:
        histories = pd.DataFrame(columns=HISTORY_COLUMNS)
    rows, orders = [], []
    for claim in claims:
        picked, substituted = _at_setting(trials, claim)
        values = _values(picked, claim, histories)
        tolerance = claim.margin if claim.rule == "order" else claim.tolerance
        row = {"id": claim.id, "tutorial": claim.tutorial, "claim": claim.claim,
               "published": claim.published_text,
               "tolerance": math.nan if tolerance is None else tolerance,
               "ours_mean": math.nan, "ours_ci_low": math.nan, "ours_ci_high": math.nan,
               "n": 0, "ours": "", "setting": _setting_text(claim.setting), "rule": claim.rule}
        if claim.rule == "order":
            groups, missing, row["n"] = _order_scores(picked, values, claim)
            if missing:
                holds = NOT_RUN if len(missing) == len(claim.scenarios) else UNDECIDED
                row["ours"] = f"not run: {', '.join(missing)}"
            else:
                holds = UNDECIDED  # decided below, with the other order claims
                if not substituted or claim.transfers:
                    orders.append((len(rows), claim, groups))
        else:
            x = values.to_numpy(dtype=float)
            x = x[np.isfinite(x)]
            low = high = math.nan
            if x.size:
                mean, half, n = mean_ci(x, CONFIDENCE)
                half = 0.0 if n > 1 and np.ptp(x) == 0 else half
                low, high = mean - half, mean + half
                row.update(ours_mean=mean, ours_ci_low=low, ours_ci_high=high, n=n,
                           ours=f"{mean:.4g}")
            holds = _decide(x, low, high, claim) if x.size else NOT_RUN
        if substituted and not claim.transfers and holds != NOT_RUN:
            holds = SUBSTITUTED
        row["holds"] = holds
        if substituted:
            row["note"] = f"ours on {picked['dataset'].iloc[0]} in place of {claim.setting['dataset']}"
        rows.append(row)
    _decide_orders(rows, orders)
    out = pd.DataFrame(rows)
    if "note" not in out:
        out["note"] = ""
    out["note"] = out["note"].fillna("")
    return out


def _decide_orders(rows: list[dict], orders) -> None:
    """Fill in the order claims' ``holds`` and ``ours`` from intervals simultaneous over all
    their adjacent comparisons."""
    differences, owners = [], []
    for index, claim, groups in orders:
        for better, worse in zip(groups, groups[1:]):
            differences.append((better - worse).to_numpy(dtype=float))
            owners.append(index)
    intervals = simultaneous_intervals(differences)
    k = sum(n >= 2 for *_, n in intervals)
    for index, claim, groups in orders:
        mine = [iv for iv, owner in zip(intervals, owners) if owner == index]
        calls = [order_call(low, high, claim.margin, claim.relation)
                 for _, low, high, _ in mine]
        rows[index]["holds"] = claim_call(calls, claim.relation)
        rows[index]["ours"] = (_order_words(claim, groups, mine, calls)
                               + f" (Bonferroni over {k})")


def _setting_text(s: dict) -> str:
    return (f"{s['model']} on {s['dataset']} ({s['train_size']} train), batch "
            f"{s['batch_size']}, {s['epochs']} epochs")


def records(table: pd.DataFrame) -> list[dict]:
    """The rows as JSON-able dicts (``reproduction.json``): the keys of :data:`COLUMNS` and
    ``id``, ``tutorial``, ``ours``, ``setting``, ``note``; NaN becomes null."""
    keep = ["id", "tutorial", *COLUMNS, "ours", "setting", "note"]
    out = []
    for row in table[keep].to_dict("records"):
        out.append({k: (None if isinstance(v, float) and not math.isfinite(v) else
                        int(v) if k == "n" else v) for k, v in row.items()})
    return out


def claims_of(study: str, tracking_uri: str | None = None):
    """The claims the study named (the experiment tag ``lrstudy.spec.claims`` that ``lrstudy run``
    sets), or [] when it named none."""
    uri = tracking.tracking_uri(tracking_uri)
    if missing_sqlite(uri):
        return []
    exp = experiment(study, tracking.client(uri))
    path = (exp.tags if exp is not None else {}).get(Tag.CLAIMS, "")
    return claims_module.load(path) if path else []


def load_reproduction(study: str, tracking_uri: str | None = None,
                      trials: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """The reproduction table of ``study`` from the store, or None when it names no claims."""
    found = claims_of(study, tracking_uri)
    if not found:
        return None
    trials = load_trials(study, tracking_uri) if trials is None else trials
    if "phase" in trials:  # tuning trials are choices, not results
        trials = trials[trials["phase"].fillna("") != "tune"]
    keys = sorted({c.metric for c in found if c.metric in SERIES
                   and (c.step is not None or c.epoch is not None)})
    mine = trials[trials["scenario"].isin({n for c in found for n in c.scenarios})]
    histories = load_histories(mine["run_id"], keys, tracking_uri) if keys else None
    return reproduction_table(trials, found, histories)


def format_reproduction(table: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it: claim, published, tolerance (a value's, or an order's
    margin on the differences), ours (mean [95% CI], n), holds."""
    def ours(row):
        if not row["n"]:
            return "-"
        if math.isfinite(row["ours_mean"]):
            interval = (f" [{row['ours_ci_low']:.4g}, {row['ours_ci_high']:.4g}]"
                        if math.isfinite(row["ours_ci_low"]) else "")
            return f"{row['ours_mean']:.4g}{interval}, n={row['n']}"
        return f"{row['ours']}, n={row['n']}"

    def tolerance(row):
        value = row.get("tolerance", math.nan)
        if value is None or not math.isfinite(value):
            return ""
        return f"±{value:g}" + (" (differences)" if row.get("rule") == "order" else "")
    return pd.DataFrame({"tutorial": table["tutorial"], "claim": table["claim"],
                         "published": table["published"],
                         "tolerance": table.apply(tolerance, axis=1),
                         "ours": table.apply(ours, axis=1),
                         "holds": table["holds"], "note": table["note"]})
