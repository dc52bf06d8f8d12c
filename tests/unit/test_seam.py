"""The pysyncobj seam's start-up check (raftcron/raft/seam.py): it passes on the pinned
pysyncobj, and a pysyncobj that lacks a name, has it in another shape or is another
version is refused with a message naming what is wrong, the version and the fix."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from raftcron import cli
from raftcron.raft import seam


def test_check_passes_on_the_installed_pysyncobj() -> None:
    assert seam.problems() == []
    seam.check()


def _real() -> dict[str, Any]:
    return dict(seam._targets())


def _without(module: types.ModuleType, name: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{k: v for k, v in vars(module).items() if k != name})


def test_a_module_missing_a_name_is_refused_with_the_message() -> None:
    targets = _real()
    targets["pysyncobj.syncobj"] = _without(targets["pysyncobj.syncobj"], "createJournal")
    with pytest.raises(seam.SeamError) as err:
        seam.check(targets)
    text = str(err.value)
    assert "pysyncobj.syncobj.createJournal (missing)" in text
    assert f"pysyncobj {seam.PINNED_VERSION} does not match" in text
    assert f"pysyncobj=={seam.PINNED_VERSION}" in text  # the fix


class TCPTransport:
    """A pysyncobj transport as another release might have it: it never assigns
    ``_nodeAddrToNode`` and has no ``_onTick`` (so the check reads this source)."""

    def __init__(self, syncObj: Any) -> None:
        self._syncObj = syncObj

    def send(self, node: Any, message: Any) -> bool:
        return False


def test_a_missing_instance_attribute_and_method_are_named() -> None:
    targets = _real()
    targets["TCPTransport"] = TCPTransport
    found = seam.problems(targets)
    assert "TCPTransport._nodeAddrToNode (instance attribute never assigned)" in found
    assert "TCPTransport._onTick (missing)" in found
    assert "TCPTransport._syncObj (instance attribute never assigned)" not in found
    assert not any(p.startswith("TCPTransport.send ") for p in found)


def test_another_shape_is_refused() -> None:
    real = seam._targets()["SyncObj"]

    class SyncObj(real):  # type: ignore[misc,valid-type]
        def _SyncObj__getEntries(self, fromIDx: int) -> list[Any]:  # a parameter lost
            return []

        _isLeader = True  # no longer callable

    targets = _real()
    targets["SyncObj"] = SyncObj
    found = seam.problems(targets)
    assert any(p.startswith("SyncObj._SyncObj__getEntries (parameters") for p in found), found
    assert "SyncObj._isLeader (not callable)" in found


def test_another_version_is_refused() -> None:
    with pytest.raises(seam.SeamError) as err:
        seam.check(installed="0.3.18")
    text = str(err.value)
    assert "pysyncobj 0.3.18" in text
    assert f"version 0.3.18 installed, raftcron is pinned to {seam.PINNED_VERSION}" in text
    assert f"pip install 'pysyncobj=={seam.PINNED_VERSION}'" in text


def test_the_agent_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(seam, "PINNED_VERSION", "0.0.1")  # as if another one were installed
    code = cli.main(["agent", "--data-dir", str(tmp_path / "data")])
    assert code == cli.EXIT_RUNTIME
    err = capsys.readouterr().err
    assert "raftcron is pinned to 0.0.1" in err
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_every_touched_name_is_used_by_the_seam() -> None:
    """TOUCHED is the seam's own list: each name in it appears in seam.py (so the list
    does not keep names nothing uses), and each name-mangled one seam.py uses is listed."""
    import re

    source = Path(seam.__file__).read_text(encoding="utf-8")
    body = source.split("TOUCHED: Final", 1)[0] + source.split("class SeamError", 1)[1]
    for need in seam.TOUCHED:
        if need.kind == "global" and need.name in ("createJournal", "monotonicTime", "random"):
            assert f".{need.name}" in body, need
            continue
        assert need.name in body, need
    listed = {n.name for n in seam.TOUCHED}
    for name in set(re.findall(r"_SyncObj__\w+", body)):
        assert name in listed, name


def test_the_pin_is_the_same_everywhere() -> None:
    """pyproject.toml and both lock files pin the version the seam checks."""
    root = Path(__file__).resolve().parents[2]
    pin = f"pysyncobj=={seam.PINNED_VERSION}"
    for name in ("pyproject.toml", "requirements.lock", "requirements-test.lock"):
        text = (root / name).read_text(encoding="utf-8")
        assert pin in text, name
        assert text.count("pysyncobj==") == 1, name
