"""The reproduction table: each published claim beside our trials at the claim's own setting.

One row per claim (:mod:`lrstudy.claims`): ``claim``, ``published``, ours as ``ours_mean``,
``ours_ci_low``, ``ours_ci_high`` (the 95% t-interval of the mean over seeds) and ``n``
(seeds), and ``holds``: "yes", "no", "undecided", "not comparable (data substituted)" or
"not run" (``n = 0``: no trial of the claim's scenario at the claim's setting). Only trials at
the claim's setting count (model, data, training-set size, batch, epochs): a scenario run at
another budget is not evidence for or against it, so budgets never mix. An order claim's
``ours`` lists the group means in the claimed order and its ``ours_*`` numbers are left
empty; its comparisons are paired by seed (the seeds of a budget share initial weights and
batch order).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from lrstudy import claims as claims_module
from lrstudy import tracking
from lrstudy.report.frames import (HISTORY_COLUMNS, experiment, load_histories, load_trials,
                                   missing_sqlite)
from lrstudy.report.stats import ALPHA, CONFIDENCE, mean_ci

CLAIMS_TAG = tracking.TAG + "claims"
COLUMNS = ["claim", "published", "ours_mean", "ours_ci_low", "ours_ci_high", "n", "holds"]
NOT_RUN, SUBSTITUTED, UNDECIDED = "not run", "not comparable (data substituted)", "undecided"
SERIES = ("accuracy", "loss", "val_accuracy", "val_loss", "step_learning_rate")


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


def _decide_value(x: np.ndarray, claim) -> str:
    n = x.size
    if claim.rule == "diverged":  # x: 1.0 for a seed that diverged
        every, none = bool(x.all()), not x.any()
        if every or none:
            return "yes" if every == claim.published else "no"
        return UNDECIDED
    if claim.rule == "value":
        if n == 1:  # no spread to estimate: only a match within the rounding is decided
            return "yes" if abs(x[0] - claim.published) <= claim.tolerance else UNDECIDED
        spread = float(np.std(x, ddof=1))
        half = sps.t.ppf(1 - ALPHA / 2, n - 1) * spread * math.sqrt(1 + 1 / n)  # one new run
        return "yes" if abs(x.mean() - claim.published) <= half + claim.tolerance else "no"
    mean, half, _ = mean_ci(x)
    if not math.isfinite(half):
        return UNDECIDED
    below, above = mean + half < claim.published, mean - half > claim.published
    good, bad = (below, above) if claim.rule == "at_most" else (above, below)
    return "yes" if good else "no" if bad else UNDECIDED


def _decide_order(picked: pd.DataFrame, values: pd.Series, claim) -> tuple[str, str, int]:
    """(holds, ours in words, seeds): adjacent groups compared paired by seed."""
    score = pd.DataFrame({"seed": picked["seed"], "scenario": picked["scenario"],
                          "value": values}).pivot_table(index="seed", columns="scenario",
                                                        values="value", aggfunc="mean")
    missing = [n for n in claim.scenarios if n not in score]
    if missing:
        return NOT_RUN if len(missing) == len(claim.scenarios) else UNDECIDED, \
            f"not run: {', '.join(missing)}", 0
    means = [score[list(group)].mean(axis=1) for group in claim.groups]  # per seed
    sign = 1.0 if claim.higher_is_better else -1.0
    words = (" > " if sign > 0 else " < ").join(f"{m.mean():.4g}" for m in means)  # best first
    pairs = len(means) - 1
    verdicts = []
    for better, worse in zip(means, means[1:]):
        d = (sign * (better - worse)).dropna()
        if len(d) < 2:
            return UNDECIDED, words, int(len(d))
        if np.ptp(d) == 0:  # identical differences: the interval is the point
            low = high = float(d.iloc[0])
        else:
            ci = sps.ttest_rel(better[d.index], worse[d.index]).confidence_interval(
                1 - ALPHA / pairs)  # Bonferroni: simultaneous over the adjacent pairs
            low, high = sorted((sign * ci.low, sign * ci.high))
        verdicts.append("yes" if low > 0 else "no" if high < 0 else UNDECIDED)
    holds = "no" if "no" in verdicts else "yes" if set(verdicts) == {"yes"} else UNDECIDED
    return holds, words, int(len(score.dropna(subset=claim.scenarios)))


def reproduction_table(trials: pd.DataFrame, claims, histories: pd.DataFrame | None = None
                       ) -> pd.DataFrame:
    """One row per claim (see the module docstring); ``histories`` (long format, see
    :func:`lrstudy.report.frames.load_histories`) holds the series a claim reads at an epoch
    or a step."""
    if histories is None:
        histories = pd.DataFrame(columns=HISTORY_COLUMNS)
    rows = []
    for claim in claims:
        picked, substituted = _at_setting(trials, claim)
        values = _values(picked, claim, histories)
        row = {"id": claim.id, "tutorial": claim.tutorial, "claim": claim.claim,
               "published": claim.published_text, "ours_mean": math.nan,
               "ours_ci_low": math.nan, "ours_ci_high": math.nan, "n": 0, "ours": "",
               "setting": _setting_text(claim.setting)}
        if claim.rule == "order":
            holds, row["ours"], row["n"] = _decide_order(picked, values, claim)
        else:
            x = values.to_numpy(dtype=float)
            x = x[np.isfinite(x)]
            if x.size:
                mean, half, n = mean_ci(x, CONFIDENCE)
                half = 0.0 if n > 1 and np.ptp(x) == 0 else half
                row.update(ours_mean=mean, ours_ci_low=mean - half, ours_ci_high=mean + half,
                           n=n, ours=f"{mean:.4g}")
            holds = _decide_value(x, claim) if x.size else NOT_RUN
        if substituted and not claim.transfers and holds != NOT_RUN:
            holds = SUBSTITUTED
        row["holds"] = holds
        if substituted:
            row["note"] = f"ours on {picked['dataset'].iloc[0]} in place of {claim.setting['dataset']}"
        rows.append(row)
    out = pd.DataFrame(rows)
    if "note" not in out:
        out["note"] = ""
    out["note"] = out["note"].fillna("")
    return out


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
    """The claims the study named (the experiment tag ``lrstudy.claims`` that ``lrstudy run``
    sets), or [] when it named none."""
    uri = tracking.tracking_uri(tracking_uri)
    if missing_sqlite(uri):
        return []
    exp = experiment(study, tracking.client(uri))
    path = (exp.tags if exp is not None else {}).get(CLAIMS_TAG, "")
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
    """The table as people read it: claim, published, ours (mean [95% CI], n), holds."""
    def ours(row):
        if not row["n"]:
            return "-"
        if math.isfinite(row["ours_mean"]):
            interval = (f" [{row['ours_ci_low']:.4g}, {row['ours_ci_high']:.4g}]"
                        if math.isfinite(row["ours_ci_low"]) else "")
            return f"{row['ours_mean']:.4g}{interval}, n={row['n']}"
        return f"{row['ours']}, n={row['n']}"
    return pd.DataFrame({"tutorial": table["tutorial"], "claim": table["claim"],
                         "published": table["published"], "ours": table.apply(ours, axis=1),
                         "holds": table["holds"], "note": table["note"]})
