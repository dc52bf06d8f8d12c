"""``raftcron members list | add NAME --raft H:P --api H:P [--tags k=v,...] | remove NAME``
(``GET/POST /v1/members``, ``DELETE /v1/members/{name}``; raftcron/membership.py).

Writes run on the leader: a member that is not the leader answers 409 ``not_leader`` and
the request goes once to the leader it names. Each write carries a fresh request id, so a
retry after a lost answer returns the first outcome instead of a second change."""

from __future__ import annotations

import argparse
import uuid
from typing import Any
from urllib.parse import quote

from raftcron.cliutil import (
    EXIT_USAGE,
    CliError,
    call,
    client_from_args,
    one_line,
    print_json,
    table,
    wants_json,
)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    m = sub.add_parser(
        "members",
        help="the cluster's members: list | add NAME --raft H:P --api H:P | remove NAME",
    )
    msub = m.add_subparsers(dest="members_verb", metavar="VERB")
    m.set_defaults(fn=lambda _args: _usage(m))
    ls = msub.add_parser("list", parents=[common], help="the members, the change in progress")
    ls.set_defaults(fn=cmd_members_list)
    # (--api is the new member's API address here: the cluster's is --cluster-api)
    add = msub.add_parser(
        "add",
        help="add a member (then start it with an empty data dir; it catches up)",
        description="Add member NAME at --raft H:P with its API at --api H:P. The request "
        "goes to the cluster's API: --cluster-api URL[,URL...] (or RAFTCRON_API).",
    )
    add.add_argument("name")
    add.add_argument("--raft", required=True, metavar="H:P", help="its Raft address")
    add.add_argument("--api", dest="member_api", required=True, metavar="H:P", help="its API")
    add.add_argument("--tags", default="", help="placement tags: zone=a,disk=ssd")
    add.add_argument(
        "--cluster-api",
        dest="api",
        metavar="URL",
        help="a member API URL of the cluster, or several comma-separated (or RAFTCRON_API)",
    )
    add.add_argument("--token", help="API token (or RAFTCRON_TOKEN)")
    add.add_argument(
        "--token-file", metavar="FILE", help="read the API token from FILE (or RAFTCRON_TOKEN_FILE)"
    )
    add.add_argument("--cacert", help="CA file to verify an https API (or RAFTCRON_CACERT)")
    add.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    add.add_argument(
        "-o", "--output", choices=("table", "json"), default="table", help="table or json"
    )
    add.add_argument("--json", action="store_true", help="the same as -o json")
    add.set_defaults(fn=cmd_members_add)
    rm = msub.add_parser(
        "remove", parents=[common], help="remove a member for good (it never comes back)"
    )
    rm.add_argument("name")
    rm.set_defaults(fn=cmd_members_remove)


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return EXIT_USAGE


def _tags(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise CliError(f"--tags: {part!r} is not key=value (e.g. zone=a,disk=ssd)", EXIT_USAGE)
        out[key] = value
    return out


def _on_leader(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """The request on the leader: the member asked first, else (409 not_leader) once more
    on the leader that member's status names."""
    from raftcron.client import ApiError, Client

    client = client_from_args(args)
    try:
        return client.request(method, path, body)
    except ApiError as exc:
        if exc.code != "not_leader":
            raise CliError(f"{one_line(exc.message)} (HTTP {exc.status} {exc.code})") from None
    st = call(client.status)
    api = next((m.api for m in st.members if m.name == st.leader), None)
    if api is None:
        raise CliError("no leader now: retry in a few seconds")
    leader = Client(api, token=client.token, timeout=client.timeout)
    try:
        return leader.request(method, path, body)
    except ApiError as exc:
        raise CliError(f"{one_line(exc.message)} (HTTP {exc.status} {exc.code})") from None
    except Exception as exc:
        raise CliError(f"{api}: {exc}") from None


def cmd_members_list(args: argparse.Namespace) -> int:
    body = call(lambda: client_from_args(args).request("GET", "/v1/members"))
    if wants_json(args):
        print_json(body)
        return 0
    rows = [
        [
            m["name"],
            m["raft"],
            m["api"],
            ",".join(f"{k}={v}" for k, v in sorted(m["tags"].items())) or None,
            m["incarnation"] or None,
            "leader" if m.get("leader") else "member",
            "yes" if m.get("answering") else "no",
            "yes" if m.get("in_raft_config") else "no",
        ]
        for m in body["members"]
    ]
    head = ["member", "raft", "api", "tags", "incarnation", "role", "answers", "in raft"]
    print(table(rows, head))
    if not body["seeded"]:
        print("(from the cluster file: the leader seeds the replicated membership once every "
              "member runs feature level 2)")  # fmt: skip
    if body.get("cluster_id"):
        print(f"cluster id: {body['cluster_id']}")
    change = body.get("change")
    if change and not change["done"]:
        print(f"change in progress: {change['op']} {change['name']} ({change['raft']})")
    if body["removed"]:
        print("removed (never members again): "
              + ", ".join(f"{r['name']} ({r['raft']})" for r in body["removed"]))  # fmt: skip
    for line in body.get("file_disagrees") or ():
        print(f"WARNING: this node's cluster file disagrees: {line}")
    return 0


def cmd_members_add(args: argparse.Namespace) -> int:
    body = {
        "name": args.name,
        "raft": args.raft,
        "api": args.member_api,
        "tags": _tags(args.tags),
        "request": uuid.uuid4().hex,
    }
    res = _on_leader(args, "POST", "/v1/members", body)
    if wants_json(args):
        print_json(res)
        return 0
    m = res["member"]
    done = (res.get("change") or {}).get("done")
    print(f"added {m['name']} (raft {m['raft']}, api {m['api']}, incarnation {m['incarnation']})"
          + ("" if done else "; Raft's configuration takes it once it answers"))  # fmt: skip
    print("start it with an empty data dir and a cluster file listing the members "
          f"(raftcron members list): {res['start']}")  # fmt: skip
    return 0


def cmd_members_remove(args: argparse.Namespace) -> int:
    path = f"/v1/members/{quote(args.name, safe='')}?request={uuid.uuid4().hex}"
    res = _on_leader(args, "DELETE", path)
    if wants_json(args):
        print_json(res)
        return 0
    print(f"removed {res['removed']}: it never votes or runs anything again "
          "(stop its agent; started again it exits with status 2)")  # fmt: skip
    return 0
