"""Nothing in raftcron but the seam (raftcron/raft/seam.py) imports pysyncobj or touches
its internals: its name-mangled attributes (``_SyncObj__raftLog``, ...), and the private
names of its classes and modules (``_onTick``, ``_connections``, ``createJournal``, ...),
taken from the installed pysyncobj's own source."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pysyncobj

import raftcron
from raftcron.raft import seam

ROOT = Path(raftcron.__file__).parent
SEAM = Path(seam.__file__)

# raftcron's own attributes that happen to share a name with one of pysyncobj's
# (file relative to raftcron/, name): they are never set on a pysyncobj object.
COINCIDENCES = {
    ("executor/spawning.py", "_server"),  # the spawn helper's own server process
}


def _pysyncobj_private_names() -> tuple[set[str], set[str]]:
    """(private names of pysyncobj's classes and modules, its class names): every
    ``_x`` method, ``self._x`` attribute and module-level ``_x`` of its source, and the
    module globals the seam replaces; name-mangled ones as Python stores them."""
    names: set[str] = {"createJournal", "monotonicTime"}
    classes: set[str] = set()
    for path in Path(pysyncobj.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for top in tree.body:
            if isinstance(top, ast.FunctionDef | ast.ClassDef) and top.name.startswith("_"):
                names.add(top.name)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            classes.add(node.name)
            for sub in ast.walk(node):
                name = None
                if isinstance(sub, ast.FunctionDef):
                    name = sub.name
                elif (
                    isinstance(sub, ast.Attribute)
                    and isinstance(sub.value, ast.Name)
                    and sub.value.id == "self"
                ):
                    name = sub.attr
                if name is None or not name.startswith("_") or name.endswith("__"):
                    continue
                if name.startswith("__"):
                    name = f"_{node.name.lstrip('_')}{name}"
                names.add(name)
    return names, classes


PRIVATE, CLASSES = _pysyncobj_private_names()
MANGLED = re.compile("_(?:" + "|".join(sorted(CLASSES)) + r")__\w+")


def offences(source: str, rel: str) -> list[str]:
    """Where ``source`` (the file ``rel`` under raftcron/) imports pysyncobj or touches
    one of its private names."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "pysyncobj":
                    found.append(f"{rel}:{line}: imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pysyncobj":
            found.append(f"{rel}:{line}: imports from {node.module}")
        names: list[str] = []
        if isinstance(node, ast.Attribute):
            names.append(node.attr)
        elif isinstance(node, ast.ClassDef):
            names += [
                b.name for b in node.body if isinstance(b, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names += MANGLED.findall(node.value)  # getattr(obj, "_SyncObj__x")
        elif isinstance(node, ast.Name):
            names += MANGLED.findall(node.id)
        for name in names:
            if MANGLED.fullmatch(name) or (name in PRIVATE and (rel, name) not in COINCIDENCES):
                found.append(f"{rel}:{line}: touches pysyncobj's {name}")
    return found


def test_only_the_seam_touches_pysyncobj() -> None:
    found: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        if path == SEAM:
            continue
        rel = path.relative_to(ROOT).as_posix()
        found += offences(path.read_text(encoding="utf-8"), rel)
    assert not found, "\n".join(found)


def test_the_walk_catches_each_kind_of_access() -> None:
    bad = """
import pysyncobj
from pysyncobj.transport import TCPTransport
class R(Base):
    def _onTick(self, timeToWait): ...
    def _checkCommandsToApply(self): ...
def f(r, t):
    r._SyncObj__raftLog.clear()
    getattr(r, "_SyncObj__raftNextIndex")
    t._connections.clear()
    mod.createJournal = None
"""
    found = offences(bad, "x.py")
    text = "\n".join(found)
    for needle in (
        "imports pysyncobj",
        "imports from pysyncobj.transport",
        "pysyncobj's _onTick",
        "pysyncobj's _checkCommandsToApply",
        "pysyncobj's _SyncObj__raftLog",
        "pysyncobj's _SyncObj__raftNextIndex",
        "pysyncobj's _connections",
        "pysyncobj's createJournal",
    ):
        assert needle in text, (needle, text)
    assert offences("class A:\n    def _tick(self): self._conns = 1\n", "x.py") == []


def test_the_seam_itself_does_touch_them() -> None:
    """A control: the walk finds the seam's own accesses (were they elsewhere)."""
    assert offences(SEAM.read_text(encoding="utf-8"), "raft/seam.py")
