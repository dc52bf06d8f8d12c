"""``GET /v1/snapshot``: a backup of the replicated state, from the leader (admin only).

The state is captured under the state machine's lock, so it is the state after exactly
one applied entry (jobs, runs, locks and counters consistent with each other); it is
encoded off the event loop. Only an established leader that has heard from a majority
within an election timeout answers (its state holds every committed entry it has
acknowledged to a client); any other member answers 409 ``not_leader`` naming the leader
and its API, and ``raftcron snapshot save`` asks the next member. The body is a backup
file (``raftcron/backup.py``: magic, JSON header, checksummed msgpack body).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from raftcron.api.http import NODE_KEY, not_leader
from raftcron.backup import encode_backup
from raftcron.core.state import State

PATH = "/v1/snapshot"
CONTENT_TYPE = "application/vnd.raftcron.backup"


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("raftcron")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def get_snapshot(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    st = node.status()
    if not (st.is_leader and node.is_established_leader() and node.leader_fresh()):
        raise not_leader(node, "is not an established leader: a backup comes from the leader")

    def take(s: State) -> tuple[Any, str, dict[str, int]]:
        totals = s.totals()
        counts = {"jobs": totals.jobs, "runs": totals.runs, "locks": len(s.lock_list())}
        return s.capture(), s.cluster_id, counts

    produce, cluster_id, counts = node.read(take)
    created_ms = node.clock.wall_ms()
    members = [{"name": n.name, "raft": str(n.raft), "api": str(n.api)} for n in node.members()]

    def build() -> bytes:
        return encode_backup(
            produce(),
            members,
            raftcron_version=_version(),
            cluster_id=cluster_id,
            created_ms=created_ms,
            leader=node.name,
            raft_term=st.term,
            counts=counts,
        )

    data = await asyncio.to_thread(build)
    return web.Response(
        body=data,
        content_type=CONTENT_TYPE,
        headers={"Content-Disposition": f'attachment; filename="raftcron-{created_ms}.backup"'},
    )


def register(app: web.Application) -> None:
    app.router.add_get(PATH, get_snapshot)
