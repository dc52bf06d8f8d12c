"""Feature levels: what a member understands, and what the cluster may be asked to do.

Every release has a feature level, ``FEATURE_LEVEL`` (an integer that only grows). Each
member advertises its own in the replicated state (``ReportConfig``: ``version`` and
``level``, kept in ``State.member_versions``); a member that advertises nothing (a
release from before levels) is level 0.

The levels are declared once, where the things are: each job key's ``since`` in the job
field table (``raftcron/core/jobfields.py``: ``JOB_FIELDS``) and each command kind's
``since`` in ``raftcron/core/commands.py`` (``KINDS``). ``JOB_KEYS`` and
``COMMAND_KINDS`` below are derived from them: the keys and kinds above level 0. The
leader, and every API node before it proposes, accepts a command that uses one only once
every member's level is at least that (:func:`refusal`). An older member would drop the
key or skip the command, and its replica (and what it runs) would silently differ. The
API answers 409 ``feature_not_enabled`` naming the feature and the members still to
upgrade. A cluster file that uses one is not reconciled at all until they are
(``raftcron/scheduler/leader.py``).

What is level 0: everything a node that advertises nothing decodes. Such nodes are
releases from before levels: v0.1.0, and main between v0.1.0 and levels. v0.1.0 does
not speak the Raft wire of later releases (CHANGELOG: upgrading from v0.1.0 is a full
stop), so it is never a member beside a node that enforces the gate. The command kinds
and job keys added after it (``drain``, ``mark_broken``, ``config_report``; ``stdin``,
``user``, ...) are decoded by every node that can be, so they are level 0. Gating them
would refuse drains during the very rolling upgrade that needs them, and the level itself
travels in ``config_report``. Level 1 (0.2.0) introduced the job key ``description``.
Level 3 introduced pre-vote on the Raft wire (``RAFT_FEATURES``): a member runs it only
once every member advertises level 3 (:func:`prevote_on`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from raftcron.core import commands as c
from raftcron.core import jobfields
from raftcron.core.model import JobSpec

# Job key (as in a [[jobs]] table) -> the level that introduced it (keys of level 0 left out).
JOB_KEYS: Final[Mapping[str, int]] = MappingProxyType(
    {f.key or f.attr: f.since for f in jobfields.JOB_FIELDS if f.since > 0}
)

# Command kind (the wire tag ``t``) -> the level that introduced it (level 0 left out).
COMMAND_KINDS: Final[Mapping[str, int]] = MappingProxyType(
    {k.tag: k.since for k in c.KINDS if k.since > 0}
)

# Behaviours of the Raft layer that need every member to understand them (not commands
# or job keys): name -> the level that introduced it. ``pre-vote``: Raft's pre-vote round
# and leader stickiness (raftcron/raft/seam.py; docs/design.md, "Elections: pre-vote and
# stickiness"), whose wire messages a member below it refuses.
RAFT_FEATURES: Final[Mapping[str, int]] = MappingProxyType({"pre-vote": 3})
PREVOTE_LEVEL: Final = RAFT_FEATURES["pre-vote"]

# This release's level: the newest level of anything it declares.
FEATURE_LEVEL: Final = max(
    jobfields.FEATURE_LEVEL,
    *COMMAND_KINDS.values(),
    *JOB_KEYS.values(),
    *RAFT_FEATURES.values(),
)

_TAGS: Final[Mapping[type, str]] = MappingProxyType({k.cls: k.tag for k in c.KINDS})

# The largest level a member may advertise (a bound on the replicated value).
MAX_LEVEL: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Feature:
    """Something gated: ``name`` as shown (``job key stdin``), the level it needs."""

    name: str
    level: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """``feature`` is not enabled: ``behind`` names each member below its level, with
    that member's level."""

    feature: Feature
    behind: Mapping[str, int]

    def message(self) -> str:
        members = ", ".join(f"{n} (level {lv})" for n, lv in sorted(self.behind.items()))
        return (
            f"{self.feature.name} needs feature level {self.feature.level} on every member; "
            f"not yet upgraded: {members}: upgrade them (one at a time) to a release of "
            f"level {self.feature.level} or later, then try again"
        )


def kind_of(cmd: c.Command) -> str:
    """The wire tag of ``cmd`` (``put_job``, ``drain``, ...)."""
    return _TAGS[type(cmd)]


def spec_features(spec: JobSpec) -> list[Feature]:
    """The gated job keys ``spec`` sets (keys left at their defaults are not encoded, so a
    job that does not use a key never needs its level)."""
    return [
        Feature(f"job key {f.key or f.attr!r} (job {spec.name!r})", f.since)
        for f in jobfields.JOB_FIELDS
        if f.since > 0 and getattr(spec, f.attr) != f.default
    ]


def command_features(cmd: c.Command) -> list[Feature]:
    """What ``cmd`` uses that is gated: its kind, and the keys of the jobs it puts."""
    kind = kind_of(cmd)
    out = [Feature(f"command {kind!r}", COMMAND_KINDS[kind])] if kind in COMMAND_KINDS else []
    match cmd:
        case c.PutJob():
            out += spec_features(cmd.spec)
        case c.SyncConfig():
            for spec in cmd.specs:
                out += spec_features(spec)
    return out


def refusal(features: Iterable[Feature], levels: Mapping[str, int]) -> Refusal | None:
    """The first feature some member in ``levels`` (member -> its level) is below, with
    every member below it; ``None`` when every member supports every feature."""
    for feature in sorted(features, key=lambda f: -f.level):
        behind = {n: lv for n, lv in levels.items() if lv < feature.level}
        if behind:
            return Refusal(feature, behind)
    return None


def prevote_on(levels: Mapping[str, int]) -> bool:
    """Whether pre-vote and leader stickiness run: every member in ``levels`` (member ->
    its level) is at :data:`PREVOTE_LEVEL` or later."""
    return bool(levels) and min(levels.values()) >= PREVOTE_LEVEL
