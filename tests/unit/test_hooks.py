"""Test hooks are put into an agent by the harness (raftcron/hooks.py), never read from
the environment by production modules: unset, the agent runs as in production; set, the
node takes the harness's clock, Raft file operations and snapshot interval."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import raftcron
from raftcron import hooks
from raftcron.clock import FakeClock, SystemClock
from raftcron.config import load_config
from raftcron.node import Node
from raftcron.raft.journal import CrashableFileOps
from raftcron.raft.node import RaftSettings

ROOT = Path(raftcron.__file__).parent


@pytest.fixture
def installed() -> Iterator[None]:
    yield
    hooks.install(hooks.AgentHooks())


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(
        '[cluster]\nsecret = "test-secret-0123456789abcdef"\n'
        '[cluster.nodes.a]\nraft = "127.0.0.1:17001"\napi = "127.0.0.1:18001"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
    )
    return path


def test_without_hooks_the_node_runs_as_in_production(tmp_path: Path) -> None:
    node = Node(load_config(_config(tmp_path)), "a")
    assert isinstance(node.clock, SystemClock)
    default = RaftSettings.__dataclass_fields__["compaction_min_entries"].default
    assert node.settings.compaction_min_entries == default


def test_installed_hooks_reach_the_node(tmp_path: Path, installed: None) -> None:
    clock = FakeClock()
    hooks.install(hooks.AgentHooks(clock=clock, compaction_min_entries=20))
    node = Node(load_config(_config(tmp_path)), "a")
    assert node.clock is clock
    assert node.settings.compaction_min_entries == 20


def test_the_replica_writes_through_the_hooked_file_operations(
    tmp_path: Path, installed: None
) -> None:
    from raftcron.raft.node import Machine, _Replica

    fs = CrashableFileOps()
    hooks.install(hooks.AgentHooks(raft_fs=fs))
    settings = RaftSettings(
        self_addr="127.0.0.1:17011", peers=[], password="x" * 20, data_dir=tmp_path / "raft"
    )
    replica = _Replica(settings, Machine(), lambda r: None, auto_tick=False)
    try:
        replica.doTick(0)
        assert replica.journal()._fs is fs  # the journal's file operations are the hook's
    finally:
        replica.destroy()  # autoTick=False: closes the journal and the transport now


def test_no_production_module_reads_a_test_switch_from_the_environment() -> None:
    """The variables the harness uses (tests/cluster/hooked_agent.py) appear in no
    module of raftcron/."""
    switches = ("RAFTCRON_CLOCK_CONTROL", "RAFTCRON_CHAOS_POWER_CUT", "RAFTCRON_COMPACT_ENTRIES")
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not any(s in node.value for s in switches), (path, node.value[:80])


def test_the_hooked_agent_builds_the_hooks_from_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    from raftcron.clock import ControlledClock
    from tests.cluster import hooked_agent

    (tmp_path / "clock").write_text("5")
    monkeypatch.setenv("RAFTCRON_CLOCK_CONTROL", str(tmp_path / "clock"))
    monkeypatch.setenv("RAFTCRON_CHAOS_POWER_CUT", "1")
    monkeypatch.setenv("RAFTCRON_COMPACT_ENTRIES", "50")
    saved = signal.getsignal(signal.SIGUSR2)
    try:
        built = hooked_agent.from_environment()
        assert signal.getsignal(signal.SIGUSR2) not in (saved, signal.SIG_DFL)
    finally:
        signal.signal(signal.SIGUSR2, saved)
    assert isinstance(built.clock, ControlledClock)
    assert built.clock.wall_ms() - SystemClock().wall_ms() >= 4_000  # the file's 5 s
    assert isinstance(built.raft_fs, CrashableFileOps)
    assert built.compaction_min_entries == 50
    for name in ("RAFTCRON_CLOCK_CONTROL", "RAFTCRON_CHAOS_POWER_CUT", "RAFTCRON_COMPACT_ENTRIES"):
        monkeypatch.delenv(name)
    assert hooked_agent.from_environment() == hooks.AgentHooks()
