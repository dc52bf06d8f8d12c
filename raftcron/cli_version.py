"""``raftcron version``: this CLI's version and every member's, each asked through its own
``GET /v1/status`` (the members come from the status of the first ``--api`` member that
answers). A member that does not answer is shown ``unreachable``; one that answers without
a version runs a raftcron older than the field."""

from __future__ import annotations

import argparse

from raftcron.cliutil import (
    call,
    client_from_args,
    installed_version,
    print_json,
    table,
    wants_json,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from raftcron.client import Client

MEMBER_TIMEOUT = 3.0  # seconds at most for each member's own answer


def add_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    v: argparse.ArgumentParser = sub.add_parser(
        "version",
        parents=[common],
        help="this CLI's version and every member's (unreachable ones marked)",
    )
    v.set_defaults(fn=cmd_version)
    return v


def _ask(base: Client, name: str, api: str) -> dict[str, Any]:
    from raftcron.client import ApiError, ApiUnavailable, Client

    entry: dict[str, Any] = {"name": name, "api": api, "version": None, "reachable": False}
    try:
        member = Client(
            api,
            token=base.token,
            timeout=min(base.timeout, MEMBER_TIMEOUT),
            ssl_context=base.ssl_context,
        )
        st = member.status()
    except ApiUnavailable as exc:
        entry["error"] = exc.reason
    except ApiError as exc:
        entry["error"] = f"HTTP {exc.status} {exc.code}"
    except ValueError as exc:  # an API address the client cannot use
        entry["error"] = str(exc)
    else:
        entry["reachable"] = True
        entry["version"] = st.version
        if st.node != name:
            entry["error"] = f"answered as node {st.node}"
    return entry


def cmd_version(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    client = client_from_args(args)
    st = call(client.status)
    with ThreadPoolExecutor(max_workers=max(1, len(st.members))) as pool:
        members = list(pool.map(lambda m: _ask(client, m.name, m.api), st.members))
    for entry, member in zip(members, st.members, strict=True):
        # the level each member advertised in the replicated state (0: none, older)
        entry["feature_level"] = member.feature_level
    mine = installed_version()
    if wants_json(args):
        print_json({"client": mine, "members": members})
        return 0
    print(f"client: raftcron {mine}")
    rows = []
    for m in members:
        version: str
        note: str | None
        if not m["reachable"]:
            version, note = "-", f"unreachable ({m.get('error')})"
        elif m["version"] is None:
            version, note = "-", "answers without a version (older than this field)"
        else:
            version, note = m["version"], m.get("error")
        rows.append([m["name"], version, m["feature_level"], m["api"], note])
    print(table(rows, ["member", "version", "level", "api", "note"]))
    low = min((m["feature_level"] for m in members), default=0)
    print(f"cluster feature level: {low} (a feature of a higher level needs every member "
          "upgraded)")  # fmt: skip
    return 0
