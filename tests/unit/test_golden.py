"""The golden fixtures (tests/unit/golden): the wire bytes of job specs and of every command
kind, what they decode to, the API views of jobs, the parsed TOML tables and their error
messages, and the OpenAPI job schemas, as the code computed them before the job field
table. Snapshot and wire compatibility with running clusters depends on the bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from raftcron.core import commands as c
from tests.unit.golden.cases import COMMANDS, GOLDEN_DIR, compute, strip_descriptions

_NOW = compute()


def _golden(name: str) -> Any:
    return json.loads((GOLDEN_DIR / f"{name}.json").read_text())


def _by_case(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["case"]: row for row in rows}


@pytest.mark.parametrize("part", ["specs", "commands", "raw", "packed_specs"])
def test_wire_bytes_unchanged(part: str) -> None:
    assert _NOW["wire"][part] == _golden("wire")[part]


def test_every_command_kind_has_a_fixture() -> None:
    kinds = {type(cmd) for _, cmd in COMMANDS}
    assert kinds == set(c.Command.__args__)  # type: ignore[attr-defined]


def test_toml_results_and_messages_unchanged() -> None:
    old, new = _golden("toml"), _NOW["toml"]
    assert _by_case(new["tables"]) == _by_case(old["tables"])
    assert new["files"] == old["files"]


def test_api_views_unchanged() -> None:
    old, new = _by_case(_golden("api")["jobs"]), _by_case(_NOW["api"]["jobs"])
    assert new.keys() == old.keys()
    for case in old:
        assert new[case] == old[case], case


def test_openapi_job_schemas_unchanged() -> None:
    """Structure (types, enums, bounds, required keys) unchanged; descriptions are the
    docs column of the field table and may be reworded."""
    assert strip_descriptions(_NOW["openapi"]) == strip_descriptions(_golden("openapi"))


def test_jobs_show_text_unchanged() -> None:
    assert _NOW["cli"] == _golden("cli")
