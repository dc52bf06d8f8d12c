"""One agent per data dir: an exclusive ``flock`` held for the agent's whole life.

Two agents on one data dir would both write the Raft journal and the snapshot and both
answer as the same member: the cluster would see one member with two minds. So an agent
takes an exclusive, non-blocking ``flock`` on ``<data_dir>/agent.lock`` before anything
else touches the data dir (before Raft starts, before the executor's output dir), and
keeps it until the process ends; the kernel drops it when the process dies, however it
dies, so a stale lock file never keeps an agent out. The file holds the holder's PID,
for the message the second agent prints before it exits with status 2:
``error: <data_dir> is used by another agent (pid N); ...``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Final

LOCK_NAME: Final = "agent.lock"


class DataDirInUse(Exception):
    """Another agent holds the data dir's lock (or it cannot be taken at all)."""


class DataDirLock:
    """The held lock of one data dir; :meth:`release` (or process exit) lets it go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Take the lock of ``data_dir`` (created, mode 0700, if missing) or raise
        :class:`DataDirInUse` naming the PID that holds it."""
        path = Path(data_dir) / LOCK_NAME
        try:
            Path(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise DataDirInUse(
                f"{path}: cannot open the data dir's lock file: {exc.strerror or exc} "
                "(check data_dir and its permissions)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DataDirInUse(
                    f"{path}: cannot lock the data dir: {exc.strerror or exc}"
                ) from None
            who = f"pid {holder}" if holder else "pid unknown"
            raise DataDirInUse(
                f"{data_dir} is used by another agent ({who}); stop that agent first, or "
                "give this node its own data_dir"
            ) from None
        # ours: record who holds it (for the message a second agent prints)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no stale PID for the next reader
            os.close(fd)  # closing the last descriptor drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
