"""The job reference's key tables (between the markers of docs/jobs.md) are generated from
the job field table: they must be up to date, and the generator must notice a drift."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from raftcron import docs_gen
from raftcron.core.jobfields import JOB_FIELDS


def test_generated_docs_are_up_to_date() -> None:
    assert docs_gen.stale() == [], "run: python -m raftcron.docs_gen"


def test_check_fails_on_a_stale_file_and_writing_fixes_it(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    jobs = tmp_path / "docs" / "jobs.md"
    shutil.copy(docs_gen.ROOT / "docs" / "jobs.md", jobs)
    text = jobs.read_text()
    jobs.write_text(text.replace("| `timezone` |", "| `tz` |"))
    assert docs_gen.main(["--check", "--root", str(tmp_path)]) == 1
    assert docs_gen.stale(tmp_path) == [jobs]
    assert docs_gen.main(["--root", str(tmp_path)]) == 0
    assert docs_gen.main(["--check", "--root", str(tmp_path)]) == 0
    assert jobs.read_text() == text


def test_only_the_block_between_the_markers_is_generated(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    jobs = tmp_path / "docs" / "jobs.md"
    jobs.write_text(f"# Hand-written\n\nprose\n\n{docs_gen.BEGIN}\nold\n{docs_gen.END}\n\nmore\n")
    assert docs_gen.main(["--root", str(tmp_path)]) == 0
    assert jobs.read_text() == (
        f"# Hand-written\n\nprose\n\n{docs_gen.BEGIN}\n{docs_gen.generated_block()}\n"
        f"{docs_gen.END}\n\nmore\n"
    )
    jobs.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        docs_gen.main(["--check", "--root", str(tmp_path)])


def test_every_key_is_documented() -> None:
    text = docs_gen.generated_block()
    for f in JOB_FIELDS:
        assert f.doc.strip(), f.attr
        if f.key:
            assert f"| `{f.key}` |" in docs_gen.keys_table()
            assert f"| `{f.key}` | " in text
