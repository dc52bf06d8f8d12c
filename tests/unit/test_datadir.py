"""One agent per data dir (issue 12, finding 4): the flock and its message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raftcron.datadir import LOCK_NAME, DataDirInUse, DataDirLock


def test_a_second_lock_on_the_same_dir_names_the_holder(tmp_path: Path) -> None:
    first = DataDirLock.acquire(tmp_path / "d")
    try:
        with pytest.raises(DataDirInUse) as info:
            DataDirLock.acquire(tmp_path / "d")
        assert str(info.value).startswith(f"{tmp_path / 'd'} is used by another agent (pid ")
        assert f"(pid {os.getpid()})" in str(info.value)
        # another dir is another agent's business
        other = DataDirLock.acquire(tmp_path / "e")
        other.release()
    finally:
        first.release()
    again = DataDirLock.acquire(tmp_path / "d")  # free once released
    assert again.held
    again.release()
    assert not again.held


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    """A killed agent leaves its lock file behind, never its lock."""
    code = (
        "import sys, time; from pathlib import Path; from raftcron.datadir import DataDirLock; "
        f"DataDirLock.acquire(Path({str(tmp_path)!r})); print('locked', flush=True); "
        "time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"locked"
            with pytest.raises(DataDirInUse, match=f"pid {proc.pid}"):
                DataDirLock.acquire(tmp_path)
        finally:
            proc.kill()
            proc.wait()
    assert (tmp_path / LOCK_NAME).exists()
    DataDirLock.acquire(tmp_path).release()


def test_the_lock_file_is_private_and_not_inherited(tmp_path: Path) -> None:
    lock = DataDirLock.acquire(tmp_path / "new")
    try:
        assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "new" / LOCK_NAME).stat().st_mode & 0o777 == 0o600
        # a process the agent starts (the watchdog fork server, a job) does not hold it
        fd = lock._fd
        assert fd is not None and not os.get_inheritable(fd)
    finally:
        lock.release()


def test_an_unusable_dir_is_reported(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataDirInUse, match="cannot open the data dir's lock file"):
        DataDirLock.acquire(tmp_path / "file")
