"""The ``stdin`` job key: what a command job reads on its standard input (a crontab line's
text after its first ``%``). Validated with the key and the fix, carried by the wire codec
(old entries and snapshots still decode; a job without it encodes as before), shown by the
API as a key that PUTs back (redacted for a read token), and fed to the job's process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgpack
import pytest

from raftcron.api.app import spec_table
from raftcron.api.redact import REDACTED, redact_table, secrets_of
from raftcron.config import MAX_STDIN_CHARS, ConfigError, job_spec_from_mapping
from raftcron.core import commands as c
from raftcron.core.model import JobSpec, Run
from raftcron.core.state import State
from tests.helpers import FakeRaft
from tests.unit.test_executor import run_one

BASE = {"name": "j", "schedule": "0 3 * * *", "command": ["cat"]}
TEXT = "Dear ops,\nthe backup ran.\n100% done"


def test_the_key_parses_into_the_spec_and_defaults_to_nothing() -> None:
    assert job_spec_from_mapping({**BASE, "stdin": TEXT}, "jobs[0]").stdin == TEXT
    assert job_spec_from_mapping(BASE, "jobs[0]").stdin == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5, "jobs[0].stdin: expected a string, got an integer (put it in double quotes)"),
        (
            "x" * (MAX_STDIN_CHARS + 1),
            f"jobs[0].stdin: {MAX_STDIN_CHARS + 1} characters is too long (at most "
            f"{MAX_STDIN_CHARS}; for more, let the command read a file)",
        ),
    ],
)
def test_invalid_values_name_the_key_and_the_fix(value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        job_spec_from_mapping({**BASE, "stdin": value}, "jobs[0]")
    assert info.value.errors == [message]


def test_it_is_for_command_jobs_only(tmp_path: Path) -> None:
    table = {"name": "h", "schedule": "0 3 * * *", "http": {"url": "http://127.0.0.1/"}}
    with pytest.raises(ConfigError) as info:
        job_spec_from_mapping({**table, "stdin": "x"}, "request body")
    assert info.value.errors == [
        "request body: stdin: only applies to a command job (an http job runs no process; "
        "remove it)"
    ]
    from raftcron.embed import Cluster

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[cluster]\nsecret = "Xq3vJ8pL0wZr7TkN2bYc5HdF"\n'
        '[cluster.nodes.a]\nraft = "127.0.0.1:17301"\napi = "127.0.0.1:18301"\n'
    )
    cluster = Cluster.from_config(cfg, "a")
    with pytest.raises(ConfigError, match="stdin: not for an embedded job"):
        cluster.add_job(lambda: None, "* * * * *", name="e", stdin="x")


FULL = JobSpec(name="in", schedule="0 3 * * *", command=("cat",), stdin=TEXT)


def test_it_round_trips_the_wire_and_the_spec_table() -> None:
    cmd = c.PutJob(at_ms=1, spec=FULL)
    assert c.decode(c.encode(cmd)) == cmd
    table = spec_table(FULL)
    assert table["stdin"] == TEXT
    assert job_spec_from_mapping(table, "request body") == FULL  # GET, then PUT it back
    assert "stdin" not in spec_table(JobSpec(name="p", schedule="@daily", command=("true",)))


def test_old_entries_and_snapshots_decode_and_plain_specs_encode_as_before() -> None:
    plain = JobSpec(name="p", schedule="@daily", command=("true",))
    wire = c.spec_to_wire(plain)
    assert "stdin" not in wire
    old = msgpack.packb({"v": 1, "t": "put_job", "at": 1, "spec": wire, "source": "api"})
    decoded = c.decode(old)
    assert isinstance(decoded, c.PutJob) and decoded.spec == plain
    s = State()
    s.apply(c.PutJob(at_ms=1, spec=FULL))
    s.apply(c.PutJob(at_ms=1, spec=plain))
    back = State.restore(s.snapshot())
    assert back.jobs["in"].spec == FULL and back.jobs["p"].spec == plain
    assert back.digest() == s.digest()


def test_a_read_token_sees_the_marker() -> None:
    assert redact_table(spec_table(FULL))["stdin"] == REDACTED
    assert TEXT in secrets_of(FULL)  # a job that echoes its stdin: scrubbed from the output


def _run(tmp_path: Path, spec: JobSpec) -> Run:
    raft, rid = asyncio.run(run_one(tmp_path, spec, 0.0, FakeRaft()))
    result: Run = raft.machine.read(lambda s: s.runs[rid])
    return result


def test_the_job_reads_its_stdin(tmp_path: Path) -> None:
    spec = JobSpec(name="j", schedule="* * * * * *", command=("sh", "-c", "tr a-z A-Z"), stdin=TEXT)
    got = _run(tmp_path, spec)
    assert got.status == "succeeded", got.reason
    assert got.output == TEXT.upper()
    quiet = JobSpec(name="k", schedule="* * * * * *", command=("wc", "-c"))
    assert _run(tmp_path / "k", quiet).output.strip() == "0"  # no stdin: /dev/null
