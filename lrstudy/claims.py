"""Published claims as data: what a tutorial reported, at which setting, and the rule that
decides whether our trials reproduce it.

A claims file is TOML, one ``[[claim]]`` table per claim (the tutorials' own:
``lrstudy/studies/_tutorial_claims.toml``, which the study ``seeds-original`` names with
``claims = "_tutorial_claims.toml"``)::

    [[claim]]
    id = "warmup-linear"                     # unique, short
    tutorial = "warm-up"                     # where it comes from
    claim = "linear warm-up 0.005 -> 0.01: training accuracy 0.8571 after 5 epochs"
    scenario = "warmup-linear"               # the scenario that redoes it ...
    setting = { model = "mlp128", dataset = "fashion_mnist", train_size = 60000,
                batch_size = 32, epochs = 5 }   # ... and the budget it must have run at
    metric = "accuracy"                      # see METRICS
    rule = "value"                           # see RULES
    published = 0.8571

Rules (decided in :mod:`lrstudy.report.reproduction`):

- ``value``: the published number of one run lies in our 95% *prediction* interval for one
  run, ``mean +- t(0.975, n-1) * s * sqrt(1 + 1/n)``, widened by ``tolerance`` (the
  published rounding, e.g. 0.00005 for "0.0286"); needs 2 seeds unless the spread is 0 by
  construction (a schedule's LR).
- ``at_most`` / ``at_least``: our 95% confidence interval of the mean lies below / above
  ``published`` ("yes"), on the other side ("no"), or straddles it ("undecided").
- ``order``: ``scenarios`` is a list of groups, best first (``better`` says whether higher
  or lower ``metric`` is better); every pair of adjacent groups is compared paired by seed
  with Bonferroni-corrected simultaneous t-intervals: all in the claimed direction "yes",
  one in the other "no", else "undecided".
- ``diverged``: our divergence rule fired on every seed ("yes"), on none ("no"), or on some
  ("undecided").

A claim whose setting names data that the trials did not use because it was substituted
(``lrstudy.dataset_substituted``) reads "not comparable (data substituted)", unless it is
marked ``transfers = true`` (a qualitative claim, such as "too large does not converge",
that does not depend on the dataset).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path

RULES = ("value", "at_most", "at_least", "order", "diverged")
#: What a claim can measure: a trial's final metric, the last epoch's (or ``epoch``'s)
#: value of a per-epoch series, the LR of optimizer step ``step``, or divergence.
METRICS = ("test_accuracy", "test_loss", "accuracy", "loss", "val_accuracy", "val_loss",
           "step_learning_rate", "diverged")
LOWER_IS_BETTER = ("test_loss", "loss", "val_loss")
SETTING_KEYS = ("model", "dataset", "train_size", "batch_size", "epochs")
KEYS = {"id", "tutorial", "claim", "scenario", "scenarios", "setting", "metric", "rule",
        "published", "tolerance", "transfers", "epoch", "step", "better"}


class ClaimError(ValueError):
    """A claims file that cannot be read or holds a malformed claim (one line)."""


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    tutorial: str
    claim: str
    groups: tuple[tuple[str, ...], ...]  # one group of one scenario, except for ``order``
    setting: dict
    metric: str
    rule: str
    published: float | bool | str
    tolerance: float = 0.0
    transfers: bool = False
    epoch: int | None = None
    step: int | None = None
    higher_is_better: bool = True

    @property
    def scenarios(self) -> list[str]:
        return [name for group in self.groups for name in group]

    @property
    def published_text(self) -> str:
        if self.rule == "diverged":
            return "diverged" if self.published else "did not diverge"
        if self.rule in ("at_most", "at_least"):
            return f"{'<=' if self.rule == 'at_most' else '>='} {self.published:g}"
        return self.published if isinstance(self.published, str) else f"{self.published:g}"


def _fail(where: str, message: str) -> ClaimError:
    return ClaimError(f"{where}: {message}")


def _parse(where: str, table: dict) -> Claim:
    unknown = sorted(set(table) - KEYS)
    if unknown:
        raise _fail(where, f"unknown key {unknown[0]!r}; known: {', '.join(sorted(KEYS))}")
    for key in ("id", "tutorial", "claim", "metric", "rule"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise _fail(where, f"needs {key} = \"...\"")
    rule, metric = table["rule"], table["metric"]
    if rule not in RULES:
        raise _fail(where, f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    if metric not in METRICS:
        raise _fail(where, f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if (rule == "diverged") != (metric == "diverged"):
        raise _fail(where, "rule \"diverged\" goes with metric \"diverged\" and only with it")
    if rule == "order":
        groups = table.get("scenarios")
        if (not isinstance(groups, list) or len(groups) < 2 or not all(
                isinstance(g, list) and g and all(isinstance(n, str) for n in g) for g in groups)):
            raise _fail(where, "an order needs scenarios = [[\"best\"], [\"next\", ...], ...]")
        groups = tuple(tuple(g) for g in groups)
    else:
        if not isinstance(table.get("scenario"), str):
            raise _fail(where, "needs scenario = \"NAME\"")
        groups = ((table["scenario"],),)
    setting = table.get("setting")
    if not isinstance(setting, dict) or sorted(setting) != sorted(SETTING_KEYS):
        raise _fail(where, f"setting must be a table of exactly {', '.join(SETTING_KEYS)}")
    published = table.get("published")
    if rule in ("value", "at_most", "at_least"):
        if (isinstance(published, bool) or not isinstance(published, (int, float))
                or not math.isfinite(published)):
            raise _fail(where, f"rule {rule!r} needs a published number, got {published!r}")
        published = float(published)
    elif rule == "diverged" and not isinstance(published, bool):
        raise _fail(where, "rule \"diverged\" needs published = true or false")
    elif rule == "order" and not isinstance(published, str):
        raise _fail(where, "rule \"order\" needs published = \"the order as published\"")
    tolerance = table.get("tolerance", 0.0)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise _fail(where, f"tolerance must be a number >= 0, got {tolerance!r}")
    step = table.get("step")
    if (metric == "step_learning_rate") != (step is not None):
        raise _fail(where, "metric \"step_learning_rate\" needs step = N (and only it has one)")
    for key in ("step", "epoch"):
        value = table.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < (0 if key == "step" else 1)):
            raise _fail(where, f"{key} must be an integer >= {0 if key == 'step' else 1}")
    better = table.get("better", "lower" if metric in LOWER_IS_BETTER else "higher")
    if better not in ("higher", "lower"):
        raise _fail(where, f"better must be \"higher\" or \"lower\", got {better!r}")
    return Claim(id=table["id"], tutorial=table["tutorial"], claim=table["claim"],
                 groups=groups, setting=dict(setting), metric=metric, rule=rule,
                 published=published, tolerance=float(tolerance),
                 transfers=bool(table.get("transfers", False)), epoch=table.get("epoch"),
                 step=step, higher_is_better=better == "higher")


def load(path) -> list[Claim]:
    """The claims of the TOML file ``path``; :class:`ClaimError` (one line) if malformed."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClaimError(f"claims file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClaimError(f"claims file {path} cannot be read: {' '.join(str(exc).split())}") \
            from None
    tables = raw.get("claim")
    if set(raw) - {"claim"} or not isinstance(tables, list) or not tables:
        raise ClaimError(f"claims file {path}: expected [[claim]] tables and nothing else")
    claims = [_parse(f"{path} claim {i + 1}", t if isinstance(t, dict) else {})
              for i, t in enumerate(tables)]
    ids = [c.id for c in claims]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise ClaimError(f"claims file {path}: claim id {duplicate!r} is used twice")
    return claims
