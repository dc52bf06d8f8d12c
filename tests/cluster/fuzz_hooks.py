"""schemathesis hooks of ``tests.cluster.fuzz_api`` (loaded through SCHEMATHESIS_HOOKS).

A generated job's ``command`` would run on the agents (as root in CI): its program is
replaced by ``true`` right before the request is sent (the arguments, and everything the
validation sees about the list, stay as generated), so no made-up program ever runs.
A lock ``wait`` above 2 s is cut to 2 s (an acquire may wait an hour by design; the run
would only wait).
"""

from __future__ import annotations

from typing import Any

import schemathesis

from raftcron.durations import ConfigError, parse_duration

MAX_WAIT_MS = 2_000


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    body = getattr(case, "body", None)
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
