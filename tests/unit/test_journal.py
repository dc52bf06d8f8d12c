"""DurableJournal, CrashableFileOps, SnapshotStore and their use by a real pysyncobj SyncObj."""

from __future__ import annotations

import errno
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pysyncobj.syncobj as psyncobj
import pytest
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.journal import MemoryJournal
from pysyncobj.node import TCPNode

from raftcron.raft.journal import (
    CrashableFileOps,
    DurableJournal,
    FileOps,
    JournalError,
    SnapshotError,
    SnapshotStore,
    decode_snapshot,
    encode_snapshot,
    install_journal_factory,
    write_file_durably,
)
from tests.helpers import free_port

LOGGER = "raftcron.raft.journal"


def _wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def _entries(n: int, start: int = 1, term: int = 1) -> list[tuple[bytes, int, int]]:
    return [(f"cmd-{i}".encode() * (i % 4 + 1), i, term) for i in range(start, start + n)]


def _fill(j: DurableJournal, entries: list[tuple[bytes, int, int]]) -> None:
    for e in entries:
        j.add(*e)


@pytest.fixture
def jpath(tmp_path: Path) -> str:
    return str(tmp_path / "raft.journal")


# --------------------------------------------------------------------------------------------
# DurableJournal on real files


def test_fresh_journal_defaults(jpath: str) -> None:
    j = DurableJournal(jpath)
    try:
        assert len(j) == 0
        assert j[:] == []
        assert j.getCurrentTerm() == 0
        assert j.getVotedForNodeId() is None
        assert j.getRaftCommitIndex() == 1
        assert os.path.getsize(jpath) == 16  # just the header
    finally:
        j.close()


def test_round_trip_and_reopen(jpath: str) -> None:
    entries = _entries(6)
    j = DurableJournal(jpath)
    _fill(j, entries)
    j.setCurrentTerm(3, "127.0.0.1:7001")
    j.setRaftCommitIndex(5)
    j.onOneSecondTimer()
    j.sync()
    assert not j.dirty
    j.close()
    j.close()  # idempotent
    j.sync()  # harmless after close

    j2 = DurableJournal(jpath)
    try:
        assert j2[:] == entries
        assert all(isinstance(e, tuple) and isinstance(e[0], bytes) for e in j2[:])
        assert j2.getCurrentTerm() == 3
        assert j2.getVotedForNodeId() == "127.0.0.1:7001"
        assert j2.getRaftCommitIndex() == 5
        # indexing and slicing like a list
        assert j2[0] == entries[0]
        assert j2[-1] == entries[-1]
        assert j2[2:] == entries[2:]
        assert j2[1:3] == entries[1:3]
        assert j2[4:100] == entries[4:]
        assert j2[10:] == []
        assert len(j2) == 6
        with pytest.raises(IndexError):
            j2[6]
    finally:
        j2.close()


def test_add_does_not_fsync_sync_does_once(jpath: str) -> None:
    j = DurableJournal(jpath)
    try:
        base = j.fsync_count
        _fill(j, _entries(5))
        assert j.fsync_count == base
        assert j.dirty
        j.sync()
        assert j.fsync_count == base + 1
        j.sync()  # nothing pending: no fsync
        assert j.fsync_count == base + 1
    finally:
        j.close()


def test_commit_index_is_lazy_term_is_not(jpath: str) -> None:
    j = DurableJournal(jpath)
    _fill(j, _entries(4))
    j.sync()
    j.setRaftCommitIndex(3)
    j.setCurrentTerm(7, None)
    # "crash": reopen without destroy / timer (the fd leak is closed below)
    j2 = DurableJournal(jpath)
    assert j2.getCurrentTerm() == 7
    assert j2.getRaftCommitIndex() == 1
    j2.close()
    j.onOneSecondTimer()
    j3 = DurableJournal(jpath)
    assert j3.getRaftCommitIndex() == 3
    j3.close()
    j.close()


def test_set_current_term_unchanged_writes_nothing(jpath: str) -> None:
    j = DurableJournal(jpath)
    try:
        j.setCurrentTerm(2, "a:1")
        count = j.fsync_count
        j.setCurrentTerm(2, "a:1")
        assert j.fsync_count == count
        j.setCurrentTerm(2, None)
        assert j.fsync_count > count
        assert (j.getCurrentTerm(), j.getVotedForNodeId()) == (2, None)
    finally:
        j.close()


def test_commit_index_clamped_to_last_entry(jpath: str) -> None:
    j = DurableJournal(jpath)
    _fill(j, _entries(3))
    j.setRaftCommitIndex(10)
    j.close()
    j2 = DurableJournal(jpath)
    try:
        assert j2.getRaftCommitIndex() == 3
    finally:
        j2.close()


def test_delete_entries_from(jpath: str) -> None:
    entries = _entries(5)
    j = DurableJournal(jpath)
    _fill(j, entries)
    j.deleteEntriesFrom(10)  # past the end: nothing
    assert j[:] == entries
    j.deleteEntriesFrom(3)
    assert j[:] == entries[:3]
    assert not j.dirty  # truncation fsyncs
    j.add(b"new", 4, 2)
    j.deleteEntriesFrom(4)  # exactly the end: nothing
    assert len(j) == 4
    j.close()
    j2 = DurableJournal(jpath)
    try:
        assert j2[:] == [*entries[:3], (b"new", 4, 2)]
        j2.deleteEntriesFrom(0)
        assert len(j2) == 0
        assert os.path.getsize(jpath) == 16
    finally:
        j2.close()


def test_delete_entries_to_and_clear(jpath: str) -> None:
    entries = _entries(6, start=10)
    j = DurableJournal(jpath)
    _fill(j, entries)
    j.deleteEntriesTo(0)  # nothing
    assert j[:] == entries
    j.deleteEntriesTo(4)
    assert j[:] == entries[4:]
    assert not os.path.exists(jpath + ".tmp")
    j.add(b"after", 16, 1)
    j.close()
    j2 = DurableJournal(jpath)
    assert j2[:] == [*entries[4:], (b"after", 16, 1)]
    j2.clear()
    assert len(j2) == 0
    j2.add(b"x", 100, 5)
    j2.add(b"y", 101, 5)
    j2.close()
    j3 = DurableJournal(jpath)
    try:
        assert j3[:] == [(b"x", 100, 5), (b"y", 101, 5)]
    finally:
        j3.close()


@pytest.mark.parametrize("cut", [1, 5, 23, 24, 25])
def test_torn_tail_is_truncated(jpath: str, cut: int, caplog: pytest.LogCaptureFixture) -> None:
    entries = _entries(3)
    j = DurableJournal(jpath)
    _fill(j, entries)
    good_end = j._offsets[2]
    j.close()
    full = os.path.getsize(jpath)
    with open(jpath, "r+b") as f:
        f.truncate(full - cut)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    j2 = DurableJournal(jpath)
    try:
        assert j2[:] == entries[:2]
        assert os.path.getsize(jpath) == good_end
        assert any(
            jpath in r.getMessage() and f"offset {good_end}" in r.getMessage()
            for r in caplog.records
        )
        j2.add(b"again", 3, 2)
        j2.sync()
    finally:
        j2.close()
    j3 = DurableJournal(jpath)
    try:
        assert j3[:] == [*entries[:2], (b"again", 3, 2)]
    finally:
        j3.close()


def test_garbage_tail_is_truncated(jpath: str, caplog: pytest.LogCaptureFixture) -> None:
    entries = _entries(3)
    j = DurableJournal(jpath)
    _fill(j, entries)
    j.close()
    size = os.path.getsize(jpath)
    with open(jpath, "ab") as f:
        f.write(b"\x07\x00\x00\x00garbage-garbage-garbage-garbage")
    caplog.set_level(logging.WARNING, logger=LOGGER)
    j2 = DurableJournal(jpath)
    try:
        assert j2[:] == entries
        assert os.path.getsize(jpath) == size
        assert any(f"offset {size}" in r.getMessage() for r in caplog.records)
    finally:
        j2.close()


def test_zero_filled_tail_is_truncated(jpath: str) -> None:
    entries = _entries(2)
    j = DurableJournal(jpath)
    _fill(j, entries)
    j.close()
    size = os.path.getsize(jpath)
    with open(jpath, "ab") as f:
        f.write(b"\0" * 4096)  # what an extended-but-unwritten tail can look like
    j2 = DurableJournal(jpath)
    try:
        assert j2[:] == entries
        assert os.path.getsize(jpath) == size
    finally:
        j2.close()


def test_crc_corruption_detected(jpath: str, caplog: pytest.LogCaptureFixture) -> None:
    entries = _entries(3)
    j = DurableJournal(jpath)
    _fill(j, entries)
    offsets = list(j._offsets)
    j.close()
    with open(jpath, "r+b") as f:
        f.seek(offsets[1] + 24)  # first command byte of the second record
        byte = f.read(1)
        f.seek(offsets[1] + 24)
        f.write(bytes([byte[0] ^ 0x40]))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    j2 = DurableJournal(jpath)
    try:
        assert j2[:] == entries[:1]
        assert os.path.getsize(jpath) == offsets[1]
        assert any("checksum" in r.getMessage() for r in caplog.records)
    finally:
        j2.close()


def test_not_a_journal_is_refused(jpath: str) -> None:
    with open(jpath, "wb") as f:
        f.write(b"PYSYNCOBJ" + b"\0" * 40)
    with pytest.raises(JournalError, match="not a raftcron journal"):
        DurableJournal(jpath)


def test_unreadable_meta_is_refused(jpath: str) -> None:
    j = DurableJournal(jpath)
    j.close()
    with open(jpath + ".meta", "wb") as f:
        f.write(b"\xc1\xc1")
    with pytest.raises(JournalError, match="meta"):
        DurableJournal(jpath)


def test_meta_is_msgpack(jpath: str) -> None:
    j = DurableJournal(jpath)
    try:
        j.setCurrentTerm(4, "n:1")
        with open(jpath + ".meta", "rb") as f:
            meta = msgpack.unpackb(f.read())
        assert meta == {"v": 1, "term": 4, "voted_for": "n:1", "commit": 1}
    finally:
        j.close()


class _FlakyFileOps(FileOps):
    """Fails the next write halfway (ENOSPC) or the next fsync (EIO) when asked to."""

    def __init__(self) -> None:
        self.fail_write = False
        self.fail_fsync = False

    def write(self, fd: int, data: bytes) -> None:
        if self.fail_write:
            self.fail_write = False
            super().write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(fd, data)

    def fsync(self, fd: int, *, data_only: bool = False) -> None:
        if self.fail_fsync:
            raise OSError(errno.EIO, "Input/output error")
        super().fsync(fd, data_only=data_only)


def test_failed_write_leaves_no_partial_record(jpath: str) -> None:
    fs = _FlakyFileOps()
    entries = _entries(4)
    j = DurableJournal(jpath, fs)
    _fill(j, entries[:2])
    fs.fail_write = True
    with pytest.raises(JournalError, match="No space"):
        j.add(*entries[2])
    assert j[:] == entries[:2]
    # A write error fails the journal at once (issue 12, finding 3: it used to re-raise
    # and go on, so a node on a full disk stayed up, healthy, applying nothing).
    assert isinstance(j.failed, OSError)
    fs.fail_write = False
    with pytest.raises(JournalError, match="failed earlier"):
        j.add(*entries[2])
    j.close()
    j2 = DurableJournal(jpath)
    try:
        assert j2[:] == entries[:2]  # and no partial record was left behind
    finally:
        j2.close()


def test_failed_fsync_poisons_the_journal(jpath: str) -> None:
    fs = _FlakyFileOps()
    j = DurableJournal(jpath, fs)
    _fill(j, _entries(2))
    fs.fail_fsync = True
    with pytest.raises(JournalError):
        j.sync()
    fs.fail_fsync = False
    assert isinstance(j.failed, OSError)
    with pytest.raises(JournalError):
        j.sync()  # never pretend a later fsync made the lost pages durable
    with pytest.raises(JournalError):
        j.add(b"x", 3, 1)
    with pytest.raises(JournalError):
        j.setCurrentTerm(5, "a:1")
    j.close()


# --------------------------------------------------------------------------------------------
# CrashableFileOps


def test_crash_drops_unsynced_entries(jpath: str) -> None:
    fs = CrashableFileOps()
    entries = _entries(5)
    j = DurableJournal(jpath, fs)
    _fill(j, entries[:3])
    j.sync()
    _fill(j, entries[3:])
    fs.crash()
    with pytest.raises(JournalError):
        j.add(b"dead process", 6, 1)  # pre-crash descriptors are dead (EBADF), never reused
    assert isinstance(j.failed, OSError)
    j2 = DurableJournal(jpath, fs)
    try:
        assert j2[:] == entries[:3]
    finally:
        j2.close()


def test_crash_keeps_synced_entries_and_term(jpath: str) -> None:
    fs = CrashableFileOps()
    j = DurableJournal(jpath, fs)
    _fill(j, _entries(2))
    j.sync()
    j.setCurrentTerm(9, "127.0.0.1:1")
    fs.crash()  # immediately after the call
    j2 = DurableJournal(jpath, fs)
    try:
        assert j2[:] == _entries(2)
        assert j2.getCurrentTerm() == 9
        assert j2.getVotedForNodeId() == "127.0.0.1:1"
    finally:
        j2.close()


def test_crash_loses_lazy_commit_index_but_not_timer_written(jpath: str) -> None:
    fs = CrashableFileOps()
    j = DurableJournal(jpath, fs)
    _fill(j, _entries(4))
    j.setRaftCommitIndex(3)
    j.onOneSecondTimer()  # syncs the journal first, then the meta
    j.setRaftCommitIndex(4)
    fs.crash()
    j2 = DurableJournal(jpath, fs)
    try:
        assert len(j2) == 4
        assert j2.getRaftCommitIndex() == 3
    finally:
        j2.close()


def test_crash_after_compaction_and_truncation(jpath: str) -> None:
    fs = CrashableFileOps()
    entries = _entries(8)
    j = DurableJournal(jpath, fs)
    _fill(j, entries)
    j.deleteEntriesTo(3)  # durable rewrite
    j.deleteEntriesFrom(4)  # durable truncate: keeps entries[3:7]
    j.add(b"unsynced", 8, 2)
    fs.crash()
    j2 = DurableJournal(jpath, fs)
    try:
        assert j2[:] == entries[3:7]
    finally:
        j2.close()


def test_crash_with_torn_tails(tmp_path: Path) -> None:
    for seed in range(30):
        path = str(tmp_path / f"j{seed}")
        fs = CrashableFileOps()
        entries = _entries(6)
        j = DurableJournal(path, fs)
        _fill(j, entries[:2])
        j.sync()
        _fill(j, entries[2:])
        fs.crash(random.Random(seed))
        j2 = DurableJournal(path, fs)
        try:
            n = len(j2)
            assert 2 <= n <= 6
            assert j2[:] == entries[:n]
        finally:
            j2.close()


def test_crash_of_fresh_journal_and_before_creation(tmp_path: Path) -> None:
    fs = CrashableFileOps()
    path = str(tmp_path / "j")
    j = DurableJournal(path, fs)
    j.add(b"a", 1, 0)
    fs.crash()
    assert os.path.exists(path)  # the header was written durably
    j2 = DurableJournal(path, fs)
    try:
        assert len(j2) == 0
    finally:
        j2.close()


def test_crashable_undoes_unsynced_rename_and_creation(tmp_path: Path) -> None:
    fs = CrashableFileOps()
    target = str(tmp_path / "file")
    write_file_durably(fs, target, b"old")
    assert fs.durable_content(target) == b"old"
    # new content fsynced, renamed over, but the directory never fsynced
    fd = fs.open(target + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    fs.write(fd, b"new")
    fs.fsync(fd)
    fs.close(fd)
    fs.rename(target + ".new", target)
    # a file created and written but never fsynced, name never durable
    fd = fs.open(str(tmp_path / "orphan"), os.O_WRONLY | os.O_CREAT)
    fs.write(fd, b"zzz")
    fs.close(fd)
    assert fs.durable_content(str(tmp_path / "orphan")) is None
    fs.crash()
    with open(target, "rb") as f:
        assert f.read() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_crashable_keeps_dir_synced_rename_and_restores_removed(tmp_path: Path) -> None:
    fs = CrashableFileOps()
    a = str(tmp_path / "a")
    write_file_durably(fs, a, b"A")
    write_file_durably(fs, a, b"A2")
    fs.remove(a)  # removal never made durable
    fs.crash()
    with open(a, "rb") as f:
        assert f.read() == b"A2"
    assert fs.crashes == 1


def test_crashable_treats_preexisting_files_as_durable(tmp_path: Path) -> None:
    (tmp_path / "pre").write_bytes(b"before")
    fs = CrashableFileOps()
    fd = fs.open(str(tmp_path / "pre"), os.O_WRONLY | os.O_APPEND)
    fs.write(fd, b"-more")
    fs.close(fd)
    fs.crash()
    assert (tmp_path / "pre").read_bytes() == b"before"


def test_crashable_real_fsync_mode(tmp_path: Path) -> None:
    fs = CrashableFileOps(real_fsync=True)
    j = DurableJournal(str(tmp_path / "j"), fs)
    _fill(j, _entries(2))
    j.sync()
    j.close()
    assert fs.durable_content(str(tmp_path / "j")) == (tmp_path / "j").read_bytes()


# --------------------------------------------------------------------------------------------
# install_journal_factory


def test_install_journal_factory_is_idempotent(tmp_path: Path) -> None:
    install_journal_factory()
    first = psyncobj.createJournal
    install_journal_factory()
    assert psyncobj.createJournal is first
    assert isinstance(psyncobj.createJournal(None), MemoryJournal)
    j = psyncobj.createJournal(str(tmp_path / "j"))
    try:
        assert isinstance(j, DurableJournal)
    finally:
        j.close()


# --------------------------------------------------------------------------------------------
# SnapshotStore without pysyncobj


class _State:
    def __init__(
        self, items: list[bytes] | None = None, gate: threading.Event | None = None
    ) -> None:
        self.items = list(items or [])
        self.gate = gate  # when set, a snapshot's bytes are produced only once it is set
        self.restores: list[list[bytes]] = []
        self.capture_threads: list[str] = []

    def capture(self) -> Callable[[], bytes]:
        self.capture_threads.append(threading.current_thread().name)
        frozen = list(self.items)
        gate = self.gate

        def produce() -> bytes:
            if gate is not None:
                assert gate.wait(30), "the test never opened the snapshot's gate"
            return msgpack.packb(frozen)

        return produce

    def restore(self, data: bytes) -> None:
        self.items = list(msgpack.unpackb(data))
        self.restores.append(list(self.items))


def _checker_result(store: SnapshotStore, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        status = store.checker()
        if status != SERIALIZER_STATE.SERIALIZING:
            return status
        assert time.monotonic() < deadline, "snapshot did not finish"
        time.sleep(0.005)


def test_snapshot_store_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "snap")
    state = _State([b"a", b"b"])
    store = SnapshotStore(path, state.capture, state.restore)
    assert store.checker() == SERIALIZER_STATE.NOT_SERIALIZING
    with open(path + ".tmp", "wb") as f:
        f.write(b"stale")
    last, prev = (b"\x01cmd", 7, 2), (b"\x00", 6, 2)
    nodes = {TCPNode("127.0.0.1:2"), TCPNode("127.0.0.1:1")}
    store.serializer(path + ".tmp", (last, prev, nodes))
    assert not os.path.exists(path + ".tmp")  # pysyncobj's rename must fail harmlessly
    assert _checker_result(store) == SERIALIZER_STATE.SUCCESS
    assert store.checker() == SERIALIZER_STATE.NOT_SERIALIZING
    assert store.snapshots_written == 1
    assert sorted(os.listdir(tmp_path)) == ["snap"]

    with open(path, "rb") as f:
        blob = f.read()
    assert decode_snapshot(blob) == (
        last,
        prev,
        ["127.0.0.1:1", "127.0.0.1:2"],
        msgpack.packb([b"a", b"b"]),
    )
    other = _State()
    store2 = SnapshotStore(path, other.capture, other.restore)
    got_last, got_prev, got_nodes = store2.deserializer(path)
    assert (got_last, got_prev) == (last, prev)
    assert isinstance(got_last, tuple)
    assert got_nodes == nodes
    assert all(isinstance(n, TCPNode) for n in got_nodes)
    assert other.items == [b"a", b"b"]
    assert store2.loaded_entry == last
    assert store2.load_error is None


def test_snapshot_store_capture_failure_reported_once(tmp_path: Path) -> None:
    path = str(tmp_path / "snap")

    def bad_capture() -> Callable[[], bytes]:
        raise RuntimeError("boom")

    store = SnapshotStore(path, bad_capture, lambda _b: None)
    store.serializer(path + ".tmp", ((b"x", 2, 1), (b"y", 1, 1), set()))
    assert store.checker() == SERIALIZER_STATE.FAILED
    assert store.checker() == SERIALIZER_STATE.NOT_SERIALIZING
    assert isinstance(store.last_error, RuntimeError)
    assert not os.path.exists(path)


def test_snapshot_store_encode_failure_reported_once(tmp_path: Path) -> None:
    path = str(tmp_path / "snap")

    def capture() -> Callable[[], bytes]:
        def produce() -> bytes:
            raise ValueError("cannot encode")

        return produce

    store = SnapshotStore(path, capture, lambda _b: None)
    store.serializer(path + ".tmp", ((b"x", 2, 1), (b"y", 1, 1), set()))
    assert _checker_result(store) == SERIALIZER_STATE.FAILED
    assert store.checker() == SERIALIZER_STATE.NOT_SERIALIZING
    assert store.snapshots_failed == 1


def test_snapshot_store_wrong_path_fails(tmp_path: Path) -> None:
    state = _State()
    store = SnapshotStore(str(tmp_path / "a"), state.capture, state.restore)
    store.serializer(str(tmp_path / "b.tmp"), ((b"x", 2, 1), (b"y", 1, 1), set()))
    assert store.checker() == SERIALIZER_STATE.FAILED


def test_snapshot_corruption_detected(tmp_path: Path) -> None:
    path = str(tmp_path / "snap")
    blob = bytearray(encode_snapshot((b"l", 3, 1), (b"p", 2, 1), [], b"state"))
    blob[-1] ^= 1
    with open(path, "wb") as f:
        f.write(blob)
    state = _State()
    store = SnapshotStore(path, state.capture, state.restore)
    with pytest.raises(SnapshotError, match="checksum"):
        store.deserializer(path)
    assert isinstance(store.load_error, SnapshotError)
    assert state.restores == []
    with pytest.raises(SnapshotError):
        decode_snapshot(bytes(blob[:10]))


def test_snapshot_crash_before_success_keeps_old(tmp_path: Path) -> None:
    fs = CrashableFileOps()
    path = str(tmp_path / "snap")
    old = encode_snapshot((b"l", 3, 1), (b"p", 2, 1), [], b"old")
    write_file_durably(fs, path, old)
    # the writer got as far as an un-fsynced temp file; a crash must leave the old snapshot
    fd = fs.open(path + ".rc-writing", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    fs.write(fd, b"partial")
    fs.close(fd)
    fs.crash()
    with open(path, "rb") as f:
        assert f.read() == old
    # and a completed one survives a crash right after SUCCESS
    state = _State([b"new"])
    store = SnapshotStore(path, state.capture, state.restore, fs)
    store.serializer(path + ".tmp", ((b"l2", 9, 2), (b"p2", 8, 2), set()))
    assert _checker_result(store) == SERIALIZER_STATE.SUCCESS
    fs.crash()
    with open(path, "rb") as f:
        assert decode_snapshot(f.read())[0] == (b"l2", 9, 2)


def test_deserializer_makes_installed_snapshot_durable(tmp_path: Path) -> None:
    fs = CrashableFileOps()
    path = str(tmp_path / "snap")
    blob = encode_snapshot((b"l", 3, 1), (b"p", 2, 1), [], msgpack.packb([b"x"]))
    # pysyncobj writes an installed snapshot itself, without fsync, then renames it
    fs.fsync_dir(str(tmp_path))
    with open(path + ".1.tmp", "wb") as f:
        f.write(blob)
    os.rename(path + ".1.tmp", path)
    state = _State()
    store = SnapshotStore(path, state.capture, state.restore, fs)
    store.deserializer(path)
    assert fs.durable_content(path) == blob


# --------------------------------------------------------------------------------------------
# A real single-node SyncObj


class _Obj(SyncObj):  # type: ignore[misc]
    def __init__(self, port: int, directory: Path, gate: threading.Event | None = None) -> None:
        self.state = _State(gate=gate)
        self.store = SnapshotStore(
            str(directory / "snapshot.bin"), self.state.capture, self.state.restore
        )
        addr = f"127.0.0.1:{port}"
        conf = SyncObjConf(
            password="test-password",
            bindAddress=addr,
            journalFile=str(directory / "raft.journal"),
            fullDumpFile=str(directory / "snapshot.bin"),
            serializer=self.store.serializer,
            deserializer=self.store.deserializer,
            serializeChecker=self.store.checker,
            appendEntriesUseBatch=False,
            appendEntriesPeriod=0.05,
            raftMinTimeout=0.3,
            raftMaxTimeout=0.6,
            logCompactionMinEntries=10**9,
            logCompactionMinTime=10**9,
        )
        super().__init__(addr, [], conf)

    @replicated  # type: ignore[untyped-decorator]
    def put(self, item: bytes) -> int:
        self.state.items.append(item)
        return len(self.state.items)

    def journal(self) -> Any:
        return self._SyncObj__raftLog


@pytest.fixture
def built() -> Iterator[list[_Obj]]:
    objs: list[_Obj] = []
    try:
        yield objs
    finally:
        for obj in objs:
            obj.destroy_synchronous()


def _build(
    objs: list[_Obj], port: int, directory: Path, gate: threading.Event | None = None
) -> _Obj:
    obj = _Obj(port, directory, gate)
    objs.append(obj)
    _wait_until(obj._isLeader, 5.0, "single node to become leader")
    return obj


def test_syncobj_durable_journal_compaction_and_restart(tmp_path: Path, built: list[_Obj]) -> None:
    install_journal_factory()
    port = free_port()
    obj = _build(built, port, tmp_path)
    journal = obj.journal()
    assert isinstance(journal, DurableJournal)
    assert threading.current_thread() is threading.main_thread()

    items = [f"item-{i}".encode() for i in range(10)]
    for n, item in enumerate(items, start=1):
        assert obj.put(item, sync=True, timeout=5) == n
    before = len(journal)
    assert before >= 11
    obj.forceLogCompaction()
    _wait_until(lambda: obj.store.snapshots_written == 1, 5.0, "snapshot SUCCESS")
    _wait_until(lambda: len(journal) < before, 5.0, "journal compaction")
    assert len(journal) == 2  # prev + last applied entry
    assert obj.state.capture_threads and obj.state.capture_threads[0] != "MainThread"
    assert not os.path.exists(str(tmp_path / "snapshot.bin.tmp"))

    more = [b"after-1", b"after-2", b"after-3"]
    for item in more:
        obj.put(item, sync=True, timeout=5)
    expected_log = journal[:]
    built.remove(obj)
    obj.destroy_synchronous()

    obj2 = _build(built, port, tmp_path)
    journal2 = obj2.journal()
    assert isinstance(journal2, DurableJournal)
    _wait_until(lambda: obj2.state.items == items + more, 5.0, "restore + replay")
    assert obj2.state.restores == [items]  # snapshot restored, the rest replayed
    assert obj2.store.load_error is None
    assert journal2[: len(expected_log)] == expected_log
    assert obj2.getStatus()["last_applied"] >= expected_log[-1][1]


def test_slow_snapshot_does_not_stall_the_tick_thread(tmp_path: Path, built: list[_Obj]) -> None:
    install_journal_factory()
    gate = threading.Event()
    obj = _build(built, free_port(), tmp_path, gate)
    for i in range(5):
        obj.put(f"x{i}".encode(), sync=True, timeout=5)
    obj.forceLogCompaction()
    _wait_until(lambda: obj.store.serializing, 5.0, "snapshot to start")
    try:
        # the snapshot cannot finish until the gate opens: the commit completes meanwhile
        assert obj.put(b"during", sync=True, timeout=30) == 6
        assert obj.store.serializing and obj.store.snapshots_written == 0
    finally:
        gate.set()
    _wait_until(lambda: obj.store.snapshots_written == 1, 30.0, "slow snapshot SUCCESS")


def test_file_ops_is_plain_os(tmp_path: Path) -> None:
    fs = FileOps()
    p = str(tmp_path / "f")
    fd = fs.open(p, os.O_WRONLY | os.O_CREAT)
    fs.write(fd, b"hello world")
    fs.fsync(fd, data_only=True)
    fs.truncate(fd, 5)
    fs.fsync(fd)
    fs.close(fd)
    fs.fsync_dir(str(tmp_path))
    assert fs.read(p) == b"hello"
    fs.rename(p, p + "2")
    assert fs.exists(p + "2") and not fs.exists(p)
    fs.remove(p + "2")
    assert not fs.exists(p + "2")
