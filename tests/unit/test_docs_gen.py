"""The job reference (docs/jobs.md, the README's key table) is generated from the job field
table: it must be up to date, and the generator must notice a drift."""

from __future__ import annotations

import shutil
from pathlib import Path

from raftcron import docs_gen
from raftcron.core.jobfields import JOB_FIELDS


def test_generated_docs_are_up_to_date() -> None:
    assert docs_gen.stale() == [], "run: python -m raftcron.docs_gen"


def test_check_fails_on_a_stale_file_and_writing_fixes_it(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    shutil.copy(docs_gen.ROOT / "README.md", tmp_path / "README.md")
    (tmp_path / "docs" / "jobs.md").write_text("old\n")
    assert docs_gen.main(["--check", "--root", str(tmp_path)]) == 1
    assert docs_gen.main(["--root", str(tmp_path)]) == 0
    assert docs_gen.main(["--check", "--root", str(tmp_path)]) == 0
    readme = (tmp_path / "README.md").read_text()
    (tmp_path / "README.md").write_text(readme.replace("| `timezone` |", "| `tz` |"))
    assert docs_gen.stale(tmp_path) == [tmp_path / "README.md"]


def test_every_key_is_documented() -> None:
    text = docs_gen.jobs_md()
    for f in JOB_FIELDS:
        assert f.doc.strip(), f.attr
        if f.key:
            assert f"| `{f.key}` |" in text and f"| `{f.key}` |" in docs_gen.readme_table()
