"""Membership: ``GET /v1/members``, ``POST /v1/members`` (add), ``DELETE
/v1/members/{name}`` (remove); raftcron/membership.py says how a change is carried out.

Writes need admin and run on the leader (a follower answers 409 ``not_leader`` naming the
leader; the CLI asks it): only the leader knows which members answer, and a removal that
would leave no answering majority is refused (409 ``no_majority``). Every refusal names
the fix and changes nothing: a name or address that clashes (409 ``member_clash``), a
change while another is in progress (409 ``change_in_progress``), the last member (409
``last_member``), an unknown member (404), a membership not yet seeded (409
``members_not_seeded``). A write answers once the change is in Raft's configuration
(``done``), or after :data:`WAIT_DONE_S` with ``done: false`` (an added member that must
answer first: a cluster of one growing to two needs the new member running).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Final

from aiohttp import web

from raftcron.api.http import NODE_KEY, ApiProblem, commit, invalid, not_leader, rejected
from raftcron.api.http import json_response as _json
from raftcron.api.http import read_body as _body
from raftcron.api.port import ClusterPort
from raftcron.clock import monotonic
from raftcron.core import commands as c
from raftcron.core.model import Member, MemberChange
from raftcron.core.state import Ok, Rejected
from raftcron.membership import STANDING_PATH, new_request, seal, sealed_by
from raftcron.raft.node import ProposalError

logger = logging.getLogger(__name__)

WAIT_DONE_S: Final = 8.0
TRANSFER_TIMEOUT: Final = 5.0
_ADDRESS: Final = re.compile(r"^[A-Za-z0-9.\-]{1,253}:[0-9]{1,5}$")
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")


def _leader_only(node: ClusterPort) -> None:
    st = node.status()
    if st.is_leader and node.is_established_leader():
        return
    raise not_leader(node, "is not the leader: membership changes run on the leader")


def _address(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if (
        not isinstance(value, str)
        or not _ADDRESS.match(value)
        or not 0 < int(value.rpartition(":")[2]) < 65536
    ):
        invalid(f"request body: {key} must be host:port (an IPv4 address or a host name)")
    return value


def _tags(raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    tags = raw.get("tags") or {}
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k for k, v in tags.items()
    ):
        invalid('request body: tags must be an object of strings ("zone": "a")')
    if len(tags) > 64:
        invalid("request body: at most 64 tags")
    return tuple(sorted(tags.items()))


def _check_add_quorum(node: ClusterPort, name: str) -> None:
    """409 ``no_majority`` unless the members that answer now are a majority of the
    configuration with the new member (which does not answer until it has started): Raft
    takes the new configuration as soon as its entry is appended, and a leader that does
    not hear from a majority of it steps down, with no other able to win an election
    (etcd's strict reconfiguration check)."""
    members = node.read(lambda s: dict(s.members))
    if not members or name in members:
        return  # (the state answers: not seeded, or a clash)
    st = node.status()
    answering = sorted(
        m.name for m in members.values() if m.name == node.name or m.raft in st.responsive
    )
    need = (len(members) + 1) // 2 + 1
    if len(answering) < need:
        silent = sorted(n for n in members if n not in answering)
        raise ApiProblem(
            409,
            "no_majority",
            f"adding {name} makes {len(members) + 1} members, of which {need} must answer "
            f"for the cluster to go on until {name} has started; only {len(answering)} do "
            f"({', '.join(answering)}; not answering: {', '.join(silent)}). Bring them back "
            "first, or remove a member that is gone first (replace = remove, then add)",
        )


async def _wait_done(node: ClusterPort, request: str) -> bool:
    deadline = monotonic() + WAIT_DONE_S
    while True:
        change = node.read(lambda s: s.member_change)
        if change is None or change.request != request or change.done:
            return True
        if monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)


def _change_json(change: MemberChange | None, done: bool) -> dict[str, Any] | None:
    if change is None:
        return None
    return {"op": change.op, "name": change.name, "raft": change.raft, "done": done}


async def list_members(request: web.Request) -> web.Response:
    """The members (the replicated ones once seeded, else this node's file's), each with
    whether it answers and is in Raft's configuration as this node sees it, the change in
    progress, the removed members, and how this node's file disagrees."""
    node = request.app[NODE_KEY]
    return _json(node.membership.view())


async def add_member(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    raw = await _body(request, ("name", "raft", "api", "tags", "request"))
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        invalid("request body: name must be 1-64 letters, digits, '.', '_' or '-'")
    member = Member(
        name=name, raft=_address(raw, "raft"), api=_address(raw, "api"), tags=_tags(raw)
    )
    req = raw.get("request") or new_request()
    if not isinstance(req, str) or len(req) > 128:
        invalid("request body: request must be a string of at most 128 characters")
    _leader_only(node)
    _check_add_quorum(node, name)
    res = await commit(node, c.AddMember(at_ms=node.clock.wall_ms(), member=member, request=req))
    if isinstance(res, Rejected):
        raise rejected(res)
    done = await _wait_done(node, req)
    got = node.read(lambda s: s.members.get(name))
    cluster_id = node.read(lambda s: s.cluster_id)
    start = f"raftcron agent --config FILE --node {name}" + (
        f" --cluster-id {cluster_id}" if cluster_id else ""
    )
    logger.info(
        "member %s (raft %s, api %s) added through the API on %s",
        name,
        member.raft,
        member.api,
        node.name,
    )
    return _json(
        {
            "member": {
                "name": name,
                "raft": member.raft,
                "api": member.api,
                "tags": dict(member.tags),
                "incarnation": got.incarnation if got is not None else None,
            },
            "change": _change_json(res.value if isinstance(res, Ok) else None, done),
            "cluster_id": cluster_id or None,
            "start": start,
        },
        201,
    )


async def remove_member(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    _leader_only(node)
    req = request.query.get("request") or new_request()
    members = node.read(lambda s: dict(s.members))
    if len(members) == 1 and name in members:
        raise ApiProblem(
            409,
            "last_member",
            f"{name} is the last member: a cluster keeps at least one (add its replacement first)",
        )
    if members and name in members:
        st = node.status()
        remaining = [m for n, m in members.items() if n != name]
        answering = [m.name for m in remaining if m.name == node.name or m.raft in st.responsive]
        if remaining and len(answering) <= len(remaining) // 2:
            silent = sorted(m.name for m in remaining if m.name not in answering)
            raise ApiProblem(
                409,
                "no_majority",
                f"removing {name} leaves {len(remaining)} members of which only "
                f"{len(answering)} answer ({', '.join(sorted(answering))}; not answering: "
                f"{', '.join(silent)}): the cluster would have no majority. Bring those "
                "members back first, or remove a member that does not answer first",
            )
        if name == node.name:
            # This leader is removed: it hands leadership off first, then the new leader
            # carries the removal out and this node stops (exit status 2).
            target = node.drain_successor()
            if target is None:
                raise ApiProblem(
                    409,
                    "no_successor",
                    f"{name} leads and no other responsive member can take over: bring "
                    "another member back first",
                )
            try:
                await node.transfer_leadership(target, TRANSFER_TIMEOUT)
            except ProposalError as exc:
                raise ApiProblem(
                    503, exc.code, f"leadership did not move off {name}: {exc}; retry"
                ) from None
    res = await commit(node, c.RemoveMember(at_ms=node.clock.wall_ms(), name=name, request=req))
    if isinstance(res, Rejected):
        raise rejected(res)
    done = name == node.name or await _wait_done(node, req)
    logger.info("member %s removed through the API on %s", name, node.name)
    return _json(
        {
            "removed": name,
            "change": _change_json(res.value if isinstance(res, Ok) else None, done),
        }
    )


async def standing(request: web.Request) -> web.Response:
    """Whether member ``name`` was removed, for that member itself (raftcron/membership.py):
    no token; the question must be sealed with the cluster secret (403 otherwise) and the
    answer is (``proof``), so nobody without the secret learns anything or makes a node
    stop."""
    node = request.app[NODE_KEY]
    q = request.query
    name, nonce, mac = q.get("name", ""), q.get("nonce", ""), q.get("mac", "")
    secrets = [node.config.cluster.secret, node.config.cluster.previous_secret or ""]
    if not (0 < len(name) <= 256 and 0 < len(nonce) <= 64) or not sealed_by(
        secrets, mac, "ask", nonce, name
    ):
        raise ApiProblem(403, "forbidden", "the question is not sealed with the cluster secret")
    removed, member = node.read(
        lambda s: (name in s.removed and name not in s.members, not s.members or name in s.members)
    )
    body: dict[str, Any] = {"name": name, "removed": removed, "member": member}
    if removed:
        body["proof"] = seal(node.config.cluster.secret, "removed", nonce, name)
    return _json(body)


def register(app: web.Application) -> None:
    r = app.router
    r.add_get(STANDING_PATH, standing)
    r.add_get("/v1/members", list_members)
    r.add_post("/v1/members", add_member)
    r.add_delete("/v1/members/{name}", remove_member)
