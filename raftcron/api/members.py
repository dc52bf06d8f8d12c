"""Members: drain (``/v1/members/{name}/drain``), reload (``/v1/members/{name}/reload``),
leader transfer (``/v1/leader/transfer``) and the health checks (``/health``,
``/health/leader``).

Reload re-reads the cluster file of the member that serves the request
(``raftcron/reload.py``): it must be the member named in the path; any other answers 409
``wrong_member`` naming that member's API, and nothing is forwarded.

Drain and undrain are replicated commands (``Drain``), so any member carries them out for
any member; the member is always named in the path and nothing falls back to another one.
Leader transfer runs on the leader (Raft's TimeoutNow from its tick thread): a follower
answers 409 ``not_leader`` naming the leader and its API, and the CLI asks that leader.

Health tells the truth (docs/operations.md, "Health"):

* ``/health`` is 200 on a member that sees a leader it can reach, whose storage works
  (a journal or snapshot write failure: 503 ``failed`` at once) and whose applied state
  is less than ``[cluster] max_apply_lag`` behind the leader's commit, measured in time
  (503 ``lagging``). A leader that has not heard from a majority within an election
  timeout does not count as one.
* ``/health/leader`` is 200 only on an established leader that has heard from a majority
  within an election timeout (leadership freshness, not pysyncobj's flag), with working
  storage and applied state that keeps up.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from raftcron.api.http import NODE_KEY, ApiProblem, commit, invalid, not_leader, rejected
from raftcron.api.http import json_response as _json
from raftcron.api.http import read_body as _body
from raftcron.core import commands as c
from raftcron.core import features
from raftcron.core.model import DRAIN_OPERATOR
from raftcron.core.state import Rejected
from raftcron.drain import drain_view
from raftcron.raft.node import ProposalError
from raftcron.reload import ReloadGated, ReloadIncomplete, ReloadRefused
from raftcron.timefmt import rfc3339

if TYPE_CHECKING:
    from raftcron.api.port import ClusterPort
    from raftcron.core.state import State

logger = logging.getLogger(__name__)

TRANSFER_TIMEOUT: Final = 5.0


# --------------------------------------------------------------------------- views


def drain_json(s: State, name: str) -> dict[str, Any] | None:
    """Member ``name``'s drain as the API shows it (None: not drained)."""
    view = drain_view(s, name)
    if view is None:
        return None
    return {
        "state": view["state"],
        "kind": view["kind"],
        "since": rfc3339(view["since_ms"]),
        "live_runs": view["live_runs"],
    }


def add_drains(node: ClusterPort, members: list[dict[str, Any]]) -> None:
    """Put each member's ``drain`` (None or its view) into ``/v1/status`` members."""
    names = [m["name"] for m in members]
    views = node.read(lambda s: {n: drain_json(s, n) for n in names})
    for m in members:
        m["drain"] = views[m["name"]]


def add_config(node: ClusterPort, members: list[dict[str, Any]]) -> dict[str, Any]:
    """Put each member's ``config_hash`` (None: not reported yet), ``version`` and
    ``feature_level`` into ``/v1/status`` members; the status's own ``config_hash``,
    ``reconciled_config_hash`` and ``config_drift`` (members whose file differs from the
    leader's: raftcron/reload.py), ``feature_level`` (this node's) and
    ``cluster_feature_level`` (the lowest member's: raftcron/core/features.py)."""
    view = node.config_status()
    for m in members:
        m["config_hash"] = view["members"].get(m["name"])
        # what it advertised (None, level 0: nothing, a release from before levels)
        adv = view["versions"].get(m["name"])
        m["version"], m["feature_level"] = (None, 0) if adv is None else adv
    levels = [int(m["feature_level"]) for m in members]
    return {
        **{k: view[k] for k in ("config_hash", "reconciled_config_hash", "config_drift")},
        "feature_level": features.FEATURE_LEVEL,  # this node's
        # the features enabled: what every member supports
        "cluster_feature_level": min(levels, default=features.FEATURE_LEVEL),
    }


def _member_json(node: ClusterPort, name: str) -> dict[str, Any]:
    st = node.status()
    addr = _addr_of(node, name)
    return {
        "node": name,
        "drained": node.read(lambda s: s.drain_mark(name) is not None),
        "drain": node.read(lambda s: drain_json(s, name)),
        "leader": st.leader == addr and st.leader is not None,
    }


def _addr_of(node: ClusterPort, name: str) -> str:
    members = node.members()
    for n in members:
        if n.name == name:
            return str(n.raft)
    known = ", ".join(n.name for n in members)
    raise ApiProblem(404, "unknown_member", f"no member named {name!r} (members: {known})")


# --------------------------------------------------------------------------- drain


async def _propose_drain(node: ClusterPort, name: str, on: bool) -> None:
    cmd = c.Drain(at_ms=node.clock.wall_ms(), node=name, drain=on, kind=DRAIN_OPERATOR)
    res = await commit(node, cmd, headers={"Retry-After": "1"})
    if isinstance(res, Rejected):
        raise rejected(res)


async def drain_member(request: web.Request) -> web.Response:
    """Drain member ``name``: no new grants; its runs finish; if it leads, it hands
    leadership off. Repeating it changes nothing."""
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    _addr_of(node, name)
    await _body(request, ())
    await _propose_drain(node, name, True)
    logger.info("member %s drained through the API on %s", name, node.name)
    return _json(_member_json(node, name))


async def undrain_member(request: web.Request) -> web.Response:
    """Lift member ``name``'s drain (an operator's or a shutdown's)."""
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    _addr_of(node, name)
    await _propose_drain(node, name, False)
    logger.info("member %s undrained through the API on %s", name, node.name)
    return _json(_member_json(node, name))


async def get_drain(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    _addr_of(node, name)
    return _json(_member_json(node, name))


# --------------------------------------------------------------------------- reload


async def reload_member(request: web.Request) -> web.Response:
    """Re-read this member's cluster file (``raftcron/reload.py``): 200 with what changed,
    400 ``invalid_config`` (every problem, the running configuration stays), 409
    ``wrong_member`` on another member, 503 when the leader's jobs did not commit."""
    node = request.app[NODE_KEY]
    name = request.match_info["name"]
    _addr_of(node, name)
    await _body(request, ())
    if name != node.name:
        api = next(
            (f"{node.api_scheme}://{n.api}" for n in node.members() if n.name == name),
            "?",
        )
        raise ApiProblem(
            409,
            "wrong_member",
            f"this is {node.name}; a reload re-reads the file of the member it is sent to: "
            f"send it to {name} at {api}",
        )
    try:
        body = await node.reload_config()
    except ReloadGated as exc:
        raise ApiProblem(409, "feature_not_enabled", "\n".join(exc.errors)) from None
    except ReloadRefused as exc:
        raise ApiProblem(
            400,
            "invalid_config",
            "the file was refused, the running configuration stays:\n" + "\n".join(exc.errors),
        ) from None
    except ReloadIncomplete as exc:
        raise ApiProblem(503, "not_committed", str(exc), {"Retry-After": "1"}) from None
    return _json(body)


# --------------------------------------------------------------------------- leader transfer


async def transfer_leader(request: web.Request) -> web.Response:
    """Hand leadership to ``to`` (a member name; default: the most caught-up responsive
    member that is not drained). Only the leader can: 409 ``not_leader`` elsewhere."""
    node = request.app[NODE_KEY]
    raw = await _body(request, ("to",))
    to = raw.get("to")
    if to is not None and not isinstance(to, str):
        invalid("request body: to must be a member name")
    target = None if to is None else _addr_of(node, to)
    st = node.status()
    if not st.is_leader:
        raise not_leader(node, "is not the leader")
    if to == node.name:
        return _json({"from": node.name, "to": node.name, "term": st.term, "moved": False})
    if target is None:
        target = node.drain_successor()
        if target is None:
            raise ApiProblem(
                409, "no_successor", "no other responsive member that is not drained can lead"
            )
    try:
        new = await node.transfer_leadership(target, TRANSFER_TIMEOUT)
    except ProposalError as exc:
        if exc.code == "not_leader":
            raise ApiProblem(409, "not_leader", f"{node.name} is not the leader any more") from None
        raise ApiProblem(
            503,
            exc.code,
            f"leadership did not move to {node.node_name(target)}: {exc} (the member must be "
            "responsive and caught up; retry)",
        ) from None
    to = node.node_name(new) if new else node.node_name(target)
    logger.info("leadership of %s handed to %s through the API", node.name, to)
    return _json({"from": node.name, "to": to, "term": node.status().term, "moved": True})


# --------------------------------------------------------------------------- health


def health_problem(node: ClusterPort) -> tuple[str, str] | None:
    """Why this member is not healthy (``(status, reason)``), None if it is."""
    failed = node.failed or node.fatal()
    if failed is not None:
        return "failed", failed
    lag = node.apply_lag()
    limit = node.config.cluster.max_apply_lag_ms / 1000
    if lag > limit:
        st = node.status()
        return (
            "lagging",
            f"applied index {st.last_applied} has been behind the leader's commit "
            f"({st.leader_commit}) for {lag:.1f}s (cluster.max_apply_lag = {limit:g}s)",
        )
    return None


async def health(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    st = node.status()
    problem = health_problem(node)
    leader = node.node_name(st.leader)
    if problem is not None:
        status, reason = problem
        return _json({"status": status, "leader": leader, "reason": reason}, 503)
    reachable = st.leader is not None and (
        node.leader_fresh() if st.is_leader else st.leader in st.connected
    )
    if not reachable:
        return _json({"status": "no_leader", "leader": None}, 503)
    return _json({"status": "ok", "leader": leader})


async def health_leader(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    st = node.status()
    problem = health_problem(node)
    if problem is not None:
        status, reason = problem
        return _json({"status": status, "leader": None, "reason": reason}, 503)
    if node.is_established_leader() and node.leader_fresh():
        return _json({"status": "leader", "node": node.name})
    body: dict[str, Any] = {"status": "not_leader", "leader": node.node_name(st.leader)}
    if st.is_leader:
        body["reason"] = (
            "not established yet"
            if not node.is_established_leader()
            else "has not heard from a majority within an election timeout"
        )
        body["leader"] = None
    return _json(body, 503)


def register(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/members/{name}/drain", get_drain)
    r.add_post("/v1/members/{name}/drain", drain_member)
    r.add_delete("/v1/members/{name}/drain", undrain_member)
    r.add_post("/v1/members/{name}/reload", reload_member)
    r.add_post("/v1/leader/transfer", transfer_leader)
