"""The container image's HEALTHCHECK: ``GET /health`` on this container's own agent.

Runs with the agent's own Python (the image has no curl). It finds the agent's address the
way the agent does: from the ``--config`` and ``--node`` the agent was started with (read
from ``/proc/<pid>/cmdline``, PID 1 by default: tini, whose arguments are the agent's), or
the single-node default ``127.0.0.1:8100`` without ``--config``. ``RAFTCRON_HEALTH_URL``
overrides all that (e.g. for a cluster file so large that reading it every interval costs
too much). ``/health`` needs no token unless ``[api] open_health = false``: then the
container needs ``RAFTCRON_TOKEN``.

Exit 0 when the agent answers 200 (a member that sees a leader), 1 otherwise, with one line
saying why (``docker inspect`` shows it).
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.error
import urllib.request


def agent_options(cmdline: list[str]) -> tuple[str | None, str | None]:
    """``--config`` and ``--node`` of a ``raftcron agent`` command line."""
    if "agent" not in cmdline:
        raise ValueError(f"not a raftcron agent: {' '.join(cmdline)}")
    args = cmdline[cmdline.index("agent") + 1 :]
    found: dict[str, str | None] = {"--config": None, "--node": None}
    for i, arg in enumerate(args):
        for opt in found:
            if arg == opt and i + 1 < len(args):
                found[opt] = args[i + 1]
            elif arg.startswith(opt + "="):
                found[opt] = arg[len(opt) + 1 :]
    return found["--config"], found["--node"]


def health_url(config: str | None, node: str | None) -> str:
    """The URL of the agent's ``/health``, from its cluster file (as the agent reads it)."""
    from raftcron.config import SINGLE_NODE_API, load_config

    if config is None:
        return f"http://{SINGLE_NODE_API}/health"
    if node is None:
        raise ValueError("the agent has --config but no --node")
    cfg = load_config(config)
    api = cfg.node(node).api
    scheme = "https" if cfg.api.tls_cert is not None else "http"
    host = "127.0.0.1" if api.host in ("0.0.0.0", "*", "") else api.host  # listens everywhere
    return f"{scheme}://{host}:{api.port}/health"


def check(url: str, token: str | None, timeout: float) -> tuple[bool, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    # The agent's own certificate may name only its public address: this probe asks the
    # process next to it, so it checks that TLS works, not whom the certificate names.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as exc:
        body = exc.read(200).decode("utf-8", "replace").strip()
        return False, f"{url}: {exc.code} {body}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{url}: {reason}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="GET /health on the local raftcron agent")
    ap.add_argument("--pid", type=int, default=1, help="the agent's (or tini's) PID")
    ap.add_argument("--timeout", type=float, default=4.0, help="seconds (default 4)")
    args = ap.parse_args(argv)
    try:
        url = os.environ.get("RAFTCRON_HEALTH_URL")
        if not url:
            with open(f"/proc/{args.pid}/cmdline", "rb") as f:
                cmdline = [a.decode() for a in f.read().split(b"\0") if a]
            url = health_url(*agent_options(cmdline))
    except Exception as exc:  # a health probe reports, it never shows a traceback
        print(f"unhealthy: cannot tell the agent's address: {exc}")
        return 1
    ok, what = check(url, os.environ.get("RAFTCRON_TOKEN"), args.timeout)
    print(("healthy: " if ok else "unhealthy: ") + what)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
