"""Backup files and restore (raftcron/backup.py, raftcron/core/restore.py): the format's
round trip and every refusal, what a restore does to the state, and the seeded data dir."""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from pathlib import Path

import msgpack
import pytest

from raftcron import cli
from raftcron.api.auth import Authorizer
from raftcron.backup import (
    FORMAT,
    MAGIC,
    BackupError,
    data_dir_problem,
    decode_state,
    derive_cluster_id,
    encode_backup,
    read_backup,
    restore_into,
    write_private,
)
from raftcron.config import ApiConfig, ApiToken
from raftcron.core import commands as c
from raftcron.core.model import CLAIMED, LOST, MISSED, JobSpec, run_id
from raftcron.core.restore import FENCE_GAP, LEASE_ENDED, RESTORED_NOTE, content_digest, seal
from raftcron.core.state import Ok, State
from raftcron.raft.journal import decode_snapshot
from raftcron.raft.node import _Replica
from raftcron.raft.seed import SEED_INDEX, seed_entries, seed_raft_dir
from raftcron.raft.wire import K_MEMBER, MemberHello, decode_message, encode_message
from tests.unit.test_raft_port import (
    FakePeer,
    Replicas,
    _addresses,
    _wait,
    closed_by_peer,
    transport,
)

T0 = 1_800_000_000_000


def spec(name: str) -> JobSpec:
    return JobSpec(name=name, schedule="0 0 1 1 *", command=("true",))


def busy_state(runs: int = 50) -> State:
    """Jobs, final runs (missed records), a live run holding a lease, a held lock with a
    waiter, a drained member and reported config hashes."""
    s = State()
    for name in ("a", "b", "paused"):
        assert s.apply(c.PutJob(at_ms=T0, spec=spec(name))) == Ok("created")
    s.apply(c.SetPaused(at_ms=T0, name="paused", paused=True, note="by hand"))
    missed = tuple(
        c.Missed(job="a", first_ms=T0 + i, last_ms=T0 + i, count=1, reason="seeded")
        for i in range(1, runs + 1)
    )
    s.apply(c.Plan(at_ms=T0, missed=missed))
    fire = c.Fire(job="b", scheduled_at_ms=T0 + 10, node="n1", trigger="schedule")
    res = s.apply(c.Plan(at_ms=T0 + 10, fires=(fire,)))
    assert isinstance(res, Ok)
    s.apply(c.AcquireLock(at_ms=T0, name="db", request="r1", holder="x", ttl_ms=30_000, wait_ms=0))
    s.apply(
        c.AcquireLock(at_ms=T0, name="db", request="r2", holder="y", ttl_ms=30_000, wait_ms=60_000)
    )
    s.apply(c.Drain(at_ms=T0, node="n2", drain=True))
    s.apply(c.ReportConfig(at_ms=T0, node="n1", hash="abc"))
    assert s.leases and s.locks and s.locks["db"].waiters and s.drained
    return s


def backup_bytes(s: State, cluster_id: str = "") -> bytes:
    return encode_backup(
        s.snapshot(),
        [{"name": "n1", "raft": "127.0.0.1:1", "api": "127.0.0.1:2"}],
        raftcron_version="9.9.9",
        cluster_id=cluster_id,
        created_ms=T0,
        leader="n1",
        raft_term=3,
        counts={"jobs": len(s.jobs), "runs": len(s.runs), "locks": len(s.locks)},
    )


# --------------------------------------------------------------------------- the format


def test_round_trip_keeps_the_state_and_documents_itself() -> None:
    s = busy_state()
    data = backup_bytes(s)
    assert data.startswith(MAGIC)
    header = json.loads(data[len(MAGIC) : data.index(b"\n", len(MAGIC))])
    assert header["format"] == FORMAT == 1
    assert header["raftcron_version"] == "9.9.9"
    assert header["created_at"] == "2027-01-15T08:00:00.000Z"
    assert header["runs"] == len(s.runs) and header["jobs"] == 3 and header["locks"] == 1
    backup = read_backup(data)
    assert backup.header == header
    assert backup.members[0]["name"] == "n1"
    back = decode_state(backup)
    assert back.digest() == s.digest()
    assert content_digest(back) == content_digest(s)


@pytest.mark.parametrize("where", ["body", "header"])
def test_a_corrupt_file_is_refused(where: str) -> None:
    data = bytearray(backup_bytes(busy_state()))
    if where == "body":
        data[-100] ^= 0x01
        with pytest.raises(BackupError, match="corrupt: the body's sha256"):
            read_backup(bytes(data))
    else:
        at = data.index(b'"format"')
        data[at] = ord("{")
        with pytest.raises(BackupError, match="header is not JSON"):
            read_backup(bytes(data))


def test_every_truncation_is_refused() -> None:
    data = backup_bytes(busy_state(runs=5))
    header_end = data.index(b"\n", len(MAGIC)) + 1
    for cut in [0, 3, len(MAGIC), header_end - 1, header_end, header_end + 1, len(data) - 1]:
        with pytest.raises(BackupError, match="truncated"):
            read_backup(data[:cut])
    with pytest.raises(BackupError, match="bytes follow the body"):
        read_backup(data + b"x")


def test_not_a_backup_and_another_version_are_refused() -> None:
    with pytest.raises(BackupError, match="not a raftcron backup"):
        read_backup(b"RCSNAP\r\n" + b"\0" * 100)
    data = backup_bytes(busy_state(runs=1))
    newer = data.replace(b'"format":1', b'"format":2', 1)
    with pytest.raises(BackupError, match=r"format version 2; .* reads format 1 only"):
        read_backup(newer)


def test_a_body_that_checks_out_but_holds_no_state_is_refused() -> None:
    import hashlib

    body = msgpack.packb({"members": []})
    header = {"format": 1, "body_bytes": len(body), "body_sha256": hashlib.sha256(body).hexdigest()}
    data = MAGIC + json.dumps(header).encode() + b"\n" + body
    with pytest.raises(BackupError, match="no state"):
        read_backup(data)


def test_write_private_is_0600_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "b.backup"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    write_private(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["b.backup"]


# --------------------------------------------------------------------------- the state


def test_cluster_id_is_encoded_only_when_set() -> None:
    s = busy_state(runs=2)
    keys = msgpack.Unpacker()
    keys.feed(s.snapshot())
    assert "cluster_id" not in next(iter(keys))
    s.cluster_id = "rc-x"
    back = State.restore(s.snapshot())
    assert back.cluster_id == "rc-x"
    assert back.digest() == s.digest()


def test_seal_ends_leases_and_locks_raises_fences_pauses_and_drops_membership() -> None:
    s = busy_state()
    fence = s.counters.fence
    live = next(iter(s.leases))
    assert s.runs[live].status == CLAIMED
    seal(s, cluster_id="rc-new", fence_gap=1000)
    assert not s.leases and not s.live
    assert s.runs[live].status == LOST and LEASE_ENDED in s.runs[live].reason
    assert not s.locks
    outcomes = {req: end.outcome for (name, req), end in s.lock_done.items() if name == "db"}
    assert outcomes == {"r1": "expired", "r2": "cancelled"}
    assert s.counters.fence == fence + 1000
    assert all(j.paused for j in s.jobs.values())
    assert s.jobs["a"].pause_note == RESTORED_NOTE
    assert s.jobs["paused"].pause_note == "by hand"  # already paused: left as it was
    assert not s.drained and not s.member_hashes and s.config_hash == ""
    assert s.cluster_id == "rc-new"
    assert sum(r.status == MISSED for r in s.runs.values()) == 50


def test_seal_with_resume_keeps_the_jobs_as_they_were() -> None:
    s = busy_state()
    seal(s, cluster_id="rc-new", resume=True)
    assert {n: j.paused for n, j in s.jobs.items()} == {"a": False, "b": False, "paused": True}
    assert s.counters.fence > FENCE_GAP


def test_seal_needs_an_id() -> None:
    with pytest.raises(ValueError, match="cluster id"):
        seal(State(), cluster_id="")


def test_content_digest_leaves_out_cluster_id_membership_and_clock() -> None:
    s = busy_state()
    d = content_digest(s)
    s.cluster_id, s.now_ms, s.drained, s.member_hashes = "rc-z", s.now_ms + 5, {}, {}
    s.counters.fence += 7
    assert content_digest(s) == d
    s.apply(c.SetPaused(at_ms=T0, name="a", paused=True))
    assert content_digest(s) != d
    rid = run_id("a", T0 + 1)
    assert content_digest(s, [rid]) == content_digest(State.restore(s.snapshot()), [rid])


# --------------------------------------------------------------------------- restore


ADDRS = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]


def test_restore_seeds_the_snapshot_the_agent_loads(tmp_path: Path) -> None:
    s = busy_state()
    backup = read_backup(backup_bytes(s))
    out = restore_into(backup, tmp_path / "n1", ADDRS)
    assert out.leases_ended == 1 and out.locks_ended == 1
    path = tmp_path / "n1" / "raft" / "snapshot.bin"
    assert out.snapshot_path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "n1").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "n1" / "raft").stat().st_mode) == 0o700
    last, prev, cluster, state = decode_snapshot(path.read_bytes())
    assert (last, prev) == seed_entries() and last[1] == SEED_INDEX
    assert cluster == sorted(ADDRS)
    restored = State.restore(state)
    expected = seal(decode_state(backup), cluster_id=out.cluster_id)
    assert restored.digest() == expected.digest()
    assert restored.cluster_id == out.cluster_id != ""
    # Every member restored from the same file with the same options gets the same bytes.
    again = restore_into(backup, tmp_path / "n2", ADDRS)
    assert again.cluster_id == out.cluster_id
    assert (tmp_path / "n2" / "raft" / "snapshot.bin").read_bytes() == path.read_bytes()


def test_the_cluster_id_depends_on_file_members_and_options() -> None:
    ids = {
        derive_cluster_id("a" * 64, ADDRS, False, FENCE_GAP),
        derive_cluster_id("b" * 64, ADDRS, False, FENCE_GAP),
        derive_cluster_id("a" * 64, ADDRS[:2], False, FENCE_GAP),
        derive_cluster_id("a" * 64, ADDRS, True, FENCE_GAP),
    }
    assert len(ids) == 4 and all(i.startswith("rc-") for i in ids)
    assert derive_cluster_id("a" * 64, list(reversed(ADDRS)), False, FENCE_GAP) in ids


def test_restore_refuses_a_dir_with_data_and_the_old_clusters_id(tmp_path: Path) -> None:
    backup = read_backup(backup_bytes(busy_state(runs=1), cluster_id="rc-old"))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "raft").mkdir()
    with pytest.raises(BackupError, match="already holds data"):
        restore_into(backup, tmp_path / "used", ADDRS)
    assert data_dir_problem(tmp_path / "missing") is None
    with pytest.raises(BackupError, match="backed-up cluster's"):
        restore_into(backup, tmp_path / "new", ADDRS, cluster_id="rc-old")
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- CLI


def test_cli_restore_refuses_corrupt_and_truncated_files_writing_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = backup_bytes(busy_state(runs=3))
    bad = bytearray(good)
    bad[-5] ^= 0xFF
    cases = {"corrupt": bytes(bad), "truncated": good[: len(good) // 2]}
    for what, data in cases.items():
        f = tmp_path / f"{what}.backup"
        f.write_bytes(data)
        dest = tmp_path / f"data-{what}"
        code = cli.main(["snapshot", "restore", str(f), "--data-dir", str(dest)])
        err = capsys.readouterr().err
        assert code == 1
        assert what in err and "nothing written" in err
        assert not dest.exists()


def test_cli_restore_writes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "ok.backup"
    f.write_bytes(backup_bytes(busy_state(runs=3)))
    dest = tmp_path / "data"
    assert cli.main(["snapshot", "restore", str(f), "--data-dir", str(dest), "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["leases_ended"] == 1 and out["locks_ended"] == 1 and out["paused"] is True
    assert out["runs"] == 4 and out["cluster_id"].startswith("rc-")
    assert (dest / "raft" / "snapshot.bin").exists()
    assert cli.main(["snapshot", "restore", str(f), "--data-dir", str(dest)]) == 1
    assert "already holds data" in capsys.readouterr().err


# --------------------------------------------------------------------------- API and wire


def test_a_backup_needs_an_admin_token() -> None:
    auth = Authorizer.from_config(
        ApiConfig(
            tokens=(ApiToken(role="read", token="r" * 32), ApiToken(role="admin", token="a" * 32))
        )
    )
    refusal = auth.decide("GET", "/v1/snapshot", "Bearer " + "r" * 32)
    assert refusal is not None and refusal.status == 403
    assert "secrets included" in refusal.message
    assert auth.decide("GET", "/v1/snapshot", "Bearer " + "a" * 32) is None
    assert auth.decide("GET", "/v1/jobs", "Bearer " + "r" * 32) is None


def test_the_member_message_carries_the_cluster_id_only_when_there_is_one() -> None:
    assert encode_message(MemberHello("127.0.0.1:1")) == [K_MEMBER, "127.0.0.1:1"]
    assert encode_message("127.0.0.1:1") == [K_MEMBER, "127.0.0.1:1"]
    assert encode_message(MemberHello("h:1", "rc-a")) == [K_MEMBER, "h:1", "rc-a"]
    old = decode_message([K_MEMBER, "h:1"])
    assert old == "h:1" and old.cluster_id == ""
    new = decode_message([K_MEMBER, "h:1", "rc-a"])
    assert new == "h:1" and new.cluster_id == "rc-a"


def _seeded(replicas: Replicas, i: int, cluster_id: str) -> None:
    st = busy_state(runs=2)
    st.cluster_id = cluster_id
    top = replicas.root / f"seed{i}"  # a member's data dir: Raft's files go in its raft/
    seed_raft_dir(top, st.snapshot(), replicas.addrs)
    (top / "raft").rename(replicas.root / f"n{i}")  # what Replicas gives its replica


def _cluster_id(replica: _Replica) -> str:
    cid: str = replica._rc_machine.read(lambda s: s.cluster_id)
    return cid


def open_for(sock: socket.socket, seconds: float) -> bool:
    """True if the other end kept ``sock`` open for ``seconds`` (reading what it sends)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return False
        except TimeoutError:
            return True
        except ConnectionResetError:
            return False
    return True


def test_members_of_different_clusters_refuse_each_other(tmp_path: Path) -> None:
    replicas = Replicas(tmp_path, _addresses())
    try:
        _seeded(replicas, 0, "rc-a")
        low = replicas.start(0)  # the lowest address: everyone dials it
        _wait(lambda: _cluster_id(low) == "rc-a", "the seeded state to load")
        for hello in (MemberHello(replicas.addrs[1], "rc-b"), MemberHello(replicas.addrs[1])):
            peer = FakePeer(low.selfNode.address)
            peer.handshake(hello)
            assert closed_by_peer(peer.sock)
            peer.close()
        assert transport(low).stats.refused["cluster_id"] == 2
        peer = FakePeer(low.selfNode.address)
        peer.handshake(MemberHello(replicas.addrs[1], "rc-a"))
        assert open_for(peer.sock, 1.5)  # the same cluster: accepted
        peer.close()
        # Two real members: one restored (rc-a), one of another cluster (rc-b).
        _seeded(replicas, 2, "rc-b")
        high = replicas.start(2)  # dials the others
        _wait(lambda: transport(low).stats.refused["cluster_id"] >= 3, "the refusal")
        assert _cluster_id(high) == "rc-b" and _cluster_id(low) == "rc-a"
        assert not low._isLeader() and not high._isLeader()
        # A member of the same cluster makes a majority with it.
        _seeded(replicas, 1, "rc-a")
        replicas.start(1)
        leader = replicas.leader()
        assert leader in (low, replicas.live[1])
        assert _cluster_id(high) == "rc-b"
    finally:
        replicas.destroy()
