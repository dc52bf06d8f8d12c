"""Data dirs 0700 and every file in them 0600 (issue 13 item 3): created that way whatever
the umask, an older data dir tightened at start (logged once), and the agent's own umask
and open-files limit (the cluster test checks a live agent's files)."""

from __future__ import annotations

import logging
import os
import resource
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pysyncobj.config import SERIALIZER_STATE

from raftcron import hardening
from raftcron.raft.journal import DurableJournal, SnapshotStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The umask an embedding application (or a careless shell) might have."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_journal_meta_and_snapshot_are_created_0600_whatever_the_umask(
    tmp_path: Path, loose_umask: None
) -> None:
    j = DurableJournal(str(tmp_path / "raft.journal"))
    j.add(b"cmd", 1, 1)
    j.setCurrentTerm(2, None)
    store = SnapshotStore(str(tmp_path / "snapshot.bin"), lambda: lambda: b"state", lambda b: None)
    store.serializer(str(tmp_path / "snapshot.bin.tmp"), ((b"\x01c", 1, 1), (b"\x00", 0, 0), set()))
    deadline = time.monotonic() + 10
    while store.checker() == SERIALIZER_STATE.SERIALIZING and time.monotonic() < deadline:
        time.sleep(0.01)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert {"raft.journal", "raft.journal.meta", "snapshot.bin"} <= set(names), names
    assert {p.name: mode(p) for p in tmp_path.iterdir()} == {n: 0o600 for n in names}


def test_an_older_data_dir_is_tightened_at_start_and_logged_once(
    tmp_path: Path, loose_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "a"
    (data / "raft").mkdir(parents=True)
    (data / "output").mkdir()
    for f in ("raft/raft.journal", "raft/raft.journal.meta", "raft/snapshot.bin", "agent.log"):
        (data / f).write_bytes(b"x")
    (data / "output" / "j@1.log").write_bytes(b"x")
    (data / "raft" / "snapshot.bin").chmod(0o664)
    assert mode(data) == 0o755 and mode(data / "agent.log") == 0o644
    with caplog.at_level(logging.WARNING, "raftcron.hardening"):
        hardening.prepare_data_dir(data, "a")
    for p in [data, *data.rglob("*")]:
        assert mode(p) == (0o700 if p.is_dir() else 0o600), p
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"node a: tightened 8 entries under {data} that their group or")
    caplog.clear()
    with caplog.at_level(logging.INFO, "raftcron.hardening"):
        hardening.prepare_data_dir(data, "a")  # nothing left to say
    assert caplog.records == []


def test_a_new_data_dir_is_created_0700(tmp_path: Path, loose_umask: None) -> None:
    hardening.prepare_data_dir(tmp_path / "deep" / "a", "a")
    assert mode(tmp_path / "deep" / "a") == 0o700


def test_the_agent_process_gets_umask_077_and_raises_its_open_files_limit() -> None:
    """In a child process: the agent's start-up hooks, with a soft limit below the hard."""
    code = """
import logging, os, resource, sys
from raftcron import hardening
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
os.umask(0o022)
hardening.private_umask()
hardening.raise_open_files_limit("a")
now = os.umask(0)
print("umask", oct(now), "job umask", oct(hardening.job_defaults.umask))
print("nofile", resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard,
      "job nofile", hardening.job_defaults.nofile_soft)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "umask 0o77 job umask 0o22" in out
    assert "nofile True job nofile 64" in out
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard < hardening.LOW_NOFILE:
        assert f"node a: open-files limit is {hard} (raised to the hard limit); that is low" in out
    else:
        assert f"node a: open-files limit {hard} (raised to the hard limit)" in out


def test_a_low_hard_limit_is_reported(tmp_path: Path) -> None:
    code = """
import logging, resource, sys
from raftcron import hardening
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (100, 200))
hardening.raise_open_files_limit("a")
print(resource.getrlimit(resource.RLIMIT_NOFILE))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "WARNING node a: open-files limit is 200 (raised to the hard limit); that is low" in out
    assert "(200, 200)" in out
