"""Whether this replica's view is current, and what a storage failure means: pure helpers
fed from the tick thread (``raftcron/raft/node.py``) and read by the health checks.

What they guarantee:

* :class:`ApplyLag` measures how far ``last_applied`` is behind the leader's commit index
  *in time*: since when this replica has known of a committed entry it has not applied.
  A replica that keeps up is never behind for longer than a tick; one whose apply is
  stuck (a full disk, a stalled tick thread, a huge snapshot to install) is behind for as
  long as that lasts, however few or many entries it misses.
* :func:`quorum_heard_at` is when a leader last heard from a majority (itself included):
  the moment its ``k``-th most recent follower answered, ``k`` being the followers a
  majority needs. A leader that has not heard from a majority within an election timeout
  may have been replaced without knowing it; ``/health/leader`` then answers 503 whatever
  pysyncobj's leader flag says (it is only updated when the tick thread runs).
* :func:`storage_failure` turns an I/O error on the journal or a snapshot into the one
  line an operator needs: the file, the error and the fix. Such an error is fatal to the
  node (README, "Health").
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Iterable
from typing import Final

# I/O errors that mean the node can no longer keep what it acknowledges on disk.
STORAGE_ERRNOS: Final = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}
)
_LAG_POINTS: Final = 10_000  # commit indices remembered while behind (the oldest matter)


class ApplyLag:
    """Since when this replica has been behind the leader's commit (monotonic seconds)."""

    def __init__(self) -> None:
        # (a leader commit index, when it was first heard of), rising in both
        self._heard: deque[tuple[int, float]] = deque()

    def observe(self, now: float, leader_commit: int | None, last_applied: int) -> float | None:
        """Record one look at the replica; return since when it has been behind (the time
        it first heard of the oldest commit index it has not applied yet), or None."""
        heard = self._heard
        commit = last_applied if leader_commit is None else leader_commit
        if (
            commit > last_applied
            and (not heard or commit > heard[-1][0])
            and len(heard) < _LAG_POINTS
        ):
            heard.append((commit, now))
        while heard and heard[0][0] <= last_applied:
            heard.popleft()
        return heard[0][1] if heard else None


def quorum_heard_at(now: float, answered: Iterable[float], cluster_size: int) -> float | None:
    """When a leader last heard from a majority of a ``cluster_size`` cluster, given when
    each follower last answered it (only answers in this term); None if it never has."""
    need = cluster_size // 2  # followers a majority needs besides the leader itself
    if need <= 0:
        return now
    times = sorted(answered, reverse=True)
    return times[need - 1] if len(times) >= need else None


def storage_failure(what: str, path: str, exc: BaseException) -> str:
    """``<what> <path>: <error>; <fix>``: one line, no traceback."""
    where = os.path.dirname(path) or "."
    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and exc.strerror:
        error = f"{exc.strerror} ({errno.errorcode.get(code or 0, code)})"
    else:
        error = str(exc) or type(exc).__name__
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = f"free space on the filesystem of {where} (or move the data_dir to a larger one)"
    elif code == errno.EROFS:
        fix = f"the filesystem of {where} is read-only: remount it read-write"
    elif code == errno.EIO:
        fix = f"the disk under {where} reports I/O errors: check it (dmesg), or move the data_dir"
    elif code in (errno.EACCES, errno.EPERM):
        fix = f"let the agent's user write {where} (chown/chmod)"
    else:
        fix = f"check the disk and the filesystem of {where}"
    return f"{what} {path}: {error}; {fix}, then start the agent again"
