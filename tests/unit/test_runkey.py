"""The run-id grammar has one parse/format pair (raftcron/core/runkey.py), and the id
functions built on it give the ids they always gave."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from raftcron.core.model import (
    backfill_run_id,
    dependency_run_id,
    fire_of,
    instance_run_id,
    retry_run_id,
    run_id,
)
from raftcron.core.runkey import RunKey
from raftcron.core.state import State, manual_run_id

SNAPSHOT = Path(__file__).parent / "data" / "snapshot" / "state.snapshot"

IDS = {
    "j@1000": RunKey("j", 1000),
    "j@1000.3": RunKey("j", 1000, attempt=3),
    "j@1000~2": RunKey("j", 1000, instance=2),
    "j@1000~2.3": RunKey("j", 1000, instance=2, attempt=3),
    "a.b-c_d@0~manual": RunKey("a.b-c_d", 0, variant="~manual"),
    "j@5~manual~4.2": RunKey("j", 5, variant="~manual", instance=4, attempt=2),
    "j@5~backfill-x_1-2": RunKey("j", 5, variant="~backfill-x_1-2"),
    "j@5~backfill-7~3": RunKey("j", 5, variant="~backfill-7", instance=3),
    "c@5~after": RunKey("c", 5, after=True),
    "c@5~manual~after~2.4": RunKey("c", 5, variant="~manual", after=True, instance=2, attempt=4),
    "c@5~backfill-b~after.2": RunKey("c", 5, variant="~backfill-b", after=True, attempt=2),
}


@pytest.mark.parametrize(("rid", "key"), IDS.items())
def test_parse_and_format_are_inverse(rid: str, key: RunKey) -> None:
    assert RunKey.parse(rid) == key
    assert key.format() == str(key) == rid


@pytest.mark.parametrize(
    "text", ["", "j", "j@", "@5", "j@x", "j@5~", "j@5.x", "j@5~other", "j@5.2~3", "a@b@5", "j@5 "]
)
def test_what_is_not_a_run_id(text: str) -> None:
    assert RunKey.parse(text) is None


# The splits the code used before RunKey, kept as the oracle.
def _old_fire_of(rid: str) -> str:
    return re.sub(r"~(\d+)$", "", re.sub(r"\.\d+$", "", rid), count=1)


def _old_retry_run_id(prev_id: str, prev_attempt: int) -> str:
    base = prev_id.rsplit(".", 1)[0] if prev_attempt > 1 else prev_id
    return f"{base}.{prev_attempt + 1}"


_OLD_CURSOR = re.compile(
    r"@([0-9]{1,16})(?:~manual|~backfill-[\w-]+)?(?:~after)?(?:~[0-9]+)?(?:\.[0-9]+)?$"
)


@pytest.mark.parametrize(("rid", "key"), IDS.items())
def test_the_id_functions_agree_with_the_old_splits(rid: str, key: RunKey) -> None:
    assert fire_of(rid) == _old_fire_of(rid) == key.fire.format()
    assert retry_run_id(rid, key.attempt) == _old_retry_run_id(rid, key.attempt)
    m = _OLD_CURSOR.search(rid)
    assert m is not None and int(m.group(1)) == key.scheduled_at_ms
    assert rid.split("@", 1)[0] == key.job


def test_the_formatters() -> None:
    assert run_id("j", 7) == "j@7" and run_id("j", 7, 2) == "j@7.2"
    assert manual_run_id("j", 7) == "j@7~manual"
    assert backfill_run_id("j", 7, "b1") == "j@7~backfill-b1"
    assert dependency_run_id("c", 7) == "c@7~after"
    assert dependency_run_id("c", 7, "~manual") == "c@7~manual~after"
    assert instance_run_id("j@7~manual", 1) == "j@7~manual"
    assert instance_run_id("j@7~manual", 3) == "j@7~manual~3"
    assert retry_run_id("j@7~3", 1) == "j@7~3.2"
    assert fire_of("not an id") == "not an id"


def test_every_run_id_of_the_snapshot_fixture_is_in_the_grammar() -> None:
    st = State.restore(SNAPSHOT.read_bytes())
    assert st.runs
    for rid, run in st.runs.items():
        key = RunKey.parse(rid)
        assert key is not None, rid
        assert key.format() == rid
        assert (key.job, key.scheduled_at_ms, key.attempt, key.instance) == (
            run.job,
            run.scheduled_at_ms,
            run.attempt,
            run.instance,
        )
