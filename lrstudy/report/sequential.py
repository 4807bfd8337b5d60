"""Group-sequential critical values: seeds added in looks, the error rate kept across the looks.

Adding seeds until an interval clears a line and stopping then inflates false calls unless the
design accounts for the looks. A study run with ``lrstudy run --until-decided`` is such a
design (a :class:`Design` of kind ``sequential``); a plain run is the fixed design.

* **Alpha spending** (Lan & DeMets 1983, "Discrete sequential boundaries for clinical trials",
  Biometrika 70:659): at information fraction ``t = n / N_max`` (seeds so far over the most
  seeds the design allows) the error spent so far is the O'Brien-Fleming-type function
  ``alpha(t) = 2 - 2 Phi(z_{1 - alpha/2} / sqrt(t))`` (O'Brien & Fleming 1979, Biometrics
  35:549, in Lan & DeMets' form): almost nothing at early looks, nearly the fixed design's
  critical value at the last.
* **Boundaries** for the looks taken, ``z_1 .. z_K``: the standardized mean of independent
  per-seed differences behaves as Brownian motion in ``t``, so ``corr(Z_i, Z_j) =
  sqrt(t_i / t_j)`` (``i < j``); each ``z_k`` solves ``P(no crossing at looks < k, crossing at
  k) = alpha(t_k) - alpha(t_{k-1})`` as a multivariate normal probability over the
  continuation region (Jennison & Turnbull 2000, *Group Sequential Methods with Applications
  to Clinical Trials*, ch. 7 and 19; computed as :func:`boundaries` says). Looks need not be
  those planned: the spending function prices whatever looks were taken (Lan & DeMets'
  point), only ``N_max`` is fixed.
* **Unknown variance**: each ``z_k`` is turned into a t critical value with the same tail
  probability at that look's degrees of freedom (Jennison & Turnbull 2000, section 3.8,
  the "significance level approach"), ``t_k = t.ppf(Phi(z_k), n_k - 1)``.
* **Repeated confidence intervals** (Jennison & Turnbull 1989, JRSS B 51:305): ``mean +-
  t_k * se`` at look ``k`` covers the true difference at every look simultaneously with
  probability ``1 - alpha``, so calls read from it, equivalence included, hold at whatever
  look the study stopped.
* **Multiplicity** across comparisons is the caller's: it passes ``alpha / k`` (Bonferroni),
  see :mod:`lrstudy.report.simultaneous`.

A :class:`Design` round-trips through the experiment tags ``lrstudy.design``,
``lrstudy.max_seeds``, ``lrstudy.seed_step`` and ``lrstudy.looks`` (:meth:`Design.tags`,
:func:`design_from_tags`); reading and writing them in MLflow is not this module's. SciPy is
imported by the functions that compute (:func:`boundaries`, :func:`critical_t`): the runner
reads and records designs without it.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

FIXED = "fixed"
SEQUENTIAL = "sequential"
SPENDING = "O'Brien-Fleming-type alpha spending (Lan-DeMets)"
SEED_STEP = 5  # seeds added per look
MAX_SEEDS = 30  # the design's N_max unless told otherwise
TAG_KEYS = ("design", "max_seeds", "seed_step", "looks")


@dataclasses.dataclass(frozen=True)
class Design:
    """How the seeds were gathered: ``fixed`` (one look) or ``sequential`` (looks at the seed
    counts ``looks``, at most ``max_seeds``, ``seed_step`` more per look)."""

    kind: str = FIXED
    max_seeds: int = 0
    seed_step: int = SEED_STEP
    looks: tuple[int, ...] = ()

    @property
    def sequential(self) -> bool:
        return self.kind == SEQUENTIAL

    def looks_at(self, n: int) -> tuple[int, ...]:
        """The seed counts of the looks up to one at ``n`` seeds: the recorded looks below
        ``n``, then ``n``."""
        return tuple(sorted({k for k in self.looks if 0 < k < n})) + (int(n),)

    def fractions(self, n: int) -> tuple[float, ...]:
        """Information fractions ``n_k / N_max`` of :meth:`looks_at` (``N_max`` at least
        ``n``: seeds beyond the planned maximum make the current look the last)."""
        top = max(int(self.max_seeds), int(n))
        return tuple(k / top for k in self.looks_at(n))

    def with_look(self, n: int) -> "Design":
        return dataclasses.replace(self, looks=tuple(sorted(set(self.looks) | {int(n)})))

    def tags(self) -> dict[str, str]:
        """Experiment tag values (without the ``lrstudy.`` prefix)."""
        return {"design": self.kind, "max_seeds": str(int(self.max_seeds)),
                "seed_step": str(int(self.seed_step)),
                "looks": ",".join(str(k) for k in self.looks)}

    def describe(self, n: int) -> str:
        """``group-sequential, look 3 (at 10, 15, 20 seeds; at most 30), O'Brien-...``."""
        if not self.sequential:
            return "fixed design (one look)"
        looks = self.looks_at(n)
        return (f"group-sequential, look {len(looks)} (at {', '.join(map(str, looks))} seeds; "
                f"at most {max(int(self.max_seeds), int(n))}), {SPENDING}")


def design_from_tags(tags: dict, prefix: str = "") -> Design:
    """The :class:`Design` that ``tags`` (``{prefix + "design": ...}``) record; the fixed
    design when they record none or cannot be read."""
    if tags.get(prefix + "design") != SEQUENTIAL:
        return Design()
    try:
        looks = tuple(int(k) for k in str(tags.get(prefix + "looks", "")).split(",") if k.strip())
        return Design(SEQUENTIAL, int(tags.get(prefix + "max_seeds", MAX_SEEDS)),
                      int(tags.get(prefix + "seed_step", SEED_STEP)), looks)
    except ValueError:
        return Design(SEQUENTIAL, MAX_SEEDS, SEED_STEP, ())


def obrien_fleming_spending(t, alpha: float):
    """Lan & DeMets' O'Brien-Fleming-type spending ``2 - 2 Phi(z_{1-alpha/2} / sqrt(t))``:
    the error spent by information fraction ``t`` (``alpha`` at ``t = 1``)."""
    from scipy import stats

    t = np.asarray(t, float)
    return 2.0 - 2.0 * stats.norm.cdf(stats.norm.isf(alpha / 2) / np.sqrt(t))


GRID_POINTS = 801  # Simpson points per look of the numerical integration (odd)


def _simpson(low: float, high: float, points: int = GRID_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and Simpson weights on ``[low, high]``."""
    x = np.linspace(low, high, points)
    w = np.ones(points)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return x, w * (x[1] - x[0]) / 3.0


@functools.lru_cache(maxsize=256)
def boundaries(fractions: tuple[float, ...], alpha: float, sides: int = 2) -> tuple[float, ...]:
    """Normal boundaries ``z_1 .. z_K`` at information ``fractions`` spending ``alpha`` by
    :func:`obrien_fleming_spending`: two-sided (``|Z_k| >= z_k``) or one-sided
    (``Z_k >= z_k``).

    The crossing probabilities are the multivariate normal probabilities of the module
    docstring, computed by the recursive numerical integration of Armitage, McPherson & Rowe
    (1969, JRSS A 132:235; Jennison & Turnbull 2000, ch. 19): the score ``S_k = Z_k sqrt(t_k)``
    has independent normal increments of variance ``t_k - t_{k-1}``, so the sub-density of
    ``S_k`` on the continuation region is the previous one convolved with that normal
    (Simpson's rule), and the crossing probability at a trial boundary is exact given it
    (``scipy.stats.norm``). ``scipy.stats.multivariate_normal.cdf`` gives the same numbers
    (checked in the tests) but takes seconds per boundary where this takes milliseconds.
    Cached: a report asks for the same few designs many times.
    """
    from scipy import optimize, stats

    t = np.asarray(fractions, float)
    spent = obrien_fleming_spending(t, alpha)
    out: list[float] = []
    nodes = weights = None  # the previous look's continuation region: nodes, weight x density
    for k in range(len(t)):
        increment = float(spent[k] - (spent[k - 1] if k else 0.0))
        if k == 0:
            c = float(stats.norm.isf(increment / sides))
        else:
            sd = float(np.sqrt(t[k] - t[k - 1]))
            root_t = float(np.sqrt(t[k]))

            def crossing(c, nodes=nodes, weights=weights, sd=sd, root_t=root_t):
                p = stats.norm.sf((c * root_t - nodes) / sd)
                if sides == 2:
                    p = p + stats.norm.cdf((-c * root_t - nodes) / sd)
                return float(weights @ p) - increment

            c = (float(optimize.brentq(crossing, 0.0, 40.0, xtol=1e-10))
                 if increment > 0 else np.inf)
        out.append(c)
        if not np.isfinite(c):
            c = 40.0
        top = c * np.sqrt(t[k])
        low = -top if sides == 2 else -8.0  # one-sided: S_k has sd <= 1, 8 sd below 0
        new_nodes, simpson = _simpson(low, top)
        if k == 0:
            density = stats.norm.pdf(new_nodes, scale=np.sqrt(t[0]))
        else:
            sd = np.sqrt(t[k] - t[k - 1])
            density = weights @ stats.norm.pdf((new_nodes[None, :] - nodes[:, None]) / sd) / sd
        nodes, weights = new_nodes, simpson * density
    return tuple(out)


def critical_t(design: Design, n: int, alpha: float, sides: int = 2) -> float:
    """The t critical value at a look with ``n`` paired seeds (``n - 1`` degrees of freedom)
    for a test at level ``alpha`` (per comparison, already divided by the number of
    comparisons): the fixed design's ``t.ppf(1 - alpha / sides, n - 1)``, or the sequential
    boundary of :func:`boundaries` at this look, with the same tail probability. NaN below
    2 seeds."""
    from scipy import stats

    if n < 2:
        return float("nan")
    if not design.sequential:
        return float(stats.t.isf(alpha / sides, n - 1))
    z = boundaries(design.fractions(n), float(alpha), int(sides))[-1]
    return float(stats.t.isf(stats.norm.sf(z), n - 1))
