"""The dashboard: one static page at ``/``, served by every node's API.

The page (``static/dashboard.html``) has no build step and no external assets: inline CSS
and vanilla JS that poll ``/v1/status``, ``/v1/jobs`` and ``/v1/runs?limit=50`` every 2 s
from the node that served it, so it works on a follower and keeps showing the last data
with a banner when that node stops answering.

The page itself carries no cluster data, so ``/`` is open even when API tokens are
configured; the page's requests carry the token (taken from ``#token=...`` in the URL,
kept in the tab's sessionStorage) as ``Authorization: Bearer`` and obey the same rules as
any other client. A Content-Security-Policy with the hashes of the inline script and style
allows nothing else: no other origin, no injected script.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files

from aiohttp import web

PATH = "/"
"""Where the dashboard is served (also listed by auth as an open path)."""

PAGE: bytes = files("raftcron.api").joinpath("static/dashboard.html").read_bytes()


def _hashes(tag: str) -> str:
    pattern = re.compile(rb"<" + tag.encode() + rb">(.*?)</" + tag.encode() + rb">", re.S)
    out = []
    for body in pattern.findall(PAGE):
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        out.append(f"'sha256-{digest}'")
    return " ".join(out) or "'none'"


CSP = "; ".join(
    [
        "default-src 'none'",
        f"script-src {_hashes('script')}",
        f"style-src {_hashes('style')}",
        "connect-src 'self'",
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def dashboard(request: web.Request) -> web.Response:
    return web.Response(body=PAGE, content_type="text/html", charset="utf-8", headers=dict(HEADERS))


def register(app: web.Application) -> None:
    """Add ``GET /`` (and ``HEAD /``) to an API application."""
    app.router.add_get(PATH, dashboard)
