"""Run-time membership (docs/design.md, "Membership"; issue 15 item 1).

* **Who the members are.** The cluster file's ``[cluster.nodes]`` seeds a new cluster:
  once every member of the leader's file advertises feature level 2, the leader proposes
  ``members_seed`` from its file. From then on the replicated membership
  (``State.members``) is the truth: placement, status, drain, leader transfer, metrics
  and the gate read :meth:`MembershipControl.members`; a node whose file disagrees says
  so in a WARNING (and ``check-config --api``, ``status``).
* **One change at a time.** ``member_add`` / ``member_remove`` commit in raftcron's log
  first (the API checks what the state cannot: a majority of the remaining members
  answers). The leader then carries the change into Raft's own configuration (pysyncobj's
  membership entry, through :meth:`RaftNode.change_membership`) and, once that entry has
  committed, proposes ``member_changed``; until then every other change is refused. A new
  leader finds a pending change in the state and finishes it (it looks at its own Raft
  configuration: the entry may already be in its log).
* **A removed member never comes back.** The others refuse it on the Raft port
  (``State.removed_reason``); a node that applies its own removal stops with exit status
  2 and a message naming the fix (a leader first hands leadership off). A node that was
  down during its removal never applies it (nobody sends it the log), so at start, and
  every :data:`STANDING_EVERY_S` while it sees no leader, it asks the others'
  ``GET /v1/membership/standing``, question and answer sealed with the cluster secret
  (nobody without it can make a node stop), and stops the same way when told.
* **Safety checks the state cannot make** run on the leader (``raftcron/api/membership.py``):
  the members that answer must stay a majority after the change.

Every proposal has a deadline; nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets as _secrets
import ssl
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from raftcron.config import HostPort, NodeConfig
from raftcron.core import commands as c
from raftcron.core import features
from raftcron.core.model import MEMBER_ADD, Member, MemberChange
from raftcron.raft.node import ProposalError

if TYPE_CHECKING:
    from raftcron.clock import Clock
    from raftcron.config import Config
    from raftcron.core.state import Result, State
    from raftcron.raft.node import Machine, RaftNode, RaftStatus


class MembershipHost(Protocol):
    """What the membership control needs of the node that owns it (``Node``; a Protocol,
    so that this module does not import the node)."""

    @property
    def name(self) -> str: ...
    @property
    def me(self) -> NodeConfig: ...
    @property
    def config(self) -> Config: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def machine(self) -> Machine: ...
    @property
    def raft(self) -> RaftNode: ...
    @property
    def api_scheme(self) -> str: ...
    def status(self) -> RaftStatus: ...
    def is_established_leader(self) -> bool: ...
    async def propose(self, cmd: c.Command, timeout: float) -> Result: ...  # noqa: ASYNC109
    async def transfer_leadership(self, target: str | None, timeout: float) -> str: ...  # noqa: ASYNC109


logger = logging.getLogger(__name__)

LOOK_EVERY_S: Final = 0.5
PROPOSE_TIMEOUT: Final = 5.0
CHANGE_TIMEOUT: Final = 10.0  # for Raft's membership entry to commit
TRANSFER_TIMEOUT: Final = 5.0
DRIFT_EVERY_S: Final = 60.0  # how often a file that disagrees is named again
SEED_LEVEL: Final = features.COMMAND_KINDS["members_seed"]
STANDING_PATH: Final = "/v1/membership/standing"
STANDING_EVERY_S: Final = 10.0  # a node that sees no leader asks this often


def _get_json(url: str) -> object:
    """GET ``url`` (2 s); an https peer's certificate is not verified: the answer that
    matters is sealed with the cluster secret."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=2.0, context=ctx) as r:
        return json.loads(r.read())


REMOVED_FIX: Final = (
    "this node was removed from the cluster (raftcron members remove) and never takes part "
    "again; to bring this server back, stop it, empty its data dir and add it under a new "
    "name (raftcron members add NAME --raft H:P --api H:P), or remove it from the "
    "cluster file"
)


def _hostport(address: str) -> HostPort:
    host, _, port = address.rpartition(":")
    return HostPort(host=host, port=int(port))


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberInfo:
    """A member as the rest of the node reads it (the shape of a file's ``NodeConfig``:
    ``name``, ``raft``, ``api``, ``tags``), from the replicated membership or, before the
    seed, from the cluster file."""

    name: str
    raft: HostPort
    api: HostPort
    tags: tuple[tuple[str, str], ...] = ()
    incarnation: int = 0

    @classmethod
    def of_member(cls, m: Member) -> MemberInfo:
        return cls(
            name=m.name,
            raft=_hostport(m.raft),
            api=_hostport(m.api),
            tags=m.tags,
            incarnation=m.incarnation,
        )

    @classmethod
    def of_node(cls, n: NodeConfig) -> MemberInfo:
        return cls(name=n.name, raft=n.raft, api=n.api, tags=n.tags)


def member_of_node(n: NodeConfig) -> Member:
    return Member(name=n.name, raft=str(n.raft), api=str(n.api), tags=n.tags)


def file_disagreement(file_nodes: tuple[NodeConfig, ...], members: list[Member]) -> list[str]:
    """How a cluster file's ``[cluster.nodes]`` differs from the replicated membership:
    one line per member missing, extra or different (empty: they agree)."""
    have = {m.name: m for m in members}
    out: list[str] = []
    for n in file_nodes:
        m = have.pop(n.name, None)
        if m is None:
            out.append(f"{n.name} is in the file but not a member")
            continue
        if (str(n.raft), str(n.api), n.tags) != (m.raft, m.api, m.tags):
            out.append(
                f"{n.name}: the file says raft {n.raft}, api {n.api}, tags "
                f"{dict(n.tags)}; the cluster says raft {m.raft}, api {m.api}, tags "
                f"{dict(m.tags)}"
            )
    out.extend(f"{name} is a member but not in the file" for name in sorted(have))
    return out


class MembershipControl:
    """The membership loop of one node (see the module docstring)."""

    def __init__(self, node: MembershipHost) -> None:
        self.node = node
        # Why this node stopped for having been removed (the CLI exits 2 with it).
        self.removed: str | None = None
        self._inflight: set[str] = set()  # change requests whose Raft entry we await
        self._carried: set[str] = set()  # change requests whose Raft entry committed
        self._told_not_member = False  # (the standing check said so once)
        self._drift_said: tuple[str, ...] = ()
        self._drift_at = -DRIFT_EVERY_S

    # -- reads

    def seeded(self) -> bool:
        return self.node.machine.read(lambda s: bool(s.members))

    def members(self) -> tuple[MemberInfo, ...]:
        """The members: the replicated ones once seeded, else the cluster file's."""
        got = self.node.machine.read(lambda s: tuple(s.members.values()))
        if got:
            return tuple(MemberInfo.of_member(m) for m in got)
        return tuple(MemberInfo.of_node(n) for n in self.node.config.cluster.nodes)

    def view(self) -> dict[str, Any]:
        """``GET /v1/members``: the members, the change in progress, the removed ones."""

        def read(s: State) -> tuple[list[Member], list[Member], MemberChange | None, str]:
            return (
                [s.members[n] for n in sorted(s.members)],
                [s.removed[n] for n in sorted(s.removed)],
                s.member_change,
                s.cluster_id,
            )

        members, removed, change, cluster_id = self.node.machine.read(read)
        seeded = bool(members)
        if not seeded:
            members = [member_of_node(n) for n in self.node.config.cluster.nodes]
        st = self.node.status()
        alive = st.responsive if st.is_leader else st.connected
        mine = str(self.node.me.raft)

        def row(m: Member) -> dict[str, Any]:
            return {
                "name": m.name,
                "raft": m.raft,
                "api": m.api,
                "tags": dict(m.tags),
                "incarnation": m.incarnation,
                "leader": st.leader == m.raft,
                "in_raft_config": m.raft == mine or m.raft in st.config,
                "answering": m.raft == mine or m.raft in alive,
            }

        return {
            "seeded": seeded,
            "cluster_id": cluster_id or None,
            "members": [row(m) for m in members],
            "change": None
            if change is None
            else {
                "op": change.op,
                "name": change.name,
                "raft": change.raft,
                "request": change.request,
                "done": change.done,
            },
            "removed": [
                {"name": m.name, "raft": m.raft, "incarnation": m.incarnation} for m in removed
            ],
            "file_disagrees": file_disagreement(self.node.config.cluster.nodes, members)
            if seeded
            else [],
        }

    # -- the loop

    async def run(self, stop: asyncio.Event) -> None:
        asked_at = -STANDING_EVERY_S
        while not stop.is_set():
            try:
                if await self._check_removed():
                    stop.set()
                    return
                st = self.node.status()
                now = self.node.clock.monotonic()
                if (st.leader is None or not st.ready) and now - asked_at >= STANDING_EVERY_S:
                    asked_at = now
                    if await self._ask_standing():
                        stop.set()
                        return
                if self.node.is_established_leader():
                    await self._seed()
                    await self._carry()
                self._say_drift()
            except ProposalError:
                pass  # (tried again on the next look)
            except Exception:
                logger.exception("node %s: membership loop failed", self.node.name)
            await asyncio.sleep(LOOK_EVERY_S)

    async def _check_removed(self) -> bool:
        """Whether this node has applied its own removal (a leader hands off first)."""
        name = self.node.name
        removed = self.node.machine.read(lambda s: name in s.removed and name not in s.members)
        if not removed:
            return False
        st = self.node.status()
        if st.is_leader:
            with contextlib.suppress(ProposalError):
                await self.node.transfer_leadership(None, TRANSFER_TIMEOUT)
        self.removed = f"node {name}: {REMOVED_FIX}"
        logger.critical("%s (exit status 2)", self.removed)
        return True

    async def _ask_standing(self) -> bool:
        """Whether a peer says, sealed with the cluster secret, that this node was removed
        (it was down during its removal: the others refuse it, so its log never tells it).
        Asked at start and every :data:`STANDING_EVERY_S` while this node sees no leader."""
        node = self.node
        name = node.name
        peers = [m for m in self.members() if m.name != name]
        if not peers:
            return False
        secret = node.config.cluster.secret
        previous = node.config.cluster.previous_secret
        for peer in peers:
            url = f"{node.api_scheme}://{peer.api}{STANDING_PATH}"
            nonce = _secrets.token_hex(16)
            query = "?" + urllib.parse.urlencode(
                {"name": name, "nonce": nonce, "mac": seal(secret, "ask", nonce, name)}
            )
            try:
                body = await asyncio.to_thread(_get_json, url + query)
            except Exception:
                continue  # (not answering: the next one)
            if not isinstance(body, dict):
                continue
            if body.get("removed") is not True:
                if body.get("member") is False and not self._told_not_member:
                    self._told_not_member = True
                    logger.warning(
                        "node %s: member %s says %s is not a member of the cluster: add it "
                        "first (raftcron members add %s --raft H:P --api H:P), or fix its name",
                        name,
                        peer.name,
                        name,
                        name,
                    )
                continue
            proof = str(body.get("proof") or "")
            if not sealed_by([secret, previous or ""], proof, "removed", nonce, name):
                logger.warning("node %s: %s says it was removed, unsealed: ignored", name, url)
                continue
            self.removed = f"node {name}: member {peer.name} says: {REMOVED_FIX}"
            logger.critical("%s (exit status 2)", self.removed)
            return True
        return False

    async def _seed(self) -> None:
        """Seed the replicated membership from this leader's file once every member of the
        file advertises the level that knows it."""
        node = self.node
        file_nodes = node.config.cluster.nodes
        names = [n.name for n in file_nodes]

        def ready(s: State) -> bool:
            if s.members:
                return False
            levels = {n: v[1] for n, v in s.member_version_map().items()}
            levels[node.name] = features.FEATURE_LEVEL
            return all(levels.get(n, 0) >= SEED_LEVEL for n in names)

        if not node.machine.read(ready):
            return
        cmd = c.SeedMembers(
            at_ms=node.clock.wall_ms(), members=tuple(member_of_node(n) for n in file_nodes)
        )
        res = await node.propose(cmd, PROPOSE_TIMEOUT)
        logger.info(
            "node %s: seeded the replicated membership from the cluster file (%s): %s",
            node.name,
            ", ".join(names),
            res,
        )

    async def _carry(self) -> None:
        """Carry the pending change into Raft's configuration, then mark it done."""
        node = self.node
        change = node.machine.read(lambda s: s.member_change)
        if change is None or change.done or change.request in self._inflight:
            return
        st = node.status()
        mine = str(node.me.raft)
        if change.raft == mine and change.op != MEMBER_ADD:
            return  # this leader is the one removed: _check_removed hands off first
        in_config = change.raft == mine or change.raft in st.config
        want = change.op == MEMBER_ADD
        if in_config != want:
            self._inflight.add(change.request)
            try:
                ok = await node.raft.change_membership(change.op, change.raft, CHANGE_TIMEOUT)
            finally:
                self._inflight.discard(change.request)
            if not ok:
                return  # (not appended now: tried again on the next look)
            logger.info(
                "node %s: Raft's configuration now %s %s (%s)",
                node.name,
                "has" if want else "lacks",
                change.name,
                change.raft,
            )
        # In this leader's configuration: the entry is in its log, before its barrier (an
        # established leader's: committed) or appended and committed just now.
        await node.propose(
            c.MemberChanged(at_ms=node.clock.wall_ms(), request=change.request), PROPOSE_TIMEOUT
        )

    def _say_drift(self) -> None:
        node = self.node
        now = node.clock.monotonic()
        members = node.machine.read(lambda s: [s.members[n] for n in sorted(s.members)])
        if not members:
            return
        lines = tuple(file_disagreement(node.config.cluster.nodes, members))
        if not lines:
            self._drift_said = ()
            return
        if lines == self._drift_said and now - self._drift_at < DRIFT_EVERY_S:
            return
        self._drift_said, self._drift_at = lines, now
        logger.warning(
            "node %s: its cluster file %s disagrees with the replicated membership (which is "
            "the truth once seeded; raftcron members list shows it): %s. Update the file's "
            "[cluster.nodes] to match (it only seeds a new cluster)",
            node.name,
            node.config.path,
            "; ".join(lines),
        )


def count_problem(spec: Any, members: tuple[MemberInfo, ...]) -> str | None:
    """Why job ``spec``'s ``count`` cannot be met by the members (the replicated ones once
    seeded: the cluster file's check only knows the file's), or None."""
    count = int(spec.count)
    if count <= 1:  # (1, or COUNT_ALL: every matching member)
        return None
    want = dict(spec.tags)
    fit = [m.name for m in members if all(dict(m.tags).get(k) == v for k, v in want.items())]
    if len(fit) >= count:
        return None
    tags = ", ".join(f"{k}={v}" for k, v in spec.tags)
    return (
        f"count: {count} instances per fire, but only {len(fit)} member(s) of the cluster "
        f"match tags {{{tags}}} ({', '.join(fit) or 'none'}): instances beyond them are "
        'recorded as skipped (lower count, use count = "all", or add or tag members)'
    )


def seal(secret: str, *parts: str) -> str:
    """An HMAC-SHA256 of ``parts`` under the cluster secret (the standing check)."""
    msg = "\x00".join(parts).encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def sealed_by(secrets: list[str], mac: str, *parts: str) -> bool:
    """Whether ``mac`` seals ``parts`` under one of ``secrets``. A ``mac`` that is not
    ASCII is no seal (``hmac.compare_digest`` raises on such a string)."""
    if not mac.isascii():
        return False
    return any(hmac.compare_digest(seal(s, *parts), mac) for s in secrets if s)


def new_request() -> str:
    """A fresh idempotency key for a membership change."""
    return uuid.uuid4().hex
