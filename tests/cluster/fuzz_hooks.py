"""schemathesis hooks of ``tests.cluster.fuzz_api`` (loaded through SCHEMATHESIS_HOOKS).

A generated job's ``command`` would run on the agents (as root in CI): its program is
replaced by ``true`` right before the request is sent (the arguments, and everything the
validation sees about the list, stay as generated), so no made-up program ever runs.
A lock ``wait`` above 2 s is cut to 2 s (an acquire may wait an hour by design; the run
would only wait). A drain or undrain that names a real member (``a``, ``b``, ``c``) names
a stranger instead: draining the leader the fuzzer talks to hands its leadership away, and
a follower's ``/health/leader`` is a 503 (``fuzz_api`` leaves ``/v1/leader/transfer`` out
for the same reason); removing a real member would stop it (exit 2). A member added
(``POST /v1/members``) is named ``a``, so the add is refused: a made-up member would join
Raft's configuration and count in its majority.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from raftcron.durations import ConfigError, parse_duration

MAX_WAIT_MS = 2_000


MEMBERS = frozenset({"a", "b", "c"})  # the fuzz cluster's (tests.cluster.harness)


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    params = getattr(case, "path_parameters", None)
    if (
        isinstance(params, dict)
        and str(getattr(case, "path", "")).startswith("/v1/members/")
        and params.get("name") in MEMBERS
    ):
        params["name"] = f"not-{params['name']}"
    body = getattr(case, "body", None)
    if (
        str(getattr(case, "path", "")) == "/v1/members"
        and str(getattr(case, "method", "")).upper() == "POST"
        and isinstance(body, dict)
        and "name" in body
    ):
        # a made-up member would join Raft's configuration (and count in its majority):
        # it is named as a member instead, so the add is refused (409 member_clash)
        body["name"] = "a"
    if isinstance(body, dict) and "wait" in body:
        # a lock acquire may wait up to an hour, by design: keep the run moving
        try:
            too_long = parse_duration(body["wait"], "wait") > MAX_WAIT_MS
        except ConfigError:
            too_long = False  # (invalid: the API answers 400 at once)
        if too_long:
            body["wait"] = "2s"
    if isinstance(body, dict):
        command = body.get("command")
        if isinstance(command, list) and command and isinstance(command[0], str) and command[0]:
            body["command"] = ["true", *command[1:]]
