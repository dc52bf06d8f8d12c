"""What a restore does to a saved state before a new cluster starts from it (pure).

``raftcron snapshot restore`` (``raftcron/backup.py``) seeds a NEW cluster from a backup.
The backup may have been taken while runs were executing and locks were held by processes
of the old cluster; those processes may still be alive and still talk to the old cluster.
The restored state must therefore never let them (or anything that saw the old fences)
act on it, and must not start jobs behind the operator's back (issue 15, "Restore safety"):

* every live lease ends: its run is recorded ``lost`` through the ordinary ``Expire``
  (retries, dependencies and stats follow as after any expiry);
* every lock ends: its waiters are cancelled (``CancelLockWait``) and the holder's grant
  expires (``ExpireLock``), so no waiter of the old cluster is handed a lock;
* the fence counter rises by ``fence_gap`` (:data:`FENCE_GAP` by default): every fence the
  new cluster grants is far above any the old one granted after the backup was taken, so a
  storage system that checks fences refuses a writer of the old cluster;
* every job is paused (``SetPaused`` with a note naming the restore) unless ``resume``;
* membership is the new cluster's: the replicated members, drain marks and the members'
  reported config hashes (they name the old members) are dropped, and so is the
  reconciled ``config_hash``, so the new cluster's leader reconciles its own file at once;
* ``cluster_id`` is the new cluster's id.

Everything goes through :meth:`State.apply` with commands at ``at_ms`` (the state's own
clock, never read from a real one), so every node that restores the same file with the
same options derives the same bytes.

:func:`content_digest` is the digest of what a backup is for (jobs, runs, locks and the
ledger's counters), without the cluster id and membership: equal on the old cluster's
snapshot (after :func:`seal`) and on the restored cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import fields, replace
from typing import Any, Final

import msgpack

from raftcron.core import commands as c
from raftcron.core.model import Run
from raftcron.core.state import State

FENCE_GAP: Final = 1_000_000_000
"""How far a restore raises the fence counter by default (a cluster granting 1,000 fences
a second takes 11 days to cover it)."""

RESTORED_NOTE: Final = "restored from a backup: resume it when the new cluster is ready"
LEASE_ENDED: Final = "the cluster was restored from a backup taken while this run was live"
LOCK_ENDED: Final = "the cluster was restored from a backup taken while this lock was held"


def seal(
    state: State,
    *,
    cluster_id: str,
    fence_gap: int = FENCE_GAP,
    resume: bool = False,
) -> State:
    """Make ``state`` (a decoded backup; changed in place and returned) safe to start a new
    cluster from (the module docstring)."""
    if not cluster_id:
        raise ValueError("a restored cluster needs a cluster id")
    if fence_gap < 1:
        raise ValueError("fence_gap must be at least 1")
    at = state.now_ms
    for key in sorted(state.leases):
        lease = state.leases.get(key)
        if lease is None:
            continue  # (an earlier expiry in this loop ended it)
        state.apply(
            c.Expire(
                at_ms=at, run_id=key, fence=lease.fence, reason=LEASE_ENDED, renewals=lease.renewals
            )
        )
    for name in sorted(state.locks):
        lock = state.locks[name]
        for waiter in lock.waiters:
            state.apply(
                c.CancelLockWait(at_ms=at, name=name, request=waiter.request, reason=LOCK_ENDED)
            )
        lock = state.locks[name]
        state.apply(
            c.ExpireLock(
                at_ms=at, name=name, fence=lock.fence, renewals=lock.renewals, reason=LOCK_ENDED
            )
        )
    if not resume:
        for name in sorted(state.jobs):
            if not state.jobs[name].paused:
                state.apply(c.SetPaused(at_ms=at, name=name, paused=True, note=RESTORED_NOTE))
    state.counters = replace(state.counters, fence=state.counters.fence + fence_gap)
    state.drained = {}
    state.member_hashes = {}
    # the new cluster's membership comes from its own cluster file (its first leader
    # seeds it), never from the backup's: the old members are not this cluster's
    state.members = {}
    state.removed = {}
    state.member_change = None
    state.config_hash = ""
    state.cluster_id = cluster_id
    return state


def content_digest(state: State, run_ids: Iterable[str] | None = None) -> str:
    """sha256 of the jobs (definition, source, paused), the runs (all, or ``run_ids``), the
    held locks and finished lock requests, and the runs recorded: no cluster id, no
    membership (drain marks, members' config hashes, the reconciled hash) and nothing a
    running cluster changes by itself (the clock, watermarks, the fence counter)."""
    packer = msgpack.Packer(use_bin_type=True)
    h = hashlib.sha256()
    for name in sorted(state.jobs):
        job = state.jobs[name]
        h.update(packer.pack([name, c.spec_to_wire(job.spec), job.source, job.paused]))
    ids = sorted(state.runs) if run_ids is None else sorted(run_ids)
    h.update(packer.pack(len(ids)))
    for rid in ids:
        run = state.runs.get(rid)
        h.update(packer.pack(None if run is None else _row(run)))
    for name in sorted(state.locks):
        lock = state.locks[name]
        h.update(packer.pack([name, lock.fence, lock.holder, lock.request, len(lock.waiters)]))
    for (name, request), end in state.lock_done.items():
        h.update(packer.pack([name, request, end.fence, end.outcome]))
    return h.hexdigest()


_RUN_FIELDS: Final = tuple(f.name for f in fields(Run))


def _row(run: Run) -> list[Any]:
    return [getattr(run, f) for f in _RUN_FIELDS]
