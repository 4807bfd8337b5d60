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
    tolerance = 0.01                         # optional: see TOLERANCE

Rules (decided in :mod:`lrstudy.report.reproduction`; "yes" is "holds", "no" is "does not
hold"):

- ``value``: equivalence within a stated practical ``tolerance`` (two one-sided tests, TOST,
  read off the interval): "yes" when our 95% t-interval of the mean over seeds lies inside
  ``published +- tolerance``, "no" when it lies entirely outside, else "undecided" (one seed
  gives no interval: "undecided"). The default tolerance is :data:`TOLERANCE` of the metric.
- ``at_most`` / ``at_least``: our 95% confidence interval of the mean lies below / above
  ``published`` ("yes"), on the other side ("no"), or straddles it ("undecided").
- ``order``: ``scenarios`` is a list of groups, best first (``better`` says whether higher
  or lower ``metric`` is better; a group's score is its scenarios' mean per seed);
  ``relation = "better"`` (the default: each group beats the next) or ``"equivalent"`` (the
  groups are practically the same). Adjacent groups are compared by paired per-seed
  differences with Bonferroni-adjusted t-intervals, simultaneous over all the order
  comparisons of the file that the table decides, and the practical ``margin`` (default
  :data:`MARGIN` of the metric) decides: "equivalent", "yes", "no" or "undecided" (see
  :func:`lrstudy.report.reproduction.order_call`).
- ``diverged``: our divergence rule fired on every seed ("yes"), on none ("no"), or on some
  ("undecided").

Tolerances and margins, and why (a claim may state its own ``tolerance`` / ``margin``):

- A published **accuracy** is one run of the tutorial, on other hardware and other versions
  of TensorFlow/Keras. One run's accuracy varies by 0.3-0.9 points from seed to seed at these
  budgets, so the published run alone can sit that far from its own mean, and kernels,
  library versions and data pipelines can move the mean itself: a **tolerance of 1 accuracy
  point** (0.01) allows for both, while a miss by more than a point is worth reporting.
- A published **LR at a step** is a schedule's arithmetic, the same on every seed: its
  tolerance is the published rounding, half a unit of its last digit (0.00005 for 0.0286).
- An **order** compares our own runs, paired by seed, where hardware and version shifts
  cancel: its **margin is the main verdict's, 0.3 accuracy points** (0.003,
  ``lrstudy.spec.study.Study.margin``), below which the benchmark calls strategies
  equivalent.
- A **loss** has no scale common to models and data: a loss claim states its own
  ``tolerance`` or ``margin``.

A claim whose setting names data that the trials did not use because it was substituted
(``lrstudy.dataset_substituted``) reads "not comparable (data substituted)", unless it is
marked ``transfers = true`` (a qualitative claim, such as "too large does not converge",
that does not depend on the dataset).
"""

from __future__ import annotations

import dataclasses
import decimal
import math
from pathlib import Path

import tomllib

from lrstudy.tracking.schema import Metric

RULES = ("value", "at_most", "at_least", "order", "diverged")
#: What a claim can measure: a trial's final metric, the last epoch's (or ``epoch``'s)
#: value of a per-epoch series, the LR of optimizer step ``step``, or divergence.
METRICS = ("test_accuracy", "test_loss", "accuracy", "loss", "val_accuracy", "val_loss",
           Metric.STEP_LEARNING_RATE, "diverged")
LOWER_IS_BETTER = ("test_loss", "loss", "val_loss")
SETTING_KEYS = ("model", "dataset", "train_size", "batch_size", "epochs")
KEYS = {"id", "tutorial", "claim", "scenario", "scenarios", "setting", "metric", "rule",
        "published", "tolerance", "margin", "relation", "transfers", "epoch", "step", "better"}
RELATIONS = ("better", "equivalent")
ACCURACIES = ("test_accuracy", "accuracy", "val_accuracy")
#: The default practical tolerance of a ``value`` claim, per metric (the module docstring
#: says why); ``step_learning_rate``'s is the published rounding (:func:`rounding`); a loss
#: has none and states its own.
TOLERANCE = dict.fromkeys(ACCURACIES, 0.01)
#: The default practical margin of an ``order`` claim's differences, per metric: the main
#: verdict's 0.3 accuracy points (``lrstudy.spec.study.Study.margin``).
MARGIN = dict.fromkeys(ACCURACIES, 0.003)


def rounding(published: float) -> float:
    """Half a unit of the last digit of ``published`` as written (its shortest repr):
    0.00005 for 0.0286, 0.0005 for 0.099, 5e-6 for 1e-05."""
    return 0.5 * 10.0 ** decimal.Decimal(repr(float(published))).as_tuple().exponent


def default_tolerance(metric: str, published) -> float | None:
    """A ``value`` claim's tolerance when it states none; None for a metric without one."""
    if metric == Metric.STEP_LEARNING_RATE and isinstance(published, (int, float)):
        return rounding(published)
    return TOLERANCE.get(metric)


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
    tolerance: float | None = None  # value: None takes default_tolerance(metric, published)
    transfers: bool = False
    epoch: int | None = None
    step: int | None = None
    higher_is_better: bool = True
    margin: float | None = None  # order: None takes MARGIN[metric]
    relation: str = "better"  # order: each group beats the next, or all are equivalent

    def __post_init__(self):
        if self.rule == "value" and self.tolerance is None:
            object.__setattr__(self, "tolerance",
                               default_tolerance(self.metric, self.published))
        if self.rule == "order" and self.margin is None:
            object.__setattr__(self, "margin", MARGIN.get(self.metric))

    @property
    def scenarios(self) -> list[str]:
        return [name for group in self.groups for name in group]

    @property
    def published_text(self) -> str:
        if self.rule == "diverged":
            return "diverged" if self.published else "did not diverge"
        if self.rule in ("at_most", "at_least"):
            return f"{'<=' if self.rule == 'at_most' else '>='} {self.published:g}"
        if self.rule == "order" and self.relation == "equivalent":
            return f"{self.published} (equivalent)"
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
    tolerance = _amount(where, table, "tolerance", "value")
    margin = _amount(where, table, "margin", "order")
    relation = table.get("relation", "better")
    if "relation" in table and rule != "order":
        raise _fail(where, f"relation applies to rule \"order\" only, not {rule!r}")
    if relation not in RELATIONS:
        raise _fail(where, f"relation must be one of {', '.join(RELATIONS)}, got {relation!r}")
    if rule == "value" and tolerance is None and default_tolerance(metric, published) is None:
        raise _fail(where, f"metric {metric!r} has no default tolerance: state tolerance = N "
                    f"(the difference from {published:g} that still reproduces it)")
    if rule == "order" and margin is None and metric not in MARGIN:
        raise _fail(where, f"metric {metric!r} has no default margin: state margin = N "
                    "(the difference below which the groups are practically the same)")
    step = table.get("step")
    if (metric == Metric.STEP_LEARNING_RATE) != (step is not None):
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
                 published=published, tolerance=tolerance, margin=margin, relation=relation,
                 transfers=bool(table.get("transfers", False)), epoch=table.get("epoch"),
                 step=step, higher_is_better=better == "higher")


def _amount(where: str, table: dict, key: str, rule: str) -> float | None:
    """``tolerance`` or ``margin``: a finite number >= 0, only on the rule it applies to;
    None when not stated."""
    if key not in table:
        return None
    value = table[key]
    if table.get("rule") != rule:
        raise _fail(where, f"{key} applies to rule \"{rule}\" only, not {table.get('rule')!r}")
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value < 0):
        raise _fail(where, f"{key} must be a number >= 0, got {value!r}")
    return float(value)


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
