"""The keys of issue 6 items 7-8: http jobs, notify webhooks, late_after, ping_url and the
cluster's [notify] table. Validated once (file and PUT body alike), encoded in the
replicated spec (old encodings still decode), shown PUT-able in GET /v1/jobs/{name}."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from raftcron.api.app import spec_table
from raftcron.config import ConfigError, NotifyConfig, job_spec_from_mapping, load_config
from raftcron.core import commands as c
from raftcron.core.model import NOTIFY_EVENTS, HttpSpec, JobSpec, NotifyTarget

SECRET = "0123456789abcdef-not-a-real-secret"
CLUSTER = f"""[cluster]
secret = "{SECRET}"
[cluster.nodes.a]
raft = "127.0.0.1:7101"
api = "127.0.0.1:8101"
"""
HOOK = "https://hooks.example.com/raftcron"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(text: str) -> Any:
    Path("cluster.toml").write_text(CLUSTER + text)
    return load_config("cluster.toml")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return info.value.errors


def body_errors(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        job_spec_from_mapping({"name": "j", "schedule": "* * * * *", **raw}, "request body")
    return info.value.errors


def test_http_job_notify_and_ping_from_the_file(in_tmp: Path) -> None:
    cfg = load(
        """
[notify]
webhooks = ["http://127.0.0.1:9/all", { url = "http://127.0.0.1:9/f", on = ["failure"] }]
late_after = "30s"
timeout = "2s"
retries = 2

[[jobs]]
name = "hook"
schedule = "*/5 * * * *"
timeout = "20s"
notify = { url = "https://hooks.example.com/raftcron", on = ["recovered", "failure"] }
late_after = "2m"
ping_url = "https://hc-ping.com/0b7a-uuid"
[jobs.http]
url = "https://api.example.com/tick?x=1"
method = "post"
body = '{"a":1}'
expect = [200, 202]
headers = { Authorization = "Bearer t", Content-Type = "application/json" }

[[jobs]]
name = "cmd"
schedule = "@hourly"
command = ["true"]
notify = []
"""
    )
    assert cfg.notify == NotifyConfig(
        webhooks=(
            NotifyTarget(url="http://127.0.0.1:9/all"),
            NotifyTarget(url="http://127.0.0.1:9/f", on=("failure",)),
        ),
        late_after_ms=30_000,
        timeout_ms=2_000,
        retries=2,
    )
    hook, cmd = cfg.jobs
    assert hook.command == ()
    assert hook.http == HttpSpec(
        url="https://api.example.com/tick?x=1",
        method="POST",
        headers=(("Authorization", "Bearer t"), ("Content-Type", "application/json")),
        body='{"a":1}',
        expect=(200, 202),
    )
    # events are kept in their canonical order, whatever order the file used
    assert hook.notify == (NotifyTarget(url=HOOK, on=("failure", "recovered")),)
    assert (hook.late_after_ms, hook.ping_url) == (120_000, "https://hc-ping.com/0b7a-uuid")
    assert cmd.notify == () and cmd.http is None  # [] turns the cluster default off


def test_defaults_without_the_new_keys(in_tmp: Path) -> None:
    cfg = load('[[jobs]]\nname = "a"\nschedule = "@daily"\ncommand = ["true"]\n')
    assert cfg.notify == NotifyConfig()
    assert cfg.notify.late_after_ms == 60_000 and cfg.notify.webhooks == ()
    (spec,) = cfg.jobs
    assert (spec.http, spec.notify, spec.late_after_ms, spec.ping_url) == (None, None, None, None)


def test_notify_forms() -> None:
    def notify(value: object) -> tuple[NotifyTarget, ...] | None:
        spec = job_spec_from_mapping(
            {"name": "j", "schedule": "@daily", "command": ["true"], "notify": value}, "body"
        )
        return spec.notify

    assert notify(HOOK) == (NotifyTarget(url=HOOK, on=NOTIFY_EVENTS),)
    assert notify([HOOK, {"url": HOOK + "/2", "on": ["missed"]}]) == (
        NotifyTarget(url=HOOK),
        NotifyTarget(url=HOOK + "/2", on=("missed",)),
    )
    assert notify({"url": HOOK}) == (NotifyTarget(url=HOOK),)
    assert notify([]) == ()
    assert notify(None) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"command": ["true"], "http": {"url": HOOK}},
            [
                "request body: http: set together with command (a job runs either a command "
                "or an HTTP request; keep one of them)"
            ],
        ),
        (
            {},
            [
                'request body: command: missing (e.g. command = ["/usr/local/bin/backup", '
                '"--full"]; or an http table for an HTTP job)'
            ],
        ),
        (
            {"http": "https://x"},
            [
                "request body: http: expected a table, got a string (e.g. http = { url = "
                '"https://example.com/hook", method = "POST" })'
            ],
        ),
        (
            {"http": {"method": "GET"}},
            [
                "request body: http.url: missing (the URL to call: a full http:// or https:// "
                'URL, e.g. "https://hooks.example.com/raftcron")'
            ],
        ),
        (
            {"http": {"url": "ftp://x/y", "method": "FETCH", "timeout": "5s"}},
            [
                "request body: http.timeout: unknown key (known keys: url, method, headers, "
                "body, expect)",
                'request body: http.url: "ftp://x/y" is not an http(s) URL (give a full '
                'http:// or https:// URL, e.g. "https://hooks.example.com/raftcron")',
                'request body: http.method: "FETCH" is not allowed (use "GET", "HEAD", "POST", '
                '"PUT", "PATCH", "DELETE" or "OPTIONS")',
            ],
        ),
        (
            {"http": {"url": HOOK, "headers": {"X-Raftcron-Fence": "1", "A b": "x"}}},
            [
                'request body: http.headers."A b": not a valid header name (letters, digits and -)',
                "request body: http.headers.X-Raftcron-Fence: reserved (raftcron sets the "
                "X-Raftcron-* headers itself)",
            ],
        ),
        (
            {"http": {"url": HOOK, "expect": [200, 700]}},
            [
                "request body: http.expect: expected a status code or a list of them, 100-599 "
                "(e.g. expect = 204 or expect = [200, 202]; omit it for any 2xx)"
            ],
        ),
        (
            {"http": {"url": HOOK}, "env": {"A": "1"}, "cwd": "/srv"},
            [
                "request body: env: only applies to a command job (an http job runs no "
                "process; remove it)",
                "request body: cwd: only applies to a command job (an http job runs no "
                "process; remove it)",
            ],
        ),
        (
            {"command": ["true"], "notify": [{"url": HOOK, "on": ["failed"]}, 5]},
            [
                'request body: notify[0].on: "failed" is not an event (use any of "failure", '
                '"missed", "late" or "recovered")',
                "request body: notify[1]: expected a URL or a table, got an integer (e.g. "
                'notify = ["https://hooks.example.com/x"] or notify = { url = "...", on = '
                '["failure", "recovered"] })',
            ],
        ),
        (
            {"command": ["true"], "notify": {"on": [], "to": HOOK}},
            [
                "request body: notify.to: unknown key (known keys: url, on)",
                "request body: notify.url: missing (where to POST the notification: a full "
                'http:// or https:// URL, e.g. "https://hooks.example.com/raftcron")',
                "request body: notify.on: expected a non-empty list of events (any of "
                '"failure", "missed", "late" or "recovered")',
            ],
        ),
        (
            {"command": ["true"], "ping_url": "https://hc-ping.com/abc/", "late_after": "10ms"},
            [
                "request body: late_after: 10ms is too short (at least 1s)",
                'request body: ping_url: "https://hc-ping.com/abc/" ends in / or has a query '
                "(raftcron appends /start, /fail or /<exit code>: give the check's base URL, "
                'e.g. "https://hc-ping.com/<uuid>")',
            ],
        ),
        (
            {"command": ["true"], "ping_url": "hc-ping.com/abc"},
            [
                'request body: ping_url: "hc-ping.com/abc" is not an http(s) URL (give a full '
                'http:// or https:// URL, e.g. "https://hooks.example.com/raftcron")'
            ],
        ),
    ],
)
def test_job_key_errors(raw: dict[str, Any], expected: list[str]) -> None:
    assert body_errors(raw) == expected


def test_notify_table_errors_name_the_file(in_tmp: Path) -> None:
    got = errors(
        '[notify]\nwebhook = "x"\nwebhooks = ["nope"]\nlate_after = "soon"\nretries = 99\n'
    )
    assert got == [
        'cluster.toml: notify.webhook: unknown key (did you mean "webhooks"?)',
        'cluster.toml: notify.webhooks[0]: "nope" is not an http(s) URL (give a full http:// '
        'or https:// URL, e.g. "https://hooks.example.com/raftcron")',
        'cluster.toml: notify.late_after: "soon" is not a duration (write e.g. "500ms", "30s", '
        '"5m", "1h30m", "2d", or a number of seconds)',
        "cluster.toml: notify.retries: 99 is too many (use 0-20; backoff doubles each time)",
    ]
    assert errors('[[jobs]]\nname = "j"\nschedule = "@daily"\nhttp = { url = 1 }\n') == [
        "cluster.toml: jobs[0].http.url: expected a string, got an integer (a full http:// or "
        'https:// URL, e.g. "https://hooks.example.com/raftcron")'
    ]


FULL = JobSpec(
    name="hook",
    schedule="* * * * *",
    command=(),
    timeout_ms=5_000,
    http=HttpSpec(
        url="http://127.0.0.1:9/x",
        method="POST",
        headers=(("A", "1"),),
        body="{}",
        expect=(200, 418),
    ),
    notify=(NotifyTarget(url=HOOK, on=("failure", "late")),),
    late_after_ms=90_000,
    ping_url="http://127.0.0.1:9/ping",
)


@pytest.mark.parametrize(
    "spec",
    [
        FULL,
        JobSpec(name="plain", schedule="@daily", command=("true",), notify=()),
        JobSpec(name="min", schedule="@daily", command=(), http=HttpSpec(url="http://127.0.0.1/")),
    ],
)
def test_wire_and_spec_table_round_trip(spec: JobSpec) -> None:
    cmd = c.PutJob(at_ms=1, spec=spec)
    assert c.decode(c.encode(cmd)) == cmd
    # GET /v1/jobs/{name} shows a table that PUTs back to the same spec
    again = job_spec_from_mapping(spec_table(spec), "request body")
    assert again == spec


def test_old_encodings_decode_and_plain_specs_encode_as_before() -> None:
    plain = JobSpec(name="p", schedule="@daily", command=("true",))
    wire = c.spec_to_wire(plain)
    assert not {"http", "notify", "late_after_ms", "ping_url"} & set(wire)
    old = msgpack.packb({"v": 1, "t": "put_job", "at": 1, "spec": wire, "source": "api"})
    decoded = c.decode(old)
    assert isinstance(decoded, c.PutJob) and decoded.spec == plain
