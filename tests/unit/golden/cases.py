"""The inputs of the golden fixtures and what they compute (see ``__init__``)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import msgpack

from raftcron.api.app import job_json, spec_table
from raftcron.api.openapi import SCHEMAS
from raftcron.api.redact import redact_table
from raftcron.config import ConfigError, job_spec_from_mapping, job_warnings, parse_config
from raftcron.core import commands as c
from raftcron.core.jobfields import spec_level
from raftcron.core.model import (
    Backfill,
    DependencyWait,
    HttpSpec,
    Job,
    JobSpec,
    JobStats,
    Member,
    NotifyTarget,
    PendingRetry,
    Run,
)

GOLDEN_DIR = Path(__file__).parent
NOW_MS = 1_700_000_000_000
BASE_DIR = Path("/nonexistent/raftcron-golden")

# ---------------------------------------------------------------------------- TOML tables

_CMD = ["/bin/true"]
_MIN = {"name": "a", "schedule": "* * * * *", "command": _CMD}

# (case name, a [[jobs]] table): valid ones give a spec, invalid ones the messages.
TABLES: list[tuple[str, Any]] = [
    ("minimal", _MIN),
    (
        "every-scalar",
        {
            **_MIN,
            "name": "every.scalar-1",
            "schedule": "0 3 * * 1-5",
            "timezone": "Europe/Berlin",
            "timeout": "90s",
            "overlap": "buffer_one",
            "catchup": "5m",
            "catchup_mode": "latest",
            "jitter": "30s",
            "dst_gap": "skip",
            "dst_repeat": "twice",
            "retries": 3,
            "retry_backoff": "20s",
            "retry_backoff_max": "1h",
            "retry_other_node": True,
            "tags": {"role": "db", "zone": "a"},
            "count": 3,
            "max_parallel": 2,
            "lease": "45s",
            "env": {"B": "2", "A": "1"},
            "cwd": "work/dir",
            "notify": [
                "https://hooks.example.com/x",
                {"url": "https://h.example/y", "on": ["late"]},
            ],
            "late_after": "2m",
            "ping_url": "https://hc-ping.com/abc",
            "user": "backup",
            "group": "staff",
            "limits": {"nofile": 1024, "memory": "512M", "cpu": "10m"},
            "env_passthrough": ["HTTPS_PROXY", "AWS_REGION"],
            "stdin": "hello\nworld",
        },
    ),
    ("count-all", {**_MIN, "count": "all"}),
    ("every-schedule", {**_MIN, "schedule": "@every 90s"}),
    ("six-fields-warning", {**_MIN, "schedule": "30 * * * * *"}),
    ("cwd-absolute", {**_MIN, "cwd": "/srv"}),
    ("timeout-number", {**_MIN, "timeout": 30, "lease": 10.5}),
    ("backoff-only", {**_MIN, "retries": 2, "retry_backoff": "20m"}),
    ("backoff-zero", {**_MIN, "retries": 1, "retry_backoff": "0s", "retry_backoff_max": 0}),
    ("notify-empty", {**_MIN, "notify": []}),
    (
        "notify-one-table",
        {**_MIN, "notify": {"url": "https://h.example/z", "on": ["recovered", "failure"]}},
    ),
    ("notify-string", {**_MIN, "notify": "https://h.example/s"}),
    (
        "http-job",
        {
            "name": "hook",
            "schedule": "*/5 * * * *",
            "http": {
                "url": "https://user:pw@example.com/hook?x=1",
                "method": "post",
                "headers": {"Authorization": "Bearer secret-token", "Accept": "text/plain"},
                "body": '{"a": 1}',
                "expect": [204, 200, 200],
            },
            "timeout": "10s",
        },
    ),
    ("http-minimal", {"name": "h", "schedule": "* * * * *", "http": {"url": "http://x.example"}}),
    (
        "http-expect-int",
        {"name": "h", "schedule": "* * * * *", "http": {"url": "http://x.example", "expect": 201}},
    ),
    ("after-job", {"name": "child", "command": _CMD, "after": ["p1", "p2"], "on": "always"}),
    ("after-string", {"name": "child", "command": _CMD, "after": "p1"}),
    ("after-failure", {"name": "child", "command": _CMD, "after": ["p"], "on": "failure"}),
    ("memory-int", {**_MIN, "limits": {"memory": 1 << 30, "cpu": 5}}),
    ("memory-gib", {**_MIN, "limits": {"memory": "2GiB"}}),
    ("description", {**_MIN, "description": "Nightly backup of the orders DB (runbook: wiki/x)"}),
    # ---- invalid
    ("not-a-table", ["x"]),
    ("empty", {}),
    ("unknown-key-close", {**_MIN, "schedul": "x"}),
    ("unknown-key-far", {**_MIN, "zzzzzz": 1}),
    ("bad-name", {**_MIN, "name": "-bad name"}),
    ("name-not-string", {**_MIN, "name": 3}),
    ("missing-schedule", {"name": "a", "command": _CMD}),
    ("bad-cron", {**_MIN, "schedule": "61 * * * *"}),
    ("bad-every", {**_MIN, "schedule": "@every x"}),
    ("bad-timezone", {**_MIN, "timezone": "Mars/Base"}),
    ("command-string", {**_MIN, "command": "ls -l"}),
    ("command-empty", {**_MIN, "command": []}),
    ("command-nul", {**_MIN, "command": ["a\0b"]}),
    ("command-first-empty", {**_MIN, "command": ["", "x"]}),
    ("command-mixed", {**_MIN, "command": ["a", 1]}),
    ("missing-command", {"name": "a", "schedule": "* * * * *"}),
    ("http-and-command", {**_MIN, "http": {"url": "https://x.example"}}),
    (
        "http-command-only-keys",
        {
            "name": "h",
            "schedule": "* * * * *",
            "http": {"url": "https://x.example"},
            "env": {"A": "1"},
            "cwd": "/x",
            "user": "u",
            "stdin": "s",
        },
    ),
    (
        "http-bad",
        {
            "name": "h",
            "schedule": "* * * * *",
            "http": {
                "url": "ftp://x",
                "method": "FETCH",
                "headers": {"X-Raftcron-Job": "x", "bad header": "v\n"},
                "expect": [99],
                "extra": 1,
            },
        },
    ),
    ("http-not-table", {"name": "h", "schedule": "* * * * *", "http": "https://x"}),
    ("http-no-url", {"name": "h", "schedule": "* * * * *", "http": {"method": "GET"}}),
    (
        "notify-bad",
        {**_MIN, "notify": [3, {"on": ["nope"]}, {"url": "https://x.example", "on": []}, "x"]},
    ),
    ("late-after-short", {**_MIN, "late_after": "500ms"}),
    ("ping-url-slash", {**_MIN, "ping_url": "https://hc-ping.com/abc/"}),
    ("ping-url-bad", {**_MIN, "ping_url": "nope"}),
    ("on-without-after", {**_MIN, "on": "failure"}),
    ("on-bad", {"name": "c", "command": _CMD, "after": ["p"], "on": "sometimes"}),
    ("after-and-schedule", {**_MIN, "after": ["p"]}),
    (
        "after-with-catchup",
        {
            "name": "c",
            "command": _CMD,
            "after": ["p"],
            "catchup": "1m",
            "catchup_mode": "none",
            "jitter": "1s",
        },
    ),
    ("after-bad", {"name": "c", "command": _CMD, "after": [1]}),
    ("after-empty", {"name": "c", "command": _CMD, "after": []}),
    ("after-self", {"name": "c", "command": _CMD, "after": ["c"]}),
    ("after-dup", {"name": "c", "command": _CMD, "after": ["p", "p"]}),
    ("after-bad-name", {"name": "c", "command": _CMD, "after": ["no way"]}),
    ("after-too-many", {"name": "c", "command": _CMD, "after": [f"p{i}" for i in range(65)]}),
    ("overlap-bad", {**_MIN, "overlap": "queue"}),
    ("catchup-mode-bad", {**_MIN, "catchup_mode": "some"}),
    ("dst-bad", {**_MIN, "dst_gap": "later", "dst_repeat": "thrice"}),
    ("timeout-zero", {**_MIN, "timeout": "0s"}),
    ("timeout-bad", {**_MIN, "timeout": "soon"}),
    ("catchup-negative", {**_MIN, "catchup": -5}),
    ("jitter-long", {**_MIN, "jitter": "2d"}),
    ("lease-short", {**_MIN, "lease": "500ms"}),
    ("retries-bad", {**_MIN, "retries": "3"}),
    ("retries-negative", {**_MIN, "retries": -1}),
    ("retries-many", {**_MIN, "retries": 101}),
    ("backoff-max-short", {**_MIN, "retry_backoff": "1m", "retry_backoff_max": "30s"}),
    ("retry-other-node-bad", {**_MIN, "retry_other_node": "yes"}),
    ("tags-bad", {**_MIN, "tags": {"a": 1}}),
    ("tags-not-table", {**_MIN, "tags": "a"}),
    ("count-bad", {**_MIN, "count": "some"}),
    ("count-range", {**_MIN, "count": 0}),
    ("count-bool", {**_MIN, "count": True}),
    ("max-parallel-zero", {**_MIN, "max_parallel": 0}),
    ("max-parallel-many", {**_MIN, "max_parallel": 10_001}),
    ("env-bad", {**_MIN, "env": {"RAFTCRON_X": "1", "A=B": "2", "C": "x\0y"}}),
    ("env-not-table", {**_MIN, "env": ["A"]}),
    ("cwd-empty", {**_MIN, "cwd": ""}),
    ("user-bad", {**_MIN, "user": "no body", "group": "bad/group"}),
    (
        "limits-bad",
        {**_MIN, "limits": {"nofile": 0, "memory": "lots", "cpu": "1500ms", "stack": 1}},
    ),
    ("limits-range", {**_MIN, "limits": {"nofile": True, "memory": 10, "cpu": 0}}),
    ("limits-not-table", {**_MIN, "limits": 5}),
    (
        "passthrough-bad",
        {
            **_MIN,
            "env": {"A": "1"},
            "env_passthrough": ["A", "1X", "RAFTCRON_TOKEN", "RAFTCRON_JOB", "B", "B"],
        },
    ),
    ("passthrough-not-list", {**_MIN, "env_passthrough": "PATH"}),
    ("passthrough-many", {**_MIN, "env_passthrough": [f"V{i}" for i in range(65)]}),
    ("stdin-long", {**_MIN, "stdin": "x" * 65_537}),
    ("stdin-not-string", {**_MIN, "stdin": 5}),
    ("description-long", {**_MIN, "description": "d" * 1_001}),
    ("description-not-string", {**_MIN, "description": ["x"]}),
    (
        "many-errors",
        {
            "name": "x y",
            "schedule": "bad",
            "command": "x",
            "overlap": "q",
            "timeout": "0s",
            "lease": "1ms",
            "retries": -1,
            "tags": 1,
            "count": 500,
            "cwd": "",
            "env": {"RAFTCRON_A": "1"},
            "on": "x",
            "nope": 1,
        },
    ),
]

# Whole files (parse_config): file-level messages carry the file name.
_FILE_HEAD = """
[cluster]
secret = "k3jf93jf02jf0q2jf0q2j3f"
lease = "20s"

[cluster.nodes.n1]
raft = "127.0.0.1:7101"
api = "127.0.0.1:8101"
"""
FILES: list[tuple[str, str]] = [
    ("file-ok", _FILE_HEAD + '[[jobs]]\nname = "a"\nschedule = "* * * * *"\ncommand = ["x"]\n'),
    (
        "file-errors",
        _FILE_HEAD
        + '[[jobs]]\nname = "a"\nschedule = "x"\ncommand = ["x"]\n'
        + '[[jobs]]\nname = "a"\nschedule = "* * * * *"\ncommand = ["x"]\nafter = ["zz"]\n'
        + '[[jobs]]\nname = "b"\nschedul = "* * * * *"\ncommand = ["x"]\n',
    ),
    ("file-unknown-parent", _FILE_HEAD + '[[jobs]]\nname = "a"\ncommand = ["x"]\nafter = ["zz"]\n'),
    (
        "file-cycle",
        _FILE_HEAD
        + '[[jobs]]\nname = "a"\ncommand = ["x"]\nafter = ["b"]\n'
        + '[[jobs]]\nname = "b"\ncommand = ["x"]\nafter = ["a"]\n',
    ),
]

# ---------------------------------------------------------------------------- specs


def _every_field() -> JobSpec:
    """A spec with every field away from its default (``call`` included)."""
    return JobSpec(
        name="all",
        schedule="",
        command=(),
        timezone="Asia/Tokyo",
        timeout_ms=1_500,
        overlap="terminate_other",
        catchup_ms=0,
        catchup_mode="none",
        jitter_ms=7,
        dst_gap="skip",
        dst_repeat="twice",
        retries=100,
        retry_backoff_ms=0,
        retry_backoff_max_ms=1,
        retry_other_node=True,
        tags=(("k", "v"),),
        lease_ms=1_000,
        env=(("E", "é"),),
        cwd="/",
        http=HttpSpec(
            url="https://x.example/",
            method="DELETE",
            headers=(("H", "v"),),
            body="b",
            expect=(200,),
        ),
        notify=(),
        late_after_ms=1_000,
        ping_url="https://hc.example/p",
        count=0,
        max_parallel=10_000,
        call="mod.sub:func",
        after=("p",),
        on="always",
        user="u",
        group="g",
        limits=(("cpu", 1), ("memory", 1 << 20), ("nofile", 1)),
        env_passthrough=("A", "B"),
        stdin="in",
    )


def specs() -> list[tuple[str, JobSpec]]:
    """Every valid table's spec, and a few built directly."""
    out: list[tuple[str, JobSpec]] = []
    for case, raw in TABLES:
        with contextlib.suppress(ConfigError):
            out.append((case, job_spec_from_mapping(raw, "jobs[0]", base_dir=BASE_DIR)))
    out.append(("every-field", _every_field()))
    out.append(("call", JobSpec(name="emb", schedule="* * * * *", command=(), call="app:tick")))
    out.append(
        (
            "big-ints",
            JobSpec(
                name="big",
                schedule="* * * * *",
                command=("x",),
                timeout_ms=2**40,
                catchup_ms=2**33,
                lease_ms=86_400_000,
                jitter_ms=86_400_000,
            ),
        )
    )
    out.append(
        (
            "notify-none-targets",
            JobSpec(
                name="n",
                schedule="* * * * *",
                command=("x",),
                notify=(NotifyTarget(url="https://a.example"),),
            ),
        )
    )
    return out


# ---------------------------------------------------------------------------- commands

_SPEC = JobSpec(name="j", schedule="* * * * *", command=("echo", "hi"))

COMMANDS: list[tuple[str, c.Command]] = [
    ("put_job", c.PutJob(at_ms=1, spec=_SPEC)),
    ("put_job-config", c.PutJob(at_ms=2, spec=_every_field(), source="config")),
    ("delete_job", c.DeleteJob(at_ms=3, name="j")),
    ("set_paused", c.SetPaused(at_ms=4, name="j", paused=True)),
    ("set_paused-note", c.SetPaused(at_ms=5, name="j", paused=True, note="maintenance")),
    ("set_paused-resume", c.SetPaused(at_ms=5, name="j", paused=False)),
    ("sync_config", c.SyncConfig(at_ms=6, specs=(_SPEC, _every_field()), history=100)),
    (
        "sync_config-partial",
        c.SyncConfig(
            at_ms=7, specs=(), history=5, partial=True, delete=("a", "b"), config_hash="abc"
        ),
    ),
    ("sync_config-partial-empty", c.SyncConfig(at_ms=7, specs=(_SPEC,), history=5, partial=True)),
    ("sync_config-hash", c.SyncConfig(at_ms=8, specs=(), history=1, config_hash="h")),
    ("config_report", c.ReportConfig(at_ms=9, node="n1", hash="deadbeef")),
    (
        "members_seed",
        c.SeedMembers(
            at_ms=9,
            members=(
                Member(name="n1", raft="10.0.0.1:4321", api="10.0.0.1:8080", tags=(("az", "a"),)),
                Member(name="n2", raft="10.0.0.2:4321", api="10.0.0.2:8080"),
            ),
        ),
    ),
    (
        "member_add",
        c.AddMember(
            at_ms=9,
            member=Member(name="n4", raft="10.0.0.4:4321", api="10.0.0.4:8080", added=True),
            request="r1",
        ),
    ),
    ("member_remove", c.RemoveMember(at_ms=9, name="n3", request="r2")),
    ("member_changed", c.MemberChanged(at_ms=9, request="r2")),
    ("plan-empty", c.Plan(at_ms=10)),
    (
        "arm",
        c.Arm(
            at_ms=10,
            fires=(c.Fire(job="j", scheduled_at_ms=60_000, node="n1", trigger="schedule"),),
        ),
    ),
    (
        "plan",
        c.Plan(
            at_ms=11,
            fires=(
                c.Fire(job="j", scheduled_at_ms=60_000, node="n1", trigger="schedule"),
                c.Fire(
                    job="j",
                    scheduled_at_ms=60_000,
                    node="n2",
                    trigger="schedule",
                    attempt=2,
                    instance=2,
                    instances=3,
                ),
                c.Fire(job="k", scheduled_at_ms=0, node="", trigger="dependency"),
            ),
            missed=(
                c.Missed(job="j", first_ms=1, last_ms=2, count=2, reason="too late"),
                c.Missed(job="j", first_ms=3, last_ms=3, count=1, reason="paused", status="paused"),
            ),
        ),
    ),
    ("start", c.Start(at_ms=12, run_id="j@60000", fence=7, node="n1", token="t-1")),
    ("renew", c.Renew(at_ms=13, run_id="j@60000", fence=7, node="n1")),
    (
        "complete",
        c.Complete(
            at_ms=14,
            run_id="j@60000",
            fence=7,
            node="n1",
            status="succeeded",
            exit_code=0,
            started_ms=10,
            finished_ms=20,
            output="out\n",
            reason="",
        ),
    ),
    (
        "complete-nulls",
        c.Complete(
            at_ms=15,
            run_id="j@60000.2",
            fence=8,
            node="n1",
            status="lost",
            exit_code=None,
            started_ms=None,
            finished_ms=21,
            reason="gone",
        ),
    ),
    (
        "lifecycle",
        c.Lifecycle(
            at_ms=16,
            items=(
                c.Start(at_ms=12, run_id="j@60000", fence=7, node="n1", token="t-1"),
                c.Renew(at_ms=13, run_id="k@60000", fence=8, node="n1"),
                c.Complete(
                    at_ms=16,
                    run_id="m@60000.2",
                    fence=9,
                    node="n1",
                    status="lost",
                    exit_code=None,
                    started_ms=None,
                    finished_ms=21,
                    reason="gone",
                ),
            ),
        ),
    ),
    ("expire", c.Expire(at_ms=16, run_id="j@1", fence=9, reason="no renewal")),
    ("expire-renewals", c.Expire(at_ms=16, run_id="j@1", fence=9, reason="r", renewals=4)),
    (
        "backfill",
        c.StartBackfill(at_ms=17, job="j", id="bf-1", from_ms=0, to_ms=3_600_000, rate=0.5),
    ),
    ("backfill-int-rate", c.StartBackfill(at_ms=17, job="j", id="b", from_ms=1, to_ms=2, rate=2.0)),
    ("backfill_cancel", c.CancelBackfill(at_ms=18, job="j")),
    ("kill", c.Kill(at_ms=19, run_id="j@1", reason="operator")),
    ("kill-hard", c.Kill(at_ms=19, run_id="j@1", reason="operator", hard=True)),
    ("drain", c.Drain(at_ms=20, node="n2", drain=True)),
    ("drain-shutdown", c.Drain(at_ms=20, node="n2", drain=False, kind="shutdown")),
    ("barrier", c.Barrier(at_ms=21, node="n1", nonce="x-1")),
    (
        "lock_acquire",
        c.AcquireLock(at_ms=22, name="L", request="r1", holder="me", ttl_ms=30_000, wait_ms=0),
    ),
    ("lock_renew", c.RenewLock(at_ms=23, name="L", fence=3)),
    ("lock_release", c.ReleaseLock(at_ms=24, name="L", fence=3)),
    ("lock_expire", c.ExpireLock(at_ms=25, name="L", fence=3, renewals=2, reason="ttl")),
    ("lock_cancel", c.CancelLockWait(at_ms=26, name="L", request="r1", reason="timeout")),
    ("mark_broken", c.MarkBroken(at_ms=27, job="j", updated_ms=5, reason="boom")),
    ("big-at", c.Barrier(at_ms=2**62, node="", nonce="")),
]

# Envelopes the current encoder never writes: older versions' shapes, and malformed ones.
_RAW: list[tuple[str, Any]] = [
    (
        "old-fire-row",
        {"v": 1, "at": 1, "t": "plan", "fires": [["j", 5, "n", "schedule", 1]], "missed": []},
    ),
    (
        "long-fire-row",
        {
            "v": 1,
            "at": 1,
            "t": "plan",
            "fires": [["j", 5, "n", "schedule", 1, 2, 2]],
            "missed": [["j", 1, 2, 3, "r", "paused"]],
        },
    ),
    ("set_paused-no-note", {"v": 1, "at": 1, "t": "set_paused", "name": "j", "paused": 1}),
    (
        "lifecycle-nested-batch",  # a batch carries start, renew and complete only
        {
            "v": 1,
            "at": 1,
            "t": "lifecycle",
            "items": [{"at": 1, "t": "lifecycle", "items": []}],
        },
    ),
    (
        "lifecycle-other-kind",
        {"v": 1, "at": 1, "t": "lifecycle", "items": [{"at": 1, "t": "kill", "run": "j@1"}]},
    ),
    (
        "expire-no-renewals",
        {"v": 1, "at": 1, "t": "expire", "run": "j@1", "fence": 1, "reason": "r"},
    ),
    (
        "sync-delete-without-partial",
        {"v": 1, "at": 1, "t": "sync_config", "specs": [], "history": 3, "delete": ["x"]},
    ),
    (
        "old-spec",
        {
            "v": 1,
            "at": 1,
            "t": "put_job",
            "source": "api",
            "spec": {
                "name": "o",
                "schedule": "* * * * *",
                "command": ["x"],
                "timezone": "UTC",
                "timeout_ms": None,
                "overlap": "allow",
                "catchup_ms": 60000,
                "retries": 0,
                "tags": [],
                "lease_ms": 30000,
                "env": [],
                "cwd": None,
            },
        },
    ),
    (
        "spec-explicit-defaults",
        {
            "v": 1,
            "at": 1,
            "t": "put_job",
            "source": "api",
            "spec": {
                "name": "o",
                "schedule": "* * * * *",
                "command": ["x"],
                "timezone": "UTC",
                "timeout_ms": 5,
                "overlap": "allow",
                "catchup_ms": 1,
                "retries": 0,
                "tags": [["a", "b"]],
                "lease_ms": 30000,
                "env": [["E", "1"]],
                "cwd": "/",
                "catchup_mode": "all",
                "jitter_ms": 0,
                "max_parallel": None,
                "notify": None,
                "http": None,
                "late_after_ms": None,
            },
        },
    ),
    (
        "spec-unknown-field",
        {
            "v": 1,
            "at": 1,
            "t": "put_job",
            "source": "api",
            "spec": {
                "name": "o",
                "schedule": "",
                "command": [],
                "timezone": "UTC",
                "timeout_ms": None,
                "overlap": "allow",
                "catchup_ms": 1,
                "retries": 0,
                "tags": [],
                "lease_ms": 1,
                "env": [],
                "cwd": None,
                "zzz": 1,
            },
        },
    ),
    (
        "spec-missing-field",
        {"v": 1, "at": 1, "t": "put_job", "source": "api", "spec": {"name": "o"}},
    ),
    ("unknown-type", {"v": 1, "at": 1, "t": "nope"}),
    ("wrong-version", {"v": 2, "at": 1, "t": "barrier", "node": "n", "nonce": "x"}),
    ("no-at", {"v": 1, "t": "barrier", "node": "n", "nonce": "x"}),
    ("missing-field", {"v": 1, "at": 1, "t": "lock_renew", "name": "L"}),
    ("not-a-map", [1, 2]),
    ("bad-int", {"v": 1, "at": 1, "t": "lock_renew", "name": "L", "fence": "x"}),
]


def canon(value: Any) -> str:
    """``repr`` of a record, but of a dataclass only the fields that differ from their
    default (required ones always): a field added later with a default that keeps old
    values as they were leaves every existing fixture alone."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        parts = []
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.default is dataclasses.MISSING or v != f.default:
                parts.append(f"{f.name}={canon(v)}")
        return f"{type(value).__name__}({', '.join(parts)})"
    if isinstance(value, tuple):
        inner = ", ".join(canon(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def _hex(obj: Any) -> str:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed.hex()


def _wire() -> dict[str, Any]:
    spec_rows = []
    for case, spec in specs():
        data = c.encode(c.PutJob(at_ms=1, spec=spec))
        back = c.decode(data)
        assert isinstance(back, c.PutJob) and back.spec == spec, case
        spec_rows.append({"case": case, "spec": canon(spec), "wire": _hex(c.spec_to_wire(spec))})
    cmd_rows = []
    for case, cmd in COMMANDS:
        data = c.encode(cmd)
        cmd_rows.append({"case": case, "encoded": data.hex(), "decoded": canon(c.decode(data))})
    raw_rows = [
        {"case": case, "decoded": canon(c.decode(bytes.fromhex(_hex(raw))))} for case, raw in _RAW
    ]
    raw_rows.append({"case": "garbage", "decoded": canon(c.decode(b"\xc1\x00"))})
    # (specs of feature level 0 only: the blob written before any later key existed)
    packed = c.PackedSpecs.pack(spec for _, spec in specs() if spec_level(spec) == 0)
    return {
        "specs": spec_rows,
        "commands": cmd_rows,
        "raw": raw_rows,
        "packed_specs": {"blob": packed.blob.hex(), "count": packed.count},
    }


def _job(spec: JobSpec) -> Job:
    return Job(spec=spec, source="config", created_ms=NOW_MS - 86_400_000, updated_ms=NOW_MS - 1000)


def _busy_job() -> Job:
    spec = job_spec_from_mapping(dict(TABLES[1][1]), "jobs[0]", base_dir=BASE_DIR)
    return Job(
        spec=spec,
        source="api",
        paused=True,
        pause_note="why",
        watermark_ms=NOW_MS - 60_000,
        created_ms=NOW_MS - 86_400_000,
        updated_ms=NOW_MS - 5_000,
        buffered=(("x@1", 1),),
        backfill=Backfill(
            id="b1",
            from_ms=0,
            to_ms=60_000,
            cursor_ms=-1,
            total=2,
            done=1,
            rate=0.5,
            last_ms=NOW_MS - 1_000,
            requested_ms=NOW_MS - 2_000,
        ),
        retry=(PendingRetry(run="x@2.2", scheduled_at_ms=2, attempt=2, due_ms=NOW_MS + 10),),
        deps=(("x@3~after", 3),),
        waiting=(
            DependencyWait(scheduled_at_ms=4, variant="", settled=(("p1", "p1@4", "succeeded"),)),
        ),
        broken="boom",
        broken_ms=NOW_MS - 3_000,
        stats=JobStats(outcome="failed", finished_ms=1, duration_ms=2, success_ms=3),
    )


def _api() -> dict[str, Any]:
    rows = []
    last = Run(
        id="a@1",
        job="a",
        scheduled_at_ms=1,
        status="failed",
        fence=3,
        node="n1",
        claimed_ms=1,
        started_ms=2,
        finished_ms=3,
        exit_code=1,
        output="pw=secret-token",
        reason="exit 1 secret-token",
    )
    for case, spec in specs():
        table = spec_table(spec)
        rows.append(
            {
                "case": case,
                "spec_table": table,
                "spec_table_redacted": redact_table(table),
                "job": job_json(_job(spec), NOW_MS, None, []),
                "job_redacted": job_json(_job(spec), NOW_MS, last, ["a@2"], redact=True),
            }
        )
    busy = _busy_job()
    rows.append({"case": "busy", "job": job_json(busy, NOW_MS, last, ["x@9", "x@8"])})
    return {"jobs": rows}


def _toml() -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for case, raw in TABLES:
        row: dict[str, Any] = {"case": case}
        for where, base in (("jobs[0]", BASE_DIR), ("request body", None)):
            key = "file" if base is not None else "api"
            try:
                spec = job_spec_from_mapping(
                    copy.deepcopy(raw), where, base_dir=base, default_lease_ms=20_000
                )
                row[key] = {"spec": canon(spec), "warnings": job_warnings(spec)}
            except ConfigError as exc:
                row[key] = {"errors": list(exc.errors)}
        rows.append(row)
    files = []
    for case, text in FILES:
        try:
            cfg = parse_config(text, Path("/etc/raftcron/cluster.toml"))
            files.append({"case": case, "jobs": [canon(s) for s in cfg.jobs]})
        except ConfigError as exc:
            files.append({"case": case, "errors": list(exc.errors)})
    return {"tables": rows, "files": files}


def _cli() -> dict[str, Any]:
    """``raftcron jobs show NAME`` (text) for every spec, against a stub client."""
    import argparse
    import contextlib
    import io

    from raftcron import cli
    from raftcron.client import JobInfo

    rows = []
    for case, job in [*((case, _job(spec)) for case, spec in specs()), ("busy", _busy_job())]:
        body = job_json(job, NOW_MS, None, [])

        class _Stub:
            def job(self, name: str, body: dict[str, Any] = body) -> JobInfo:
                return JobInfo.from_json(body)

        out = io.StringIO()
        saved = cli.client_from_args
        cli.client_from_args = lambda args: _Stub()  # type: ignore[assignment,return-value]
        try:
            with contextlib.redirect_stdout(out):
                cli.cmd_jobs_show(argparse.Namespace(name=job.spec.name, json=False))
        finally:
            cli.client_from_args = saved
        rows.append({"case": case, "text": out.getvalue().splitlines()})
    return {"jobs_show": rows}


def strip_descriptions(schema: Any) -> Any:
    """``schema`` without its ``description`` texts (generated from the docs column)."""
    if isinstance(schema, dict):
        return {
            k: strip_descriptions(v)
            for k, v in schema.items()
            if k != "description" or not isinstance(v, str)  # (a property may be so named)
        }
    if isinstance(schema, list):
        return [strip_descriptions(v) for v in schema]
    return schema


def _openapi() -> dict[str, Any]:
    """The job schemas without their descriptions (the docs column, free to reword)."""
    schemas = {name: SCHEMAS[name] for name in ("JobTable", "Job", "NotifyTarget")}
    stripped: dict[str, Any] = strip_descriptions(schemas)
    return stripped


def compute() -> dict[str, Any]:
    """Every fixture, by file name (without ``.json``), as JSON-compatible data."""
    out = {
        "wire": _wire(),
        "api": _api(),
        "toml": _toml(),
        "openapi": _openapi(),
        "cli": _cli(),
    }
    return json.loads(json.dumps(out))  # tuples -> lists, as read back from the files
