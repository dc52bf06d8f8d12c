"""Feature levels: what a member understands, and what the cluster may be asked to do.

Every release has a feature level, ``FEATURE_LEVEL`` (an integer that only grows). Each
member advertises its own in the replicated state (``ReportConfig``: ``version`` and
``level``, kept in ``State.member_versions``); a member that advertises nothing (a
release from before levels) is level 0.

A command kind or a job key newer than level 0 is named in ``COMMAND_KINDS`` or
``JOB_KEYS`` with the level that introduced it. The leader, and every API node before it
proposes, accepts a command that uses one only once every member's level is at least that
(:func:`refusal`): an older member would drop the key or skip the command, and its replica
(and what it runs) would silently differ. The API answers 409 ``feature_not_enabled``
naming the feature and the members still to upgrade; a cluster file that uses one is not
reconciled at all until they are (``raftcron/scheduler/leader.py``).

What is level 0: everything a node that advertises nothing decodes. Such nodes are
releases from before levels: v0.1.0, and main between v0.1.0 and this module. v0.1.0 does
not speak the Raft wire of later releases (CHANGELOG: upgrading from v0.1.0 is a full
stop), so it is never a member beside a node that enforces the gate; the command kinds
added after it (``drain``, ``mark_broken``, ``config_report``) are decoded by every node
that can be. They stay level 0: gating them would refuse drains during the very rolling
upgrade that needs them, and the level itself travels in ``config_report``.

``stdin`` is level 1: nodes of main before levels decode it too, so it is gated more
strictly than it needs to be, on purpose: it is the first key this gate guards and the
one the rolling-upgrade test writes (``tests/cluster/test_rolling_upgrade.py``).

One place: a table of job keys and command kinds with a ``since`` on each can take these
mappings over; nothing else names a level.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import msgpack

from raftcron.core import commands as c
from raftcron.core.model import JobSpec

# This release's level (0.2.0). Raise it, and name what it introduces below, whenever a
# release adds a command kind or a job key that older members cannot decode.
FEATURE_LEVEL: Final = 1

# Job key (as in a [[jobs]] table and the wire) -> the level that introduced it.
JOB_KEYS: Final[Mapping[str, int]] = MappingProxyType({"stdin": 1})

# Command kind (the wire tag ``t``) -> the level that introduced it. Kinds not named are
# level 0 (see the module docstring for why ``drain``, ``mark_broken`` and
# ``config_report`` are).
COMMAND_KINDS: Final[Mapping[str, int]] = MappingProxyType({})

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
    body = msgpack.unpackb(c.encode(cmd), raw=False)
    return str(body["t"])


def spec_features(spec: JobSpec) -> list[Feature]:
    """The gated job keys ``spec`` sets (keys left at their defaults are not encoded, so a
    job that does not use a key never needs its level)."""
    used = [k for k in c.spec_to_wire(spec) if k in JOB_KEYS]
    return [Feature(f"job key {k!r} (job {spec.name!r})", JOB_KEYS[k]) for k in used]


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
