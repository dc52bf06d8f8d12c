"""The API's pure parts, in process: job tables round-trip through the config validator,
time and cursor parsing, the OpenAPI document against the routes of a real app, and the
pause note through the command envelope and snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from openapi_spec_validator import validate

from raftcron.api import app as api
from raftcron.api import openapi
from raftcron.config import ApiConfig, ClusterConfig, Config, HostPort, NodeConfig
from raftcron.config import job_spec_from_mapping as from_table
from raftcron.core import commands as c
from raftcron.core.model import JobSpec, Run
from raftcron.core.state import State
from raftcron.node import Node


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0ms"), (1, "1ms"), (1500, "1500ms"), (30_000, "30s"), (90_000, "90s"),
     (300_000, "5m"), (5_400_000, "90m"), (7_200_000, "2h"), (172_800_000, "2d")],
)  # fmt: skip
def test_duration_text(ms: int, text: str) -> None:
    assert api.duration_text(ms) == text


@pytest.mark.parametrize(
    "table",
    [
        {"name": "a", "schedule": "* * * * *", "command": ["true"]},
        {
            "name": "b.c-d_e",
            "schedule": "30 2 * * MON-FRI 15",
            "command": ["sh", "-c", "echo 'x y'"],
            "timezone": "Europe/Berlin",
            "timeout": "90s",
            "overlap": "skip",
            "catchup": "0s",
            "retries": 2,
            "tags": {"role": "db", "zone": "a"},
            "lease": "1500ms",
            "env": {"A": "1"},
            "cwd": "/tmp",
        },
        {
            "name": "new-keys",
            "schedule": "* * * * * *",
            "command": ["true"],
            "overlap": "buffer_all",
            "catchup_mode": "latest",
            "jitter": "45s",
        },
        {
            "name": "retrying",
            "schedule": "* * * * *",
            "command": ["true"],
            "overlap": "terminate_other",
            "retries": 3,
            "retry_backoff": "2s",
            "retry_backoff_max": "1m",
            "retry_other_node": True,
        },
        {
            "name": "n",
            "schedule": "@daily",
            "command": ["x"],
            "overlap": "buffer_one",
            "catchup_mode": "none",
        },
    ],
)
def test_spec_table_round_trips(table: dict[str, object]) -> None:
    spec = from_table(table, "t")
    again = api.spec_table(spec)
    assert from_table(again, "t") == spec
    assert api.spec_table(from_table(again, "t")) == again


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-03-29T00:00:00Z", 1774742400000),
        ("2026-03-29T02:00:00+02:00", 1774742400000),
        ("2026-03-29T00:00:00.250Z", 1774742400250),
        ("1774742400000", 1774742400000),
    ],
)
def test_parse_instant(text: str, ms: int) -> None:
    assert api.parse_instant(text, "from") == ms


@pytest.mark.parametrize(
    ("text", "needle"),
    [("yesterday", "not an RFC 3339"), ("2026-03-29T00:00:00", "no UTC offset"), ("", "not an")],
)
def test_parse_instant_refuses(text: str, needle: str) -> None:
    with pytest.raises(api.ApiProblem) as err:
        api.parse_instant(text, "from")
    assert err.value.status == 400 and needle in err.value.message


def test_cursor() -> None:
    runs = {"j@5": Run(id="j@5", job="j", scheduled_at_ms=5, status="succeeded")}
    assert api._cursor("123", runs.get) == (123, "")
    assert api._cursor("j@5", runs.get) == (5, "j@5")
    assert api._cursor("gone@77~manual", runs.get) == (77, "gone@77~manual")
    assert api._cursor("gone@77.2", runs.get) == (77, "gone@77.2")
    assert api._cursor("gone@77~manual.3", runs.get) == (77, "gone@77~manual.3")
    with pytest.raises(api.ApiProblem):
        api._cursor("garbage", runs.get)


def _app(tmp_path: Path) -> api.web.Application:
    node = NodeConfig(
        name="a",
        raft=HostPort(host="127.0.0.1", port=1),
        api=HostPort(host="127.0.0.1", port=2),
        tags=(),
        data_dir=tmp_path,
    )
    cfg = Config(
        path=tmp_path / "c.toml",
        cluster=ClusterConfig(secret="x" * 20, nodes=(node,)),
        api=ApiConfig(),
        jobs=(),
    )
    return api.build_app(Node(cfg, "a"))


def test_openapi_lists_exactly_the_registered_routes(tmp_path: Path) -> None:
    app = _app(tmp_path)
    doc = openapi.document(app)
    validate(doc)  # a valid OpenAPI 3.1 document
    in_doc = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    routes = set(openapi.registered_operations(app))
    assert routes - in_doc == set(), "routes missing from OPERATIONS"
    assert in_doc == routes
    # Nothing described that no module registers (a renamed or dropped route).
    assert set(openapi.OPERATIONS) - routes == set()
    for (method, path), op in openapi.OPERATIONS.items():
        assert op["responses"], (method, path)
        assert "{" not in path or "parameters" in openapi._operation(method, path, op)


def test_pause_note_survives_the_envelope_and_snapshots() -> None:
    st = State()
    spec = JobSpec(name="j", schedule="* * * * *", command=("true",))
    st.apply(c.PutJob(at_ms=1, spec=spec))
    plain = st.digest()
    cmd = c.SetPaused(at_ms=2, name="j", paused=True, note="disk full, see TICKET-9")
    decoded = c.decode(c.encode(cmd))
    assert decoded == cmd
    st.apply(cmd)
    again = State.restore(st.snapshot())
    assert again.jobs["j"].pause_note == "disk full, see TICKET-9" and again.jobs["j"].paused
    assert again.digest() == st.digest()
    st.apply(c.SetPaused(at_ms=3, name="j", paused=False, note="ignored"))
    assert st.jobs["j"].pause_note == "" and not st.jobs["j"].paused
    # A job never paused with a note encodes exactly as before the field existed.
    assert State.restore(st.snapshot()).digest() == st.digest()
    assert plain != st.digest()  # (updated_ms changed; the note itself is gone)


def test_job_view_shows_the_new_keys_buffer_and_paused_aggregates() -> None:
    t0 = 1_800_000_000_000
    spec = JobSpec(
        name="backup", schedule="* * * * * *", command=("true",), overlap="buffer_all",
        catchup_mode="latest", jitter_ms=60_000,
    )  # fmt: skip
    st = State()
    st.apply(c.PutJob(at_ms=t0, spec=spec))
    offset = api.jitter_offset_ms("backup", 60_000)
    for at in (t0 + 1000, t0 + 2000, t0 + 3000):
        fire = c.Fire(job="backup", scheduled_at_ms=at, node="a", trigger="schedule")
        st.apply(c.Plan(at_ms=at + offset, fires=(fire,)))
    job = st.jobs["backup"]
    view = api.job_json(job, t0 + 3000 + offset, None, sorted(st.live.get("backup", ())))
    assert view["catchup_mode"] == "latest" and view["jitter_ms"] == 60_000
    assert view["jitter_offset_ms"] == offset
    assert view["buffered"] == ["backup@1800000002000", "backup@1800000003000"]
    assert view["spec"]["jitter"] == "1m" and view["spec"]["catchup_mode"] == "latest"
    # the next fire is the next scheduled time not yet claimed (claimed offset later)
    assert view["next_fire"] == "2027-01-15T08:00:04Z"
    buffered = api.run_json(st.runs["backup@1800000002000"])
    assert buffered["status"] == "buffered" and buffered["trigger"] == "buffered"
    st.apply(c.SetPaused(at_ms=t0 + 4000, name="backup", paused=True))
    paused = c.Missed(
        job="backup", first_ms=t0 + 4000, last_ms=t0 + 6000, count=3, reason="p", status="paused"
    )
    st.apply(c.Plan(at_ms=t0 + 7000, missed=(paused,)))
    rec = api.run_json(st.runs["backup@1800000004000"])
    assert (rec["status"], rec["count"], rec["last_scheduled_at"]) == (
        "paused",
        3,
        "2027-01-15T08:00:06Z",
    )
    assert "buffered" in api.RUN_STATUSES and "paused" in api.RUN_STATUSES
