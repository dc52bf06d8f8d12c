"""No import cycle in raftcron (issue 14): a walk over every module's ``import`` statements
(AST, so imports under ``if TYPE_CHECKING:`` and inside functions count too: a type-only
import is still a dependency of the design, just one Python lets you get away with).

Modules are grouped into units: each subpackage (``raftcron.api``, ``raftcron.core``, ...)
is one unit, each top-level module (``raftcron.node``, ``raftcron.drain``, ...) another.
A cycle between units, or between two modules, fails the test unless it is listed in
``TO_REMOVE``: the cycles the code had when this test was written, each to be deleted
from the list by the change that removes it (the test fails on a listed cycle that no
longer exists, so the list can only shrink).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import raftcron

ROOT = Path(raftcron.__file__).parent

# Today's cycles, to be removed (units; each entry is one strongly connected set).
# (api -> node, drain -> node, reload -> node were removed with the API's port,
# raftcron/api/port.py, and drain's and reload's host Protocols.)
TO_REMOVE: tuple[frozenset[str], ...] = (
    # hooks.py names raft/journal.py's FileOps for type checking; raft imports hooks
    frozenset({"raftcron.hooks", "raftcron.raft"}),
)
# Cycles between two modules of one unit, to be removed the same way.
TO_REMOVE_MODULES: tuple[frozenset[str], ...] = (
    # the seam installs unpickle's loaders; unpickle imports the seam inside functions
    frozenset({"raftcron.raft.seam", "raftcron.raft.unpickle"}),
)


def modules(root: Path, package: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The modules of ``known`` that ``name`` (at ``path``) imports, anywhere in its body."""
    known = set(known)
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # `from pkg import sub` imports the submodule; `from mod import name` the module
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        out.update(t for t in targets if t in known and t != name)
    return out


def unit_of(name: str, root: Path) -> str:
    parts = name.split(".")
    if len(parts) >= 2 and (root / parts[1]).is_dir():
        return ".".join(parts[:2])
    return name


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected sets of more than one vertex (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    vertices = sorted(set(edges) | {w for ws in edges.values() for w in ws})
    for start in vertices:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.add(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def graphs(root: Path, package: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module graph, unit graph) of the package at ``root``."""
    mods = modules(root, package)
    by_module = {m: imports(m, p, mods) for m, p in mods.items()}
    by_unit: dict[str, set[str]] = {}
    for m, targets in by_module.items():
        u = unit_of(m, root)
        by_unit.setdefault(u, set()).update(
            unit_of(t, root) for t in targets if unit_of(t, root) != u
        )
    return by_module, by_unit


def describe(cycle: frozenset[str], edges: dict[str, set[str]]) -> str:
    return "; ".join(f"{v} -> {', '.join(sorted(edges[v] & cycle))}" for v in sorted(cycle))


def test_no_import_cycle_between_units_but_the_ones_to_remove() -> None:
    _, by_unit = graphs(ROOT, "raftcron")
    found = cycles(by_unit)
    new = [describe(cyc, by_unit) for cyc in found if cyc not in TO_REMOVE]
    assert not new, f"import cycle(s) between raftcron's packages/modules: {new}"
    gone = [sorted(cyc) for cyc in TO_REMOVE if cyc not in found]
    assert not gone, f"cycle(s) removed: delete them from TO_REMOVE: {gone}"


def test_no_import_cycle_between_modules_outside_the_ones_to_remove() -> None:
    by_module, _ = graphs(ROOT, "raftcron")
    allowed = set().union(*TO_REMOVE) if TO_REMOVE else set()
    found = cycles(by_module)
    new = [
        describe(cyc, by_module)
        for cyc in found
        if cyc not in TO_REMOVE_MODULES
        and not (
            len({unit_of(m, ROOT) for m in cyc}) > 1 and {unit_of(m, ROOT) for m in cyc} <= allowed
        )
    ]
    assert not new, f"import cycle(s) between raftcron's modules: {new}"
    gone = [sorted(cyc) for cyc in TO_REMOVE_MODULES if cyc not in found]
    assert not gone, f"cycle(s) removed: delete them from TO_REMOVE_MODULES: {gone}"


def test_api_and_node_are_not_in_one_cycle_unless_listed() -> None:
    _, by_unit = graphs(ROOT, "raftcron")
    joint = [c for c in cycles(by_unit) if {"raftcron.api", "raftcron.node"} <= c]
    listed = [c for c in TO_REMOVE if {"raftcron.api", "raftcron.node"} <= c]
    assert joint == listed


def test_the_walk_finds_a_type_checking_only_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub.a import X\n"
    )
    (pkg / "c.py").write_text("def f():\n    from pkg.sub import a\n")
    by_module, by_unit = graphs(pkg, "pkg")
    assert cycles(by_module) == [frozenset({"pkg.sub.a", "pkg.b"})]
    assert cycles(by_unit) == [frozenset({"pkg.sub", "pkg.b"})]
    assert by_unit["pkg.c"] == {"pkg.sub"}  # a function-level import counts too
