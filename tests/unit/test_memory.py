"""What keeps an agent's memory down with a large cluster file (100,000 jobs; see
docs/notes/2026-11-28-bench-profiles.md): the file's specs are kept packed, a leader
unpacks them only for its sync, the Raft log is compacted once it holds many bytes, and
freed memory is handed back."""

from __future__ import annotations

import asyncio
import gc
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from raftcron import memory
from raftcron.clock import FakeClock
from raftcron.config import load_config
from raftcron.core import commands as c
from raftcron.core import jobfields
from raftcron.core.model import JobSpec
from raftcron.core.state import Ok, Result, State
from raftcron.raft import node as raft_node
from raftcron.raft.journal import DurableJournal
from raftcron.raft.node import Machine
from raftcron.scheduler import leader as leader_mod
from raftcron.scheduler.leader import Leader, LeaseTracker

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000_000


def _example(tmp_path: Path) -> Path:
    """The repository's example cluster file (many kinds of job table), loadable here."""
    shutil.copy(ROOT / "cluster.example.toml", tmp_path / "cluster.example.toml")
    (tmp_path / "raftcron-data").mkdir()
    (tmp_path / "raftcron-data" / "secret").write_text("test-secret-0123456789abcdef\n")
    (tmp_path / "raftcron-data" / "secret").chmod(0o600)
    return tmp_path / "cluster.example.toml"


def _file(tmp_path: Path, jobs: list[str]) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(
        '[cluster]\nsecret = "test-secret-0123456789abcdef"\n'
        '[cluster.nodes.a]\nraft = "127.0.0.1:17001"\napi = "127.0.0.1:18001"\n'
        f'data_dir = "{tmp_path / "data"}"\n' + "\n".join(jobs) + "\n"
    )
    return path


def _job(name: str, schedule: str = "0 0 1 1 *", **extra: str) -> str:
    lines = [f'[[jobs]]\nname = "{name}"\nschedule = "{schedule}"\ncommand = ["true"]']
    lines += [f'{k} = "{v}"' for k, v in extra.items()]
    return "\n".join(lines)


def _specs(n: int, schedule: str = "0 0 1 1 *") -> tuple[JobSpec, ...]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return load_config(_file(Path(tmp), [_job(f"j{i:04d}", schedule) for i in range(n)])).jobs


# --------------------------------------------------------------------------- packed specs


def test_packed_specs_unpack_to_equal_specs_in_order(tmp_path: Path) -> None:
    cfg = load_config(_example(tmp_path))
    assert cfg.jobs, "the example file has jobs"
    packed = c.PackedSpecs.pack(cfg.jobs)
    assert len(packed) == len(cfg.jobs)
    assert packed.unpack() == cfg.jobs
    assert c.PackedSpecs.pack(()).unpack() == () and len(c.PackedSpecs()) == 0
    assert c.PackedSpecs().unpack() == ()


def test_packed_specs_are_small() -> None:
    specs = _specs(2000)
    packed = c.PackedSpecs.pack(specs)
    assert packed.unpack() == specs
    assert len(packed.blob) < 40 * len(specs)  # a generated file packs to a few bytes a job


def test_a_node_keeps_no_parsed_specs_of_the_file(tmp_path: Path) -> None:
    from raftcron.node import Node

    def alive() -> int:
        gc.collect()
        return sum(isinstance(o, JobSpec) for o in gc.get_objects())

    before = alive()
    cfg = load_config(_file(tmp_path, [_job(f"j{i}") for i in range(50)]))
    parsed = cfg.jobs
    assert alive() >= before + 50
    node = Node(cfg, "a")
    assert node.config.jobs == ()
    assert node.config_jobs.unpack() == parsed
    assert node.config.cluster == cfg.cluster and node.config.api == cfg.api
    del cfg, parsed
    assert alive() == before, "the parsed specs outlived the Config the node was given"


# --------------------------------------------------------------------------- leader sync


class _Raft:
    """Commits every proposal at once through a real Machine (encode -> apply_bytes)."""

    def __init__(self, state: State | None = None) -> None:
        self.machine = Machine(state)
        self.proposed: list[c.Command] = []

    async def propose(self, cmd: c.Command, timeout: float) -> Result:  # noqa: ASYNC109
        self.proposed.append(cmd)
        return self.machine.apply(c.encode(cmd))


def _lead(raft: _Raft, config_jobs: Any) -> Leader:
    clock = FakeClock()
    return Leader(
        node="b",
        term=2,
        raft=raft,  # type: ignore[arg-type]
        clock=clock,
        leases=LeaseTracker(clock),
        config_jobs=config_jobs,
        history=10,
        live_nodes=list,
        election_timeout=0.9,
    )


def _jobs(raft: _Raft) -> dict[str, tuple[JobSpec, str]]:
    return raft.machine.read(lambda s: {n: (j.spec, j.source) for n, j in s.jobs.items()})


@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
def test_a_new_leader_reconciles_the_file_from_its_packed_specs(
    large: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that never led (it only ever held the packed specs) takes over a state
    synced from an older file, and an API job: it puts what changed, adds what is new,
    deletes what the file dropped, leaves the API job alone."""
    if large:  # the unpack-off-the-loop and trim path, without 5,000 jobs
        monkeypatch.setattr(leader_mod, "LARGE_CONFIG", 2)
        trims: list[int] = []
        monkeypatch.setattr(memory, "trim", lambda: trims.append(1) or True)
    old = _specs(4)
    state = State()
    state.apply(c.SyncConfig(at_ms=T0, specs=old, history=10))
    api = JobSpec(name="api-job", schedule="0 0 1 1 *", command=("true",))
    state.apply(c.PutJob(at_ms=T0, spec=api, source="api"))
    new_file = (*_specs(2), *_specs(6, schedule="5 0 1 1 *")[2:])  # j0, j1 same; j2-j5 changed
    new_file = new_file[:-1]  # ... and j5 is gone from the file
    raft = _Raft(state)
    asyncio.run(_lead(raft, c.PackedSpecs.pack(new_file))._sync_config())
    jobs = _jobs(raft)
    assert {n: s for n, (s, src) in jobs.items() if src == "config"} == {
        s.name: s for s in new_file
    }
    assert jobs["api-job"] == (api, "api")
    assert "j0005" not in jobs
    puts = [s.name for cmd in raft.proposed if isinstance(cmd, c.SyncConfig) for s in cmd.specs]
    assert puts == ["j0002", "j0003", "j0004"]  # only what differed
    if large:
        assert trims == [1]
    # the next leader finds nothing to do (what was committed equals the packed file)
    again = _Raft(raft.machine.read(lambda s: State.restore(s.capture()())))
    asyncio.run(_lead(again, c.PackedSpecs.pack(new_file))._sync_config())
    assert [cmd.specs for cmd in again.proposed if isinstance(cmd, c.SyncConfig)] == [()]


def test_a_leader_still_takes_a_plain_sequence_of_specs() -> None:
    specs = _specs(3)
    raft = _Raft()
    asyncio.run(_lead(raft, specs)._sync_config())
    assert {n: s for n, (s, _) in _jobs(raft).items()} == {s.name: s for s in specs}


def test_the_sync_frees_each_batch_once_proposed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leader_mod, "CONFIG_SYNC_BATCH", 2)
    specs = _specs(5)
    raft = _Raft()
    puts, gone = list(specs), ["x"]
    asyncio.run(_lead(raft, ())._put_config(puts, gone))
    assert puts == [] and gone == []
    assert [len(cmd.specs) for cmd in raft.proposed if isinstance(cmd, c.SyncConfig)] == [2, 2, 1]


# --------------------------------------------------------------------------- raft log


def test_journal_counts_the_bytes_it_holds(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.journal")
    j = DurableJournal(path)
    for i in range(1, 6):
        j.add(b"x" * (100 * i), i, 1)
    assert j.command_bytes == 1500
    j.deleteEntriesFrom(4)  # list positions >= 4: entry 5
    assert j.command_bytes == 1000
    j.deleteEntriesTo(1)  # list positions < 1: entry 1
    assert j.command_bytes == 900
    j.sync()
    j._destroy()
    assert DurableJournal(path).command_bytes == 900
    j2 = DurableJournal(path)
    j2.clear()
    assert j2.command_bytes == 0


class _Store:
    serializing = False


def _replica(journal: DurableJournal, limit: int) -> Any:
    """A _Replica with only what the size rule reads (no SyncObj behind it)."""
    r = object.__new__(raft_node._Replica)
    r._SyncObj__raftLog = journal
    r._SyncObj__forceLogCompaction = False
    r._rc_store = _Store()
    r._rc_max_log_bytes = limit
    r._rc_log_bytes = 0
    r._rc_log_changed = 0.0
    r._rc_forced = -raft_node.FORCED_COMPACTION_EVERY_S
    return r


def test_a_large_settled_raft_log_is_compacted(tmp_path: Path) -> None:
    j = DurableJournal(str(tmp_path / "raft.journal"))
    r = _replica(j, limit=1000)

    def forced() -> bool:
        was = r._SyncObj__forceLogCompaction
        r._SyncObj__forceLogCompaction = False
        return bool(was)

    j.add(b"x" * 900, 1, 1)
    r._rc_compact_if_large()
    assert not forced()  # below the limit
    j.add(b"x" * 200, 2, 1)
    r._rc_compact_if_large()
    assert not forced()  # over it, but still growing (a sync in progress)
    r._rc_log_changed -= raft_node.LOG_SETTLE_S  # ... and then nothing for a while
    r._rc_compact_if_large()
    assert forced()
    r._rc_log_changed -= raft_node.LOG_SETTLE_S
    r._rc_compact_if_large()
    assert not forced()  # not again so soon
    r._rc_forced -= raft_node.FORCED_COMPACTION_EVERY_S
    r._rc_store.serializing = True
    r._rc_compact_if_large()
    assert not forced()  # a snapshot is being written
    r._rc_store.serializing = False
    j.add(b"x" * 3000, 3, 1)
    r._rc_compact_if_large()
    assert forced()  # four times the limit: at once, growing or not


# --------------------------------------------------------------------------- trim


def test_trim_and_release_never_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(memory.trim(), bool)
    assert isinstance(memory.release(), bool)

    def broken(pad: int) -> int:
        raise OSError("no")

    monkeypatch.setattr(memory, "_loaded", True)
    monkeypatch.setattr(memory, "_malloc_trim", broken)
    assert memory.trim() is False
    monkeypatch.setattr(memory, "_malloc_trim", None)
    assert memory.trim() is False


def test_trim_runs_on_glibc() -> None:
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    assert memory.trim() is True


def test_snapshot_restore_results_are_unchanged_by_trimming() -> None:
    """(Trimming only returns free pages: a state captured and restored is the same.)"""
    st = State()
    for s in _specs(20):
        st.apply(c.PutJob(at_ms=T0, spec=s, source="api"))
    blob = st.capture()()
    memory.trim()
    assert State.restore(blob).capture()() == blob
    assert isinstance(st.apply(c.Barrier(at_ms=T0, node="a", nonce="n")), Ok)


# --------------------------------------------------------------------------- sharing


def test_decoded_specs_share_equal_ints_and_string_tuples() -> None:
    base = JobSpec(
        name="a",
        schedule="0 0 1 1 *",
        command=("sh", "-c", "x"),
        lease_ms=60_000,
        catchup_ms=600_000,
        timeout_ms=3_600_000,
        tags=(("bench", "nowhere"),),
        env=(("K", "v"),),
    )
    a, b = (c.spec_from_wire(c.spec_to_wire(replace(base, name=n))) for n in ("a", "b"))
    assert a == replace(base, name="a") and b == replace(base, name="b")
    for field in ("command", "tags", "env", "lease_ms", "catchup_ms", "timeout_ms"):
        assert getattr(a, field) is getattr(b, field), field
    put = c.decode(c.encode(c.PutJob(at_ms=T0, spec=a, source="api")))
    again = c.decode(c.encode(c.PutJob(at_ms=T0, spec=b, source="api")))
    assert isinstance(put, c.PutJob) and isinstance(again, c.PutJob)
    assert put.source is again.source


def test_the_sharing_tables_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # (the spec codec and its sharing tables live in the job field table's module)
    monkeypatch.setattr(jobfields, "_shared_ints", {})
    monkeypatch.setattr(jobfields, "_shared_strs", {})
    for i in range(jobfields._SHARED_MAX + 100):
        assert jobfields.iint(1000 + i) == 1000 + i
        assert jobfields.istrs([f"cmd-{i}"]) == (f"cmd-{i}",)
    assert len(jobfields._shared_ints) == len(jobfields._shared_strs) == jobfields._SHARED_MAX
    assert jobfields.iint(True) == 1 and type(jobfields.iint(True)) is int  # never a bool
