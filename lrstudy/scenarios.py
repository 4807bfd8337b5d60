"""Scenarios and studies as data.

A *scenario* is one learning-rate strategy (optimizer, learning rate or schedule, plateau
rule) plus the budget it trains on (model, data, batch, epochs). A *study* is a set of
scenarios and a number of seeds. Studies live in ``lrstudy/studies/*.toml`` and pick their
scenarios from the catalogue ``lrstudy/studies/_catalogue.toml``; a user passes their own
file the same way. Everything is checked here, before any training: unknown keys and bad
values raise :class:`SpecError` naming the file, the key and the reason.

Study file keys::

    description = "..."          seeds = 3          scenarios = "all" | ["name", ...]
    [budget]            the shared budget (model, dataset, train_size, val_size, batch_size,
                        epochs, target, log_every, steps_per_execution, jit_compile,
                        dataset_fallback)
    [budgets.NAME]      named budgets, each merged over [budget]
    [families]          family = "NAME": the named budget of every scenario of that family
    [scenario.NAME]     overrides of a catalogue scenario, or a new scenario
    [sweep]             optimizer, min, max, points: a log grid of fixed learning rates
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
from pathlib import Path

from lrstudy.tracking import FAMILIES

STUDIES_DIR = Path(__file__).resolve().parent / "studies"
CATALOGUE = STUDIES_DIR / "_catalogue.toml"

DATASET_SIZES = {"fashion_mnist": 60000, "mnist": 60000, "synthetic": 1000}
TARGETS = {"fashion_mnist": 0.85, "mnist": 0.97, "synthetic": 0.6}

BUDGET_DEFAULTS = {
    "model": "mlp128",
    "dataset": "fashion_mnist",
    "dataset_fallback": "",
    "train_size": 0,  # 0: every image not in the validation set
    "val_size": 10000,
    "batch_size": 32,
    "epochs": 5,
    "target": 0.0,  # 0: the dataset's default target validation accuracy
    "log_every": 1,
    "steps_per_execution": 0,  # 0: automatic
    "jit_compile": True,
}
SCENARIO_KEYS = {
    "family", "description", "optimizer", "optimizer_args", "learning_rate", "schedule",
    "plateau", "finder", "baseline", "budget",
}
STUDY_KEYS = {"description", "seeds", "scenarios", "budget", "budgets", "families",
              "scenario", "sweep", "name"}
SWEEP_KEYS = {"optimizer", "min", "max", "points", "optimizer_args"}
FROM_FINDER = "from_finder"
FINDER_KEYS = {"rule", "start_lr", "end_lr", "num_it"}


class SpecError(ValueError):
    """A study or scenario that cannot run, named with its file and key."""


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

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.train_size / self.budget["batch_size"])

    @property
    def train_size(self) -> int:
        budget = self.budget
        if budget["train_size"]:
            return budget["train_size"]
        return DATASET_SIZES.get(budget["dataset"], 0) - budget["val_size"]

    @property
    def target(self) -> float:
        return self.budget["target"] or TARGETS.get(self.budget["dataset"], 0.0)

    def config(self) -> dict:
        """The canonical, JSON-able config of this scenario (what the run key hashes)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    description: str
    seeds: int
    scenarios: dict[str, Scenario]
    path: Path

    def select(self, names: list[str] | None) -> list[Scenario]:
        if not names:
            return list(self.scenarios.values())
        unknown = [n for n in names if n not in self.scenarios]
        if unknown:
            raise SpecError(
                f"study {self.name!r} has no scenario {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(self.scenarios)}"
            )
        return [self.scenarios[n] for n in names]


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
    raise SpecError(f"unknown study {name_or_path!r}; known: {', '.join(study_names())} "
                    f"(or a path to a .toml file)")


def _unknown(where: str, keys, allowed) -> None:
    extra = sorted(set(keys) - set(allowed))
    if extra:
        raise SpecError(f"{where}: unknown key {extra[0]!r}; allowed: {', '.join(sorted(allowed))}")


def _check_budget(where: str, budget: dict) -> dict:
    _unknown(where, budget, BUDGET_DEFAULTS)
    out = dict(budget)
    for key, value in budget.items():
        default = BUDGET_DEFAULTS[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise SpecError(f"{where}: key {key!r} must be true or false, got {value!r}")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(f"{where}: key {key!r} must be an integer, got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(f"{where}: key {key!r} must be a number, got {value!r}")
            out[key] = float(value)
        elif not isinstance(value, str):
            raise SpecError(f"{where}: key {key!r} must be a string, got {value!r}")
    return out


def _validate_budget_values(where: str, budget: dict) -> None:
    for key in ("epochs", "batch_size", "val_size", "log_every"):
        if budget[key] <= 0:
            raise SpecError(f"{where}: {key} must be > 0, got {budget[key]}")
    for key in ("train_size", "steps_per_execution"):
        if budget[key] < 0:
            raise SpecError(f"{where}: {key} must be >= 0, got {budget[key]}")
    if not 0 <= budget["target"] <= 1:
        raise SpecError(f"{where}: target must be a validation accuracy in [0, 1], "
                        f"got {budget['target']}")
    size = DATASET_SIZES.get(budget["dataset"])
    if size is None:
        raise SpecError(f"{where}: unknown dataset {budget['dataset']!r}; "
                        f"known: {', '.join(DATASET_SIZES)}")
    if budget["val_size"] >= size:
        raise SpecError(f"{where}: val_size {budget['val_size']} leaves no training data "
                        f"({budget['dataset']} has {size} training images)")
    room = size - budget["val_size"]
    if budget["train_size"] > room:
        raise SpecError(f"{where}: train_size {budget['train_size']} is larger than the data: "
                        f"{budget['dataset']} has {room} images left after {budget['val_size']} "
                        f"for validation")
    train = budget["train_size"] or room
    if budget["batch_size"] > train:
        raise SpecError(f"{where}: batch_size {budget['batch_size']} is larger than the "
                        f"training set ({train} images)")


def _check_learning_rate(where: str, lr) -> None:
    """A fixed learning rate is a finite number > 0 (TOML's ``nan``/``inf`` included)."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise SpecError(f"{where}: Argument `learning_rate` must be a number. "
                        f"Received: learning_rate={lr!r}")
    if not math.isfinite(lr) or lr <= 0:
        raise SpecError(f"{where}: Argument `learning_rate` must be finite and > 0. "
                        f"Received: learning_rate={lr!r}")


def _sweep_scenarios(where: str, sweep: dict) -> dict[str, dict]:
    _unknown(where, sweep, SWEEP_KEYS)
    lo, hi, points = sweep.get("min", 1e-4), sweep.get("max", 1e-1), sweep.get("points", 4)
    if not (isinstance(points, int) and points >= 1):
        raise SpecError(f"{where}: points must be an integer >= 1, got {points!r}")
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0 < lo <= hi
            and math.isfinite(hi)):
        raise SpecError(f"{where}: need 0 < min <= max, got min={lo!r} max={hi!r}")
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
    budget of every scenario."""
    path = study_path(name_or_path)
    raw = _load_toml(path)
    name = raw.get("name", path.stem)
    where = str(path)
    _unknown(where, raw, STUDY_KEYS)
    seeds = raw.get("seeds", 3)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise SpecError(f"{where}: seeds must be an integer >= 1, got {seeds!r}")
    base = dict(BUDGET_DEFAULTS)
    base.update(_check_budget(f"{where} [budget]", raw.get("budget", {})))
    named = {
        key: {**base, **_check_budget(f"{where} [budgets.{key}]", table)}
        for key, table in raw.get("budgets", {}).items()
    }
    families = raw.get("families", {})
    for family, budget_name in families.items():
        if family not in FAMILIES:
            raise SpecError(f"{where} [families]: unknown family {family!r}")
        if budget_name not in named:
            raise SpecError(f"{where} [families]: {family} = {budget_name!r} is not a "
                            f"[budgets.*] table")

    cat = catalogue()
    definitions = copy.deepcopy(cat)
    if "sweep" in raw:
        definitions = _sweep_scenarios(f"{where} [sweep]", raw["sweep"])
    for sname, table in raw.get("scenario", {}).items():
        if not isinstance(table, dict):
            raise SpecError(f"{where} [scenario.{sname}]: must be a table")
        definitions[sname] = {**definitions.get(sname, {}), **table}
    selection = raw.get("scenarios", "all" if "sweep" not in raw else "sweep")
    if selection == "all":
        names = list(cat) + [n for n in raw.get("scenario", {}) if n not in cat]
    elif selection == "sweep":
        names = list(definitions)
    elif isinstance(selection, list) and all(isinstance(n, str) for n in selection):
        names = selection
    else:
        raise SpecError(f"{where}: scenarios must be \"all\" or a list of names, got {selection!r}")
    unknown = [n for n in names if n not in definitions]
    if unknown:
        raise SpecError(f"{where}: unknown scenario {unknown[0]!r}; known: "
                        f"{', '.join(definitions)}")

    scenarios = {}
    for sname in names:
        spec = definitions[sname]
        swhere = f"{where} scenario {sname!r}"
        _unknown(swhere, spec, SCENARIO_KEYS)
        family = spec.get("family", "")
        if family not in FAMILIES:
            raise SpecError(f"{swhere}: family must be one of {', '.join(FAMILIES)}, "
                            f"got {family!r}")
        budget_spec = spec.get("budget", families.get(family))
        if isinstance(budget_spec, str):
            if budget_spec not in named:
                raise SpecError(f"{swhere}: budget {budget_spec!r} is not a [budgets.*] table")
            budget = dict(named[budget_spec])
        elif isinstance(budget_spec, dict):
            budget = {**base, **_check_budget(f"{swhere} budget", budget_spec)}
        else:
            budget = dict(base)
        if overrides:
            budget.update(_check_budget("command line", overrides))
        _validate_budget_values(swhere, budget)
        lr = spec.get("learning_rate")
        if "schedule" not in spec and lr is None:
            raise SpecError(f"{swhere}: needs a learning_rate or a schedule")
        scenarios[sname] = Scenario(
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
        )
    return Study(name=name, description=raw.get("description", ""), seeds=seeds,
                 scenarios=scenarios, path=path)


def resolve_per_total(args: dict, total: int) -> dict:
    """Turn ``<x>_per_total = c`` into ``<x> = c / total`` (e.g. decay = 0.5 / epochs)."""
    out = {}
    for key, value in args.items():
        if key.endswith("_per_total"):
            out[key[: -len("_per_total")]] = value / total
        else:
            out[key] = value
    return out


def schedule_total(scenario: Scenario) -> int:
    unit = (scenario.schedule or {}).get("unit", "step")
    return scenario.budget["epochs"] if unit == "epoch" else (
        scenario.steps_per_epoch * scenario.budget["epochs"])


def build_schedule(scenario: Scenario, finder_bounds: tuple[float, float] | None = None):
    """The scenario's :class:`lrstudy.schedules.Built`, or None for a constant LR.

    Arguments written ``"from_finder"`` take the LR range test's bounds: ``base`` the lower,
    every other argument (``max_lr``) the upper.
    """
    from lrstudy import schedules

    if scenario.schedule is None:
        return None
    spec = resolve_per_total(dict(scenario.schedule), schedule_total(scenario))
    for key, value in spec.items():
        if value == FROM_FINDER:
            if finder_bounds is None:
                finder_bounds = (1e-3, 1e-2)  # placeholder while validating
            spec[key] = finder_bounds[0] if key == "base" else finder_bounds[1]
    return schedules.build(spec, steps_per_epoch=scenario.steps_per_epoch,
                           epochs=scenario.budget["epochs"])


def validate(study: Study, scenarios: list[Scenario] | None = None) -> None:
    """Deep checks that need Keras: models, optimizers, schedules, plateau rules, data sizes.

    Raises :class:`SpecError` with one line naming the study, the scenario and the problem.
    The data and the learning rate are checked first: they need no TensorFlow, so such
    mistakes are reported at once.
    """
    from lrstudy import data

    checked_data = set()
    for sc in scenarios or study.scenarios.values():
        b = sc.budget
        setup = (b["dataset"], b["train_size"], b["val_size"], b["dataset_fallback"])
        if setup not in checked_data:
            try:
                data.check(b["dataset"], train_size=b["train_size"] or None,
                           val_size=b["val_size"])
            except data.DataError as exc:
                if not b["dataset_fallback"]:
                    raise SpecError(f"{study.path} scenario {sc.name!r}: {exc}") from None
                data.check(b["dataset_fallback"], train_size=b["train_size"] or None,
                           val_size=b["val_size"])
            checked_data.add(setup)
        where = f"{study.path} scenario {sc.name!r}"
        if sc.learning_rate is not None:
            _check_learning_rate(where, sc.learning_rate)
        # Keras takes seconds to import: only now, after the checks that do without it.
        from lrstudy import models, optimizers

        try:
            models.check(sc.budget["model"])
            optimizers.check(sc.optimizer, sc.optimizer_args)
            if sc.learning_rate is not None:
                optimizers.check_learning_rate(sc.learning_rate)
            built = build_schedule(sc)
            if sc.plateau is not None:
                if built is not None and built.unit == "step":
                    raise ValueError("ReduceLROnPlateau needs a plain learning rate, but the "
                                     "scenario has a per-step schedule")
                plateau_args(sc)
            if sc.finder is not None:
                from lrstudy import finder

                unknown = set(sc.finder) - FINDER_KEYS
                if unknown:
                    raise ValueError(f"finder has no argument {sorted(unknown)[0]!r}")
                if sc.finder.get("rule", "valley") not in finder.RULES:
                    raise ValueError(f"unknown finder rule {sc.finder['rule']!r}; known: "
                                     f"{', '.join(finder.RULES)}")
        except SpecError:
            raise
        except (ValueError, TypeError) as exc:
            raise SpecError(f"{where}: {exc}") from None


PLATEAU_KEYS = {"monitor", "factor", "patience", "patience_frac", "min_lr", "min_delta",
                "cooldown", "mode"}


def plateau_args(scenario: Scenario) -> dict:
    """ReduceLROnPlateau's keyword arguments, with ``patience_frac`` turned into epochs."""
    args = dict(scenario.plateau)
    extra = set(args) - PLATEAU_KEYS
    if extra:
        raise ValueError(f"plateau has no argument {sorted(extra)[0]!r}; allowed: "
                         f"{', '.join(sorted(PLATEAU_KEYS))}")
    if "patience_frac" in args:
        frac = args.pop("patience_frac")
        if not 0 < frac <= 1:
            raise ValueError(f"plateau patience_frac must be in (0, 1], got {frac}")
        args["patience"] = max(1, round(frac * scenario.budget["epochs"]))
    factor = args.get("factor", 0.1)
    if not 0 < factor < 1:
        raise ValueError(f"plateau factor must be in (0, 1), got {factor}")
    return args

