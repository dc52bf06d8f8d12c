"""``GET /metrics``: this node's :class:`raftcron.metrics.NodeMetrics` in Prometheus text.

Open without a token while ``api.open_health`` is true (see ``auth.py``). The handler only
renders the node's own registry; what the numbers mean is documented in
``raftcron/metrics.py``.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from raftcron.api.http import NODE_KEY

__all__ = ["CONTENT_TYPE", "PATH", "register"]

PATH: Final = "/metrics"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def register(app: web.Application) -> None:
    """Add ``GET /metrics`` to an API application whose ``app[NODE_KEY]`` has ``metrics``."""

    async def metrics(request: web.Request) -> web.Response:
        body = request.app[NODE_KEY].metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get(PATH, metrics)
