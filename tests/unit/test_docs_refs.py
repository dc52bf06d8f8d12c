"""Links and citations in the docs point at files and headings that exist; the README is a
front door.

Code, tests and docs cite the design by section title (``docs/design.md, "Durability"``)
or, in Markdown, by a link to a heading (``design.md#durability``). A renamed or removed
section would leave those pointing nowhere; so would a citation of the design note the
project started from (:data:`OLD_NOTE`), which is not in the repository. Every relative
Markdown link of README.md and docs/ must name a file that exists and, with ``#anchor``,
a heading of it. The README keeps its promise to a newcomer: short, a first job that the
config parser accepts within its first 400 words, and links to the rest.
"""

from __future__ import annotations

import re
from pathlib import Path

from raftcron.config import parse_config

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


# [text](target): the target up to a space or the closing parenthesis (titles unused here)
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", flags=re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _prose(text: str) -> str:
    """``text`` without fenced code blocks (their ``#`` lines are no headings)."""
    return FENCE.sub("", text)


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of every heading of ``path`` (a repeated one gets ``-1``, ``-2``)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for m in re.finditer(r"^#{1,6} +(.+?) *#*$", _prose(path.read_text()), flags=re.MULTILINE):
        slug = _slug(re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)).strip())
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(path: Path) -> list[str]:
    # a link's text may be code (`[`alerts.yml`](alerts.yml)`): drop the spans' text only
    text = CODE_SPAN.sub("``", _prose(path.read_text()))
    return [m.group(1) for m in LINK.finditer(text)]


def test_every_relative_link_of_the_docs_resolves() -> None:
    broken = []
    checked = 0
    for source in _markdown_files():
        for target in _links(source):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                continue
            checked += 1
            file, _, anchor = target.partition("#")
            dest = (source.parent / file).resolve() if file else source
            where = f"{source.relative_to(ROOT)}: ({target})"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{where}: no heading #{anchor} in {dest.relative_to(ROOT)}")
            elif anchor and dest.suffix != ".md":
                broken.append(f"{where}: an anchor into a file that is not Markdown")
    assert checked > 100, "no links found: the pattern is out of date"
    assert broken == []


def test_the_link_checker_sees_a_broken_link_and_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## A `[[jobs]]` table (x)\n\n```sh\n# not a heading\n```\n"
        "[ok](#a-jobs-table-x) [bad](#not-a-heading) [gone](missing.md) [`c`](page.md#title)\n"
    )
    assert _anchors(page) == {"title", "a-jobs-table-x"}
    assert _links(page) == ["#a-jobs-table-x", "#not-a-heading", "missing.md", "page.md#title"]


README_MAX_WORDS = 1500
FIRST_JOB_WITHIN_WORDS = 400


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_the_readme_is_a_front_door() -> None:
    text = _readme()
    assert len(text.split()) <= README_MAX_WORDS
    for page in ("jobs", "operations", "api", "install", "troubleshooting", "design", "cli"):
        assert f"](docs/{page}.md" in text, page
    assert "make demo" in text and "make test" in text


def test_the_readmes_first_job_is_within_400_words_and_valid() -> None:
    """The first ```toml block with a [[jobs]] table: early, and accepted by the parser
    (with a minimal [cluster] around it) exactly as the README shows it."""
    text = _readme()
    m = re.search(r"^```toml\n(\[\[jobs\]\]\n.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    assert m is not None, "no [[jobs]] example in the README"
    assert len(text[: m.start()].split()) <= FIRST_JOB_WITHIN_WORDS
    cluster = (
        '[cluster]\nsecret = "0123456789abcdef-not-a-real-secret"\n'
        '[cluster.nodes.a]\nraft = "127.0.0.1:7101"\napi = "127.0.0.1:8101"\n'
    )
    config = parse_config(cluster + m.group(1), ROOT / "cluster.toml")
    assert [j.name for j in config.jobs] == ["hello"]
    assert re.search(r"raftcron jobs apply \S+\.toml", text[m.end() :])
