"""Whether this replica's view is current, and what a storage failure means: pure helpers
fed from the tick thread (``raftcron/raft/node.py``) and read by the health checks.

What they guarantee:

* :class:`ApplyLag` measures how far ``last_applied`` is behind the leader's commit index
  *in time*: since when this replica has known of a committed entry it has not applied.
  A replica that keeps up is never behind for longer than a tick; one whose apply is
  stuck (a full disk, a stalled tick thread, a huge snapshot to install) is behind for as
  long as that lasts, however few or many entries it misses.
* :class:`ReplicationLag` is the leader's view of each follower's replication lag *in
  time*: how long ago the oldest committed entry the follower has not acknowledged (its
  match index + 1) was first seen committed by this leader. A follower that keeps up has
  acknowledged everything committed (entries commit once a majority has them) or lags by
  about one append round trip; a dead or cut-off one lags by as long as it has been gone
  (counted from this leader's takeover at most: it knows no older commit times).
* :func:`quorum_heard_at` is when a leader last heard from a majority (itself included):
  the moment its ``k``-th most recent follower answered, ``k`` being the followers a
  majority needs. A leader that has not heard from a majority within an election timeout
  may have been replaced without knowing it; ``/health/leader`` then answers 503 whatever
  pysyncobj's leader flag says (it is only updated when the tick thread runs).
* :func:`storage_failure` turns an I/O error on the journal or a snapshot into the one
  line an operator needs: the file, the error and the fix. Such an error is fatal to the
  node (docs/operations.md, "Health").
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
_REPLICATION_POINTS: Final = 4_096  # commit times a leader remembers (thinned when full)


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


class ReplicationLag:
    """A leader's view of when each follower last had everything committed (tick thread).

    It remembers ``(commit index, when this leader first saw it)`` for every tick on which
    the commit index rose, forgetting those every follower has acknowledged. A follower
    whose match index is ``m`` has been behind since the first remembered commit index
    above ``m``; with at most one point per tick that is within a tick of the truth. When
    ``_REPLICATION_POINTS`` are remembered (a follower gone for a long time under load),
    every second point between the oldest and the newest is dropped: a follower then
    stuck between them reads up to one gap younger than it is, the oldest (the dead
    follower's) and the newest (the live ones') stay exact.
    """

    def __init__(self) -> None:
        self._points: list[tuple[int, float]] = []
        self._term = -1

    def observe(
        self, now: float, term: int, commit_index: int, match: Iterable[tuple[str, int]]
    ) -> tuple[tuple[str, float], ...]:
        """One tick of a leader in ``term``: ``match`` is each follower's match index.
        Returns ``(follower, behind since)`` for each follower that lacks a committed
        entry (followers that have all of them are left out)."""
        points = self._points
        if term != self._term:  # a new leadership knows no older commit times
            points.clear()
            self._term = term
        if not points or commit_index > points[-1][0]:
            points.append((commit_index, now))
        matches = list(match)
        if matches:
            lowest = min(m for _, m in matches)
            drop = 0
            while drop < len(points) - 1 and points[drop][0] <= lowest:
                drop += 1
            del points[:drop]
        if len(points) > _REPLICATION_POINTS:
            points[1:-1] = points[2:-1:2]
        out = []
        for peer, m in matches:
            if m >= commit_index:
                continue
            since = next((t for index, t in points if index > m), points[-1][1])
            out.append((peer, since))
        return tuple(sorted(out))

    def reset(self) -> None:
        """This node stopped leading: the next leadership starts afresh."""
        self._points.clear()
        self._term = -1


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
