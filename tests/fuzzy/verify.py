"""The verifiers. Checked as entries are applied (safety) and once the cluster has healed.

1. **Log agreement**: every member applies the same command at the same log index
   (pysyncobj's index at the moment of the apply). A member that applied something else
   at an index another member applied first has diverged.
2. **Each applied entry exactly once per member**: a member's applied indices only rise
   (a restart or an installed snapshot starts a new sequence above the snapshot).
3. **Acknowledged means committed, where the ack said**: every proposal whose callback
   reported success was applied at the index it was acknowledged for, with its bytes.
4. **A command's effect happens once**: an entry whose bytes already took effect at a
   lower index (a client's retry, a duplicated forward) hands out no fence (no run or
   lock granted again) and records no run again (``Cluster.effect`` unchanged); job
   commands keyed by name alone (``BY_NAME``) are last-writer-wins and left out. A
   ``Plan`` is checked fire by fire: a repeat may act on a fire an earlier copy refused
   (``busy``, ``drained``: the refusal had no effect, the repeat is a new decision) but
   never on a run an earlier copy granted, skipped, buffered or recorded.
5. **No fire granted twice with live leases**: a run id is granted at most once (one
   fence, one node); when a grant is applied, no other live lease in the state belongs
   to the same fire and instance.
6. **After healing**: every live member has applied up to the same commit index and
   their ``State`` digests (``State.digest``: the canonical snapshot encoding) are equal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftcron.core.commands import DeleteJob, Plan, PutJob, SetPaused, decode
from raftcron.core.model import fire_of
from raftcron.core.state import Ok, PlanOutcome, Result

if TYPE_CHECKING:
    from tests.fuzzy.cluster import Cluster, Member

# Commands keyed by the job's name alone: last writer wins. A repeat after another
# client changed the job acts on the job as it is then (a retried DeleteJob deletes a job
# re-created in between, recording its waiting runs as skipped), so check 4 leaves them.
BY_NAME = (PutJob, DeleteJob, SetPaused)


def _short(data: bytes) -> str:
    cmd = decode(data)
    return type(cmd).__name__ if cmd is not None else f"<{len(data)} bytes>"


def on_apply(
    cluster: Cluster,
    member: Member,
    index: int,
    data: bytes,
    res: Result,
    before: tuple[int, int],
    after: tuple[int, int],
) -> None:
    bad = cluster.violations
    # 1. log agreement
    first = cluster.log.setdefault(index, data)
    if first != data:
        bad.append(
            f"log divergence: {member.name} applied {_short(data)} at index {index}, "
            f"another member applied {_short(first)} there"
        )
    # 2. rising indices
    seq = cluster.applied[member.name]
    if seq and index <= seq[-1]:
        bad.append(f"{member.name} applied index {index} after index {seq[-1]}")
    seq.append(index)
    # 4. a duplicate acts on nothing an earlier copy acted on
    if isinstance(res, Ok) and isinstance(res.value, PlanOutcome):
        out = res.value
        acted = {rid for rid, _, _ in out.granted} | {rid for rid, _ in out.skipped}
        acted |= {rid for rid, _ in out.buffered} | set(out.missed) | set(out.paused)
        copies = cluster.plan_acted.setdefault(data, {})
        copies.setdefault(index, acted)
        again = sorted(acted & set().union(*(a for i, a in copies.items() if i < index)))
        if again:
            bad.append(f"{member.name}: Plan applied again at index {index} acted again on {again}")
    elif before != after:
        earliest = cluster.first_effect.setdefault(data, index)
        if index < earliest:
            cluster.first_effect[data] = index
        elif earliest < index and not isinstance(decode(data), BY_NAME):
            bad.append(
                f"{member.name}: {_short(data)} first took effect at index {earliest} took "
                f"effect again at index {index} (fence, runs recorded) {before} -> {after}"
            )
    # 5. no fire granted twice
    if isinstance(res, Ok) and isinstance(res.value, PlanOutcome):
        cmd = decode(data)
        assert isinstance(cmd, Plan)
        state = member.state()
        for rid, fence, node in res.value.granted:
            was = cluster.grants.setdefault(rid, (fence, node))
            if was != (fence, node):
                bad.append(
                    f"{member.name}: run {rid} granted again at index {index}: fence {fence} "
                    f"on {node}, first fence {was[0]} on {was[1]}"
                )
            run = state.runs.get(rid)
            if run is None:
                continue
            for other in state.leases:
                o = state.runs.get(other)
                if (
                    other != rid
                    and o is not None
                    and fire_of(other) == fire_of(rid)
                    and o.instance == run.instance
                ):
                    bad.append(
                        f"{member.name}: {rid} granted at index {index} while {other} of the "
                        "same fire and instance holds a live lease"
                    )


def check_acks(cluster: Cluster, acks: list[tuple[str, int, bytes]]) -> None:
    """3. Every acknowledged proposal is in the log at the index it was acked for."""
    for who, index, data in acks:
        got = cluster.log.get(index)
        if got is None:
            # (the whole cluster restored a snapshot past it before anyone recorded it:
            # only possible when no member applied the entry, i.e. it was never applied)
            cluster.violations.append(
                f"ack on {who} for {_short(data)} at index {index}: nothing was applied there"
            )
        elif got != data:
            cluster.violations.append(
                f"ack on {who} for {_short(data)} at index {index}, but {_short(got)} "
                "was committed there"
            )


def check_healed(cluster: Cluster) -> dict[str, str]:
    """6. Equal digests on every live member (call once all have caught up)."""
    digests: dict[str, str] = {}
    for m in cluster.live():
        assert m.machine is not None
        digests[m.name] = m.machine.read(lambda s: s.digest())
    if len(set(digests.values())) > 1:
        cluster.violations.append(f"State digests differ after healing: {digests}")
    return digests
