"""The package's layout rules, checked: layers that import only the layers below them, no
import cycle inside lrstudy (imports inside functions count), comments that describe code
rather than point at files outside the repository or at one machine's timings."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "lrstudy"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def lrstudy_imports(path: Path) -> set[str]:
    """Every lrstudy module ``path`` imports, at any depth of the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lrstudy"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([node.module] if node.module else []))
            if base.startswith("lrstudy"):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
    known = {module_name(p) for p in MODULES}
    return {m for m in found if m in known and m != name}


def test_no_import_cycle_inside_the_package():
    graph = {module_name(p): lrstudy_imports(p) for p in MODULES}
    # a package's __init__ re-exporting its own modules is not a cycle of concepts
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")
                       and not (m.startswith(name + ".") and Path(
                           PACKAGE.parent, *name.split(".")).is_dir())}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


#: The layers, bottom up: a module may import its own package (or, at the bottom, any base
#: module) and the layers below its own, never a layer above or a sibling of its layer.
LAYERS = (
    # the base: argument checks, errors, TensorFlow's quiet import, signals, tasks, user code,
    # the cache directory, seeds and op determinism
    {"lrstudy", "lrstudy.checks", "lrstudy.errors", "lrstudy.tfquiet", "lrstudy.interrupts",
     "lrstudy.tasks", "lrstudy.user_code", "lrstudy.cache", "lrstudy.determinism"},
    {"lrstudy.lr", "lrstudy.data", "lrstudy.models", "lrstudy.tracking"},  # the ingredients
    {"lrstudy.spec"},       # studies as data
    {"lrstudy.training"},   # the fit, its callbacks, the stacks
    {"lrstudy.report"},     # statistics, tables, figures (pure, reading the store)
    {"lrstudy.execution"},  # trials as runs, notebooks, the runner, the report's run
    {"lrstudy.cli_parser"},  # the command line's grammar
    {"lrstudy.cli", "lrstudy.__main__"},
)


def unit(module: str) -> str:
    """The layer unit of a module: its subpackage (``lrstudy.spec``), else itself."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()):
        return ".".join(parts[:2])
    return module


def test_every_module_has_a_layer():
    layered = set().union(*LAYERS)
    assert {unit(module_name(p)) for p in MODULES} <= layered


def test_layers_import_only_the_layers_below():
    rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    wrong = []
    for path in MODULES:
        mine = unit(module_name(path))
        for dep in lrstudy_imports(path):
            theirs = unit(dep)
            if theirs == mine or (rank[theirs] == rank[mine] == 0):
                continue
            if rank[theirs] >= rank[mine] and not (mine == "lrstudy.__main__"
                                                  and theirs == "lrstudy.cli"):
                wrong.append(f"{module_name(path)} -> {dep}")
    assert not wrong, wrong


OUTSIDE = re.compile(r"\.\./shared|shared/(design|protocol|scenarios|style)\.md|\bissue\s+\"")
TIMINGS = re.compile(r"\b\d+(\.\d+)?\s*(ms|s)\s+(here|on this machine)\b")


@pytest.mark.parametrize("path", MODULES + sorted((ROOT / "bench").glob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_comments_describe_the_code(path):
    text = path.read_text()
    assert not OUTSIDE.search(text), OUTSIDE.search(text).group(0)
    assert not TIMINGS.search(text), TIMINGS.search(text).group(0)
