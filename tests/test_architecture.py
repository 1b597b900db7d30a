"""The package map holds: dependencies point one way, and no module imports itself back.

Every ``import`` and ``from ... import`` in sim/ counts, wherever it stands (inside a
function, under ``if TYPE_CHECKING``): a type-only import is still a dependency a
reader must follow.  docs/architecture.md explains the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SIM = Path(__file__).resolve().parents[1] / "sim"

# A package may import its own modules and packages of a lower rank.  sim/__init__.py
# (the version) may be imported by anyone.
RANK = {
    "cli": 9,
    "app": 8,
    "sweep": 7,
    "peer": 7,
    "analysis": 7,
    "config": 6,
    "engine": 5,
    "workloads": 4,
    "kernel": 3,
    "record": 1,
    "schema": 1,
}
# Third-party or sim packages a package must not import at all, whatever their rank.
FORBIDDEN = {
    "kernel": {"sim.schema", "sim.config", "matplotlib", "pandas", "pyarrow", "yaml", "pydantic"},
    "analysis": {"simpy", "sim.kernel", "sim.engine", "sim.workloads"},
    "record": {"simpy", "sim.kernel"},
    "schema": {"simpy", "sim.kernel"},
    # the command line parses, calls a use case of sim.app and prints: no model, no files
    "cli": {
        "simpy",
        "numpy",
        "pandas",
        "pyarrow",
        "matplotlib",
        "yaml",
        "pydantic",
        "sim.kernel",
        "sim.engine",
        "sim.workloads",
        "sim.config",
        "sim.sweep",
        "sim.record",
        "sim.analysis",
        "sim.peer",
    },
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SIM.rglob("*.py")):
        parts = path.relative_to(SIM.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module name imported anywhere in ``path`` (a ``from X import y`` gives X and X.y)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "sim"


def edges() -> dict[str, set[str]]:
    mods = modules()
    return {name: {t for t in imports(path) if t in mods and t != name} for name, path in mods.items()}


def test_every_package_of_sim_has_a_rank():
    packages = {package_of(m) for m in modules()} - {"sim"}
    assert packages <= set(RANK), packages - set(RANK)


def test_dependencies_point_down_the_layers():
    wrong = []
    for source, targets in edges().items():
        here = package_of(source)
        for target in targets:
            there = package_of(target)
            if there in ("sim", here):
                continue
            if RANK[there] >= RANK[here]:
                wrong.append(f"{source} -> {target}")
    assert not wrong, "imports against the layers (docs/architecture.md):\n" + "\n".join(sorted(wrong))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_keep_out_of_what_they_must_not_touch(package):
    wrong = []
    for name, path in modules().items():
        if package_of(name) != package:
            continue
        for target in imports(path):
            if any(target == f or target.startswith(f + ".") for f in FORBIDDEN[package]):
                wrong.append(f"{name} -> {target}")
    assert not wrong, "\n".join(sorted(wrong))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_sim():
    assert cycles(edges()) == []


def test_no_import_cycle_in_vmalloc():
    """alloc holds a LazyFree (purge) and a SplitStrategy; neither imports alloc back."""
    graph = {m: t for m, t in edges().items() if m.startswith("sim.kernel.mm.vmalloc")}
    assert cycles(graph) == []
