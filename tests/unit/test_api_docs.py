"""docs/api.md is generated from the OpenAPI document and kept in step with it.

``python -m raftcron.api.docs_gen --check`` is what CI runs through this test: change an
operation, a schema or the preamble without running the generator and it fails here.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from raftcron.api import docs_gen
from raftcron.api.openapi import OPERATIONS


def test_docs_api_md_is_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    code = docs_gen.main(["--check"])
    assert code == 0, capsys.readouterr().err + " (run: python -m raftcron.api.docs_gen)"


def test_check_fails_on_a_stale_file_and_writing_fixes_it(tmp_path: Path) -> None:
    out = tmp_path / "api.md"
    out.write_text(docs_gen.TARGET.read_text().replace("### GET /v1/status\n", ""))
    assert docs_gen.main(["--check", "--out", str(out)]) == 1
    assert docs_gen.main(["--out", str(out)]) == 0
    assert docs_gen.main(["--check", "--out", str(out)]) == 0
    assert out.read_text() == docs_gen.TARGET.read_text()


def test_every_operation_and_schema_is_on_the_page() -> None:
    doc = docs_gen.full_document()
    text = docs_gen.render(doc)
    for method, path in OPERATIONS:
        assert f"\n### {method} {path}\n" in text, (method, path)
        assert OPERATIONS[(method, path)]["summary"].split()[0] in text
    for name in doc["components"]["schemas"]:
        assert f"\n### {name}\n" in text, name


def test_a_changed_description_changes_the_page() -> None:
    doc = docs_gen.full_document()
    changed = copy.deepcopy(doc)
    changed["paths"]["/v1/status"]["get"]["summary"] = "a summary nobody wrote"
    assert "a summary nobody wrote" in docs_gen.render(changed)
    assert "a summary nobody wrote" not in docs_gen.render(doc)


def test_schema_text() -> None:
    assert docs_gen.schema_text({"$ref": "#/components/schemas/Job"}) == "[Job](#job)"
    assert docs_gen.schema_text({"type": ["string", "null"]}) == "string or null"
    assert (
        docs_gen.schema_text({"type": "integer", "minimum": 1, "maximum": 5, "default": 2})
        == "integer (>= 1, <= 5, default `2`)"
    )
    assert docs_gen.schema_text({"type": "array", "items": {"type": "string"}}) == (
        "array of string"
    )
    assert docs_gen.schema_text({"enum": ["a", "b"]}) == "`a` | `b`"
