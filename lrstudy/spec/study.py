"""Scenarios and studies as data.

A *scenario* is one learning-rate strategy (optimizer, learning rate or schedule, plateau
rule) plus the budget it trains on (model, data, batch, epochs). A *study* is a set of
scenarios and a number of seeds. Studies live in ``lrstudy/studies/*.toml`` and pick their
scenarios from the catalogue ``lrstudy/studies/_catalogue.toml``; a user passes their own
file the same way. Everything is checked here, before any training: unknown keys and bad
values raise :class:`SpecError` naming the file, the key and the reason.

Study file keys::

    description = "..."          seeds = 3          scenarios = "all" | ["name", ...]
    [budget]            the shared budget (model, dataset, train_size, val_size, split,
                        batch_size, epochs, target, log_every, steps_per_execution,
                        jit_compile, dataset_fallback)
    claims = "FILE"     published claims to check against the study's trials (a TOML file,
                        relative to the study; see lrstudy/report/reproduction.py)
    [budgets.NAME]      named budgets, each merged over [budget]
    workloads = ["NAME", ...]   named budgets to run every scenario on: scenario S on
                        workload W is the scenario "S@W" (its twin and baseline too)
    [families]          family = "NAME": the named budget of every scenario of that family
    [scenario.NAME]     overrides of a catalogue scenario, or a new scenario; also written
                        as an array of tables, [[scenario]] with name = "NAME"
    [sweep]             optimizer, min, max, points: a log grid of fixed learning rates

Any other shape (a scalar where a table belongs, a string where a number belongs, ``nan``,
an epoch count of 10^12) is a :class:`SpecError` of one line, never a traceback.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import tomllib

from lrstudy.data import sources
from lrstudy.spec import budget as budgets_
from lrstudy.spec import competition, fields, resolve
from lrstudy.spec.budget import (  # noqa: F401 (the names a study's users read here too)
    BUDGET_DEFAULTS,
    DATASET_SIZES,
    KEY_WHEN_SET,
    SUBSTITUTED,
    TARGETS,
    budget_label,
)
from lrstudy.spec.fields import LIMITS, SpecError, suggest  # noqa: F401 (as above)

FAMILIES = ("fixed", "warmup", "decay", "plateau", "adaptive", "cyclical", "finder")
STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"  # lrstudy/studies
CATALOGUE = STUDIES_DIR / "_catalogue.toml"

SCENARIO_KEYS = {
    "family", "description", "optimizer", "optimizer_args", "learning_rate", "schedule",
    "plateau", "finder", "baseline", "twin", "budget",
}
STUDY_KEYS = {"description", "seeds", "scenarios", "budget", "budgets", "families",
              "scenario", "sweep", "name", "competition", "reference", "margin", "claims",
              "workloads"}
#: Between a strategy's name and its workload's in a scenario of a study with workloads.
ON = "@"
NOT_IN_KEY = ("name", "description", "family", "baseline", "twin")
SWEEP_KEYS = {"optimizer", "min", "max", "points", "optimizer_args"}
#: Where an error about a name sends the reader for every name there is.
SEE_ALL = "`lrstudy list` shows them all"
@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    family: str
    description: str
    optimizer: str
    optimizer_args: dict
    learning_rate: float | None
    schedule: dict | None
    plateau: dict | None
    finder: dict | None
    baseline: str
    budget: dict
    twin: str = ""  # a range-test-fed strategy's tuned twin: the same schedule, its LR tuned

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.train_size / self.budget["batch_size"])

    @property
    def train_size(self) -> int:
        budget = self.budget
        if budget["train_size"]:
            return budget["train_size"]
        if sources.is_spec(budget["dataset"]):
            n, n_val = sources.sizes(budget["dataset"])
            return n if n_val is not None else n - budget["val_size"]
        return DATASET_SIZES.get(budget["dataset"], 0) - budget["val_size"]

    @property
    def target(self) -> float:
        return self.budget["target"] or TARGETS.get(self.budget["dataset"], 0.0)

    @property
    def task(self) -> str:
        return self.budget["task"]

    @property
    def dataset_label(self) -> str:
        """The dataset's name: a built-in one, or a user source's file or function."""
        name = self.budget["dataset"]
        return sources.label(name) if sources.is_spec(name) else name

    def config(self) -> dict:
        """The canonical, JSON-able config of this scenario."""
        return dataclasses.asdict(self)

    def key_config(self) -> dict:
        """What the run key hashes: the config without the names and words, so that two
        scenarios training the same thing are one trial."""
        config = {k: v for k, v in self.config().items() if k not in NOT_IN_KEY}
        budget = {k: v for k, v in config["budget"].items()
                  if not (k in KEY_WHEN_SET and v == BUDGET_DEFAULTS[k])}
        if sources.is_spec(budget["dataset"]):  # its content, not where it lies
            budget["dataset"] = sources.key_identity(budget["dataset"])
        return {**config, "budget": budget}

    @property
    def budget_label(self) -> str:
        """The budget in words: scenarios are comparable only where it is the same."""
        b = self.budget
        data = self.dataset_label
        if b.get(SUBSTITUTED):
            data += f" (in place of {b[SUBSTITUTED].split(' -> ')[0]})"
        return budget_label({**b, "dataset": data, "train_size": self.train_size})


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    description: str
    seeds: int
    scenarios: dict[str, Scenario]  # what the study runs by default
    path: Path
    available: dict[str, Scenario] = dataclasses.field(default_factory=dict)  # --scenarios
    competition: competition.Competition | None = None
    reference: str = ""     # what the verdict compares every strategy with
    margin: float = 0.003   # the practical-equivalence margin, in accuracy (0.3 points)
    claims: Path | None = None  # published claims checked against the trials (reproduction)

    def select(self, names: list[str] | None, families: list[str] | None = None
               ) -> list[Scenario]:
        """The study's own scenarios, or the named ones of any it defines (the catalogue's);
        ``families`` keeps those of the named families (``--families decay,warmup``)."""
        known = self.available or self.scenarios
        unknown = [n for n in names or () if n not in known]
        if unknown:
            raise SpecError(f"study {self.name!r} has no scenario "
                            f"{', '.join(fields.suggest(n, known) for n in unknown)}; {SEE_ALL}")
        chosen = [known[n] for n in names] if names else list(self.scenarios.values())
        if not families:
            return chosen
        bad = [f for f in families if f not in FAMILIES]
        if bad:
            raise SpecError(f"unknown family {fields.suggest(bad[0], FAMILIES)}; families: "
                            f"{', '.join(FAMILIES)}")
        kept = [sc for sc in chosen if sc.family in families]
        if not kept:
            raise SpecError(f"study {self.name!r} runs no scenario of the families "
                            f"{', '.join(families)}")
        return kept


def _load_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot be read: {exc.strerror}") from None


def catalogue() -> dict[str, dict]:
    return _load_toml(CATALOGUE)


def study_names() -> list[str]:
    return sorted(p.stem for p in STUDIES_DIR.glob("*.toml") if not p.stem.startswith("_"))


def study_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise SpecError(f"study file {path} does not exist")
        return path.resolve()
    candidate = STUDIES_DIR / f"{name_or_path}.toml"
    if candidate.exists() and not name_or_path.startswith("_"):
        return candidate
    raise SpecError(f"unknown study {fields.suggest(name_or_path, study_names())}; `lrstudy list` "
                    "shows the studies (or name a .toml file)")


def _scenario_tables(where: str, value) -> dict[str, dict]:
    """``[scenario.NAME]`` tables, or ``[[scenario]]`` tables each with ``name = "NAME"``."""
    if isinstance(value, list):
        tables = {}
        for i, table in enumerate(value):
            table = dict(fields.table(f"{where} [[scenario]] #{i + 1}", table))
            name = table.pop("name", None)
            if not isinstance(name, str) or not name:
                raise SpecError(f"{where} [[scenario]] #{i + 1}: needs name = \"...\"")
            if name in tables:
                raise SpecError(f"{where} [[scenario]]: scenario {name!r} is defined twice")
            tables[name] = table
        return tables
    return {name: fields.table(f"{where} [scenario.{name}]", table)
            for name, table in fields.table(f"{where} [scenario]", value).items()}


def _sweep_scenarios(where: str, sweep: dict) -> dict[str, dict]:
    fields.unknown(where, fields.table(where, sweep), SWEEP_KEYS)
    lo, hi = sweep.get("min", 1e-4), sweep.get("max", 1e-1)
    points = fields.count(where, "points", sweep.get("points", 4))
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi))
    if not (numbers and 0 < lo <= hi and math.isfinite(hi)):
        raise SpecError(f"{where}: need 0 < min <= max, finite, got min={fields.show(lo)} "
                        f"max={fields.show(hi)}")
    fields.string(where, "optimizer", sweep.get("optimizer", "adam"))
    fields.table(f"{where} optimizer_args", sweep.get("optimizer_args", {}))
    out = {}
    for i in range(points):
        lr = lo if points == 1 else lo * (hi / lo) ** (i / (points - 1))
        lr = float(f"{lr:.4g}")
        out[f"lr-{lr:.3g}"] = {
            "family": "fixed",
            "description": f"{sweep.get('optimizer', 'adam')} at a fixed {lr:.3g}",
            "optimizer": sweep.get("optimizer", "adam"),
            "optimizer_args": sweep.get("optimizer_args", {}),
            "learning_rate": lr,
        }
    return out


def load_study(name_or_path: str, overrides: dict | None = None) -> Study:
    """Load and check a study; ``overrides`` (epochs, train_size, batch_size ...) apply to the
    budget of every scenario.

    Once per process: the runner plans a study and then starts each of its jobs, a kept
    kernel runs one execution after another of it; the same file (and catalogue), unchanged
    since, with the same overrides, gives the study loaded the first time (nobody changes a
    study in place). A study on a user's data, or with a fallback for data that may be
    missing, is loaded every time: the data may have changed where the study file did not."""
    path = study_path(name_or_path)
    key = (str(path), _file_state(path), _file_state(CATALOGUE),
           json.dumps(overrides or {}, sort_keys=True, default=str))
    if key in _LOADED:
        return _LOADED[key]
    study = _load_study(path, overrides)
    if not any(_depends_on_data(sc.budget) for sc in study.available.values()):
        if len(_LOADED) >= 8:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = study
    return study


_LOADED: dict = {}  # load_study's studies, by file, its state and the overrides


def _depends_on_data(budget: dict) -> bool:
    """Whether loading a budget reads more than the study file: a user's data, or a dataset
    that is replaced when it cannot be had here."""
    return (sources.is_spec(budget["dataset"]) or bool(budget.get("dataset_fallback"))
            or SUBSTITUTED in budget)


def _file_state(path: Path) -> tuple:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _load_study(path: Path, overrides: dict | None) -> Study:
    raw = _load_toml(path)
    where = str(path)
    if not raw:  # empty, blank or comments only: not "every scenario of the catalogue"
        raise SpecError(f"study file {path} names no scenarios: add scenarios = "
                        "[\"fixed-baseline\", ...] (`python -m lrstudy list` shows them)")
    fields.unknown(where, raw, STUDY_KEYS)
    name = fields.string(where, "name", raw.get("name", path.stem))
    description = fields.string(where, "description", raw.get("description", ""))
    seeds = fields.count(where, "seeds", raw.get("seeds", 3))
    base = {**BUDGET_DEFAULTS, "val_size": None}  # None: the dataset's default
    resolved: dict = {}
    base.update(budgets_.check_budget(f"{where} [budget]", raw.get("budget", {})))
    named = {
        key: {**base, **budgets_.check_budget(f"{where} [budgets.{key}]", table)}
        for key, table in fields.table(f"{where} [budgets]", raw.get("budgets", {})).items()
    }
    families = fields.table(f"{where} [families]", raw.get("families", {}))
    for family, budget_name in families.items():
        if family not in FAMILIES:
            raise SpecError(f"{where} [families]: unknown family {fields.suggest(family, FAMILIES)}"
                            f"; families: {', '.join(FAMILIES)}")
        if not isinstance(budget_name, str) or budget_name not in named:
            raise SpecError(f"{where} [families]: {family} = {fields.show(budget_name)} is not a "
                            f"[budgets.*] table")
    tables = _scenario_tables(where, raw.get("scenario", {}))

    cat = catalogue()
    definitions = copy.deepcopy(cat)
    if "sweep" in raw:
        definitions = _sweep_scenarios(f"{where} [sweep]", raw["sweep"])
    for sname, table in tables.items():
        definitions[sname] = {**definitions.get(sname, {}), **table}
    selection = raw.get("scenarios", "all" if "sweep" not in raw else "sweep")
    if selection == "all":
        names = list(cat) + [n for n in tables if n not in cat]
    elif selection == "sweep":
        names = list(definitions)
    elif isinstance(selection, list) and all(isinstance(n, str) for n in selection):
        names = selection
    else:
        raise SpecError(f"{where}: scenarios must be \"all\" or a list of names, "
                        f"got {fields.show(selection)}")
    unknown = [n for n in names if n not in definitions]
    if unknown:
        raise SpecError(f"{where}: unknown scenario {fields.suggest(unknown[0], definitions)}; "
                        f"{SEE_ALL}")
    workloads = _workloads(where, raw.get("workloads"), named)
    if workloads:
        definitions, names = _on_workloads(definitions, names, workloads)

    available = {}
    unavailable: dict[str, str | None] = {}  # dataset -> why it cannot be had here
    # Every definition is checked (``--scenarios`` may name any), the study's own first: the
    # scenarios it runs or defines, named in errors. A catalogue scenario it does not mention
    # fails only on the study's budget, so such an error names that budget, not the scenario.
    own = dict.fromkeys([*names, *tables])
    for sname in [*own, *(n for n in definitions if n not in own)]:
        spec = definitions[sname]
        # (the catalogue's own entries pass the checks before the budget: only it can fail)
        swhere = f"{where} scenario {sname!r}" if sname in own else where
        fields.unknown(swhere, spec, SCENARIO_KEYS)
        family = spec.get("family", "")
        if not isinstance(family, str) or family not in FAMILIES:
            raise SpecError(f"{swhere}: family must be one of {', '.join(FAMILIES)}, "
                            f"got {fields.show(family)}")
        for key in ("description", "optimizer", "baseline", "twin"):
            if key in spec:
                fields.string(swhere, key, spec[key])
        fields.table(f"{swhere} optimizer_args", spec.get("optimizer_args", {}))
        budget_spec = spec.get("budget", families.get(family))
        if sname not in own:  # the study's budget table this scenario takes
            swhere = (f"{where} [budgets.{budget_spec}]" if isinstance(budget_spec, str)
                      else f"{where} [budget]")
        if isinstance(budget_spec, str):
            if budget_spec not in named:
                raise SpecError(f"{swhere}: budget {budget_spec!r} is not a [budgets.*] table")
            budget = dict(named[budget_spec])
        elif budget_spec is None:
            budget = dict(base)
        else:
            budget = {**base, **budgets_.check_budget(f"{swhere} budget", budget_spec)}
        if overrides:
            budget.update(budgets_.check_budget("command line", overrides))
        budget = budgets_.substitute(budget, unavailable)
        budget = budgets_.resolve_dataset(swhere, budget, path.parent, resolved)
        budgets_.check_values(swhere, budget)
        plateau = spec.get("plateau")
        if (budget["val_size"] == 0 and isinstance(plateau, dict)
                and str(plateau.get("monitor", "val_loss")).startswith("val_")):
            raise SpecError(f"{swhere}: the plateau rule monitors {plateau.get('monitor', 'val_loss')}"
                            f" but the budget has no validation set (val_size = 0)")
        lr = spec.get("learning_rate")
        if "schedule" not in spec and lr is None:
            raise SpecError(f"{swhere}: needs a learning_rate or a schedule")
        available[sname] = Scenario(
            name=sname,
            family=family,
            description=spec.get("description", ""),
            optimizer=spec.get("optimizer", "adam"),
            optimizer_args=dict(spec.get("optimizer_args", {})),
            learning_rate=lr,
            schedule=spec.get("schedule"),
            plateau=spec.get("plateau"),
            finder=spec.get("finder"),
            baseline=spec.get("baseline", ""),
            budget=budget,
            twin=spec.get("twin", ""),
        )
    available = {n: available[n] for n in definitions}  # in the catalogue's order
    comp = None
    if "competition" in raw:
        try:
            comp = competition.parse(f"{where} [competition]", raw["competition"])
        except competition.CompetitionError as exc:
            raise SpecError(str(exc)) from None
        for demo in [*comp.demos, *comp.untuned, *dict(comp.differs)]:
            if demo not in available:
                raise SpecError(f"{where} [competition]: unknown scenario {demo!r}")
        if workloads:  # a demonstration, or a strategy without tuning, on every workload
            comp = dataclasses.replace(comp, **{
                key: tuple(f"{n}{ON}{w}" for n in getattr(comp, key) for w in workloads)
                for key in ("demos", "untuned")})
        blind = [n for n in names if available[n].budget["val_size"] == 0]
        if blind:
            raise SpecError(f"{where} [competition]: tuning chooses on validation data, but "
                            f"scenario {blind[0]!r} has no validation set (val_size = 0)")
    for sc in available.values():
        if sc.twin and sc.twin not in available:
            raise SpecError(f"{where} scenario {sc.name!r}: twin {sc.twin!r} is not a scenario")
    reference = fields.string(where, "reference", raw.get("reference", ""))
    if reference and reference not in available:
        raise SpecError(f"{where}: reference {reference!r} is not a scenario of the study")
    margin = raw.get("margin", Study.margin)
    if (isinstance(margin, bool) or not isinstance(margin, (int, float))
            or not math.isfinite(margin) or not 0 <= margin < 1):
        raise SpecError(f"{where}: margin must be an accuracy difference in [0, 1) "
                        f"(0.003 is 0.3 points), got {margin!r}"[:300])
    claims = None
    if "claims" in raw:
        from lrstudy.spec import claims as claims_module

        claims = (path.parent / fields.string(where, "claims", raw["claims"])).resolve()
        try:
            claims_module.load(claims)
        except claims_module.ClaimError as exc:
            raise SpecError(f"{where}: {exc}") from None
    return Study(name=name, description=description, seeds=seeds,
                 scenarios={n: available[n] for n in names}, path=path, available=available,
                 competition=comp, reference=reference, margin=float(margin), claims=claims)


def _workloads(where: str, value, named: dict) -> list[str]:
    """The study's ``workloads``: names of its ``[budgets.*]`` tables, or none."""
    if value is None:
        return []
    if (not isinstance(value, list) or not value
            or not all(isinstance(w, str) and w for w in value)):
        raise SpecError(f"{where}: workloads must be a list of [budgets.*] names, "
                        f"got {fields.show(value)}")
    for w in value:
        if w not in named:
            raise SpecError(f"{where}: workload {fields.suggest(w, named)} is not a [budgets.*] table")
        if ON in w:
            raise SpecError(f"{where}: workload {w!r}: a workload's name has no {ON!r}")
    if len(set(value)) != len(value):
        raise SpecError(f"{where}: workloads names a budget twice")
    return list(value)


def _on_workloads(definitions: dict, names: list[str], workloads: list[str]
                  ) -> tuple[dict, list[str]]:
    """Each of ``names`` on each workload: the scenario ``S@W`` is ``S`` on the budget ``W``,
    its twin and baseline those of the same workload (where the study runs them); the
    study's scenarios are then these, workload by workload."""
    out = dict(definitions)
    for w in workloads:
        for n in names:
            spec = dict(definitions[n])
            spec["budget"] = w
            for key in ("twin", "baseline"):
                if spec.get(key) in names:
                    spec[key] = f"{spec[key]}{ON}{w}"
                elif key == "twin":
                    spec.pop(key, None)
            out[f"{n}{ON}{w}"] = spec
    return out, [f"{n}{ON}{w}" for w in workloads for n in names]


def strategy_of(name: str) -> str:
    """The strategy of a scenario: its name without ``@workload``."""
    return name.split(ON, 1)[0]


def validate(study: Study, scenarios: list[Scenario] | None = None) -> None:
    """Deep checks: the data can be had, models, optimizers, schedules, plateau rules.

    All from data, without TensorFlow (a user's model module is located and parsed, not run).
    Raises :class:`SpecError` with one line naming the study, the scenario and the problem.
    """
    from lrstudy import models
    from lrstudy.data import datasets as data
    from lrstudy.data import splits
    from lrstudy.lr import optimizers

    checked_data = set()
    for sc in scenarios or study.scenarios.values():
        b = sc.budget
        setup = (b["dataset"], b["train_size"], b["val_size"], b["split"])
        if setup not in checked_data:
            try:
                data.check(b["dataset"], train_size=b["train_size"] or None,
                           val_size=b["val_size"], split=splits.draw(b["split"]))
            except data.DataError as exc:
                raise SpecError(f"{study.path} scenario {sc.name!r}: {exc}") from None
            checked_data.add(setup)
        where = f"{study.path} scenario {sc.name!r}"
        try:
            resolve.check(sc)  # learning rate, schedule, plateau and finder arguments
            models.check(sc.budget["model"])
            optimizers.check(sc.optimizer, sc.optimizer_args)
        except SpecError:
            raise
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise SpecError(f"{where}: {' '.join(str(exc).split())}") from None
