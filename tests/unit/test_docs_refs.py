"""Citations of docs/design.md name sections that exist, and nothing cites the old note.

Code, tests and docs cite the design by section title (``docs/design.md, "Durability"``)
or, in Markdown, by a link to a heading (``design.md#durability``). A renamed or removed
section would leave those pointing nowhere; so would a citation of the design note the
project started from (:data:`OLD_NOTE`), which is not in the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"
# Where citations live (the design page itself included: it cites its own sections).
SCANNED = ("raftcron", "tests", "bench", "docs", "examples", "packaging")
TOP_FILES = ("README.md", "CHANGELOG.md")
SUFFIXES = (".py", ".md", ".toml", ".yml", ".service")

TITLE_CITATION = re.compile(r'design\.md(?:#[\w-]+\))?,? "([^"\n]+)"')
ANCHOR_CITATION = re.compile(r"design\.md#([\w-]+)")
OLD_NOTE = re.compile(r"\bDESIGN\.md\b")


def _headings() -> list[str]:
    return [
        m.group(1).strip()
        for m in re.finditer(r"^#{2,4} (.+)$", DESIGN.read_text(), flags=re.MULTILINE)
    ]


def _slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _texts() -> list[tuple[str, str]]:
    paths = [ROOT / name for name in TOP_FILES]
    for top in SCANNED:
        paths += [p for p in sorted((ROOT / top).rglob("*")) if p.suffix in SUFFIXES]
    return [
        (str(p.relative_to(ROOT)), p.read_text(errors="replace"))
        for p in paths
        if p.is_file() and p != Path(__file__).resolve()
    ]


def test_every_cited_section_of_the_design_exists() -> None:
    titles = set(_headings())
    slugs = {_slug(t) for t in titles}
    texts = _texts()
    cited = [(path, m.group(1)) for path, text in texts for m in TITLE_CITATION.finditer(text)]
    anchored = [(path, m.group(1)) for path, text in texts for m in ANCHOR_CITATION.finditer(text)]
    assert cited, "no citation of docs/design.md found: the pattern is out of date"
    assert [(p, t) for p, t in cited if t not in titles] == []
    assert [(p, a) for p, a in anchored if a not in slugs] == []


def test_nothing_cites_the_original_design_note() -> None:
    # design.md itself names the note in the title of its last section.
    offenders = [
        f"{path}:{text.count(chr(10), 0, m.start()) + 1}"
        for path, text in _texts()
        if path != "docs/design.md"
        for m in OLD_NOTE.finditer(text)
    ]
    assert offenders == []


def test_the_readme_links_the_design() -> None:
    assert "docs/design.md" in (ROOT / "README.md").read_text()
