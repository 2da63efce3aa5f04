"""The front door and the manuals hold together: every relative link in README.md and docs/*.md
resolves (the file exists; an #anchor names one of its headings), CI runs exactly the README's
test command, and the license and citation files say what pyproject.toml says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from testbed import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK_RE = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE_RE = re.compile(r"^(```|~~~)")


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code (links there are not links)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE_RE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {
        slug(line.lstrip("#"))
        for line in prose(path.read_text()).splitlines()
        if re.match(r"^#{1,6} ", line)
    }


def relative_links(path: Path) -> list[str]:
    return [
        target
        for target in LINK_RE.findall(prose(path.read_text()))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_resolves(doc: Path):
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)


def test_the_link_checker_sees_links_and_headings():
    assert slug("What needs a full kernel") == "what-needs-a-full-kernel"
    assert slug("The packet path, file by file") == "the-packet-path-file-by-file"
    assert (
        slug("Mininet's own command line (`mn --custom`)")
        == "mininets-own-command-line-mn---custom"
    )
    text = "see [a](x.md#y) and `[b](not-a-link.md)`\n```\n[c](neither.md)\n```\n"
    assert LINK_RE.findall(prose(text)) == ["x.md#y"]


def test_the_docs_the_readme_promises_exist():
    readme = (REPO_ROOT / "README.md").read_text()
    for name in (
        "seed",
        "layouts",
        "director",
        "failover",
        "keepalived",
        "experiments",
        "results",
        "openflow",
        "teachers",
        "development",
        "ARCHITECTURE",
    ):
        assert f"](docs/{name}.md)" in readme, name
    assert "## What the seed's question gets as an answer" in readme
    assert len(readme.splitlines()) <= 180, "the README is a front door: keep it short"


def test_ci_runs_exactly_the_readmes_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text().split("\n")
    commands = [
        line.strip() for line in ci if line.strip() and not line.startswith(("#", "set", "cd"))
    ]
    assert commands == ["make test"]
    block = (REPO_ROOT / "README.md").read_text().split("## On a fresh machine")[1]
    assert re.search(r"^make test\b", block, re.M), "the README shows `make test` to run the tests"
    assert re.search(r"^make reproduce\b", block, re.M)


def test_license_and_citation_agree_with_pyproject():
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()  # tomllib is Python 3.11+
    assert re.search(r'^license = "MIT"$', pyproject, re.M)
    version = re.search(r'^version = "([^"]+)"$', pyproject, re.M).group(1)
    assert (REPO_ROOT / "LICENSE").read_text().startswith("MIT License")
    cff = (REPO_ROOT / "CITATION.cff").read_text()
    for key in ("cff-version: 1.2.0", "message:", "title:", "authors:", "license: MIT"):
        assert key in cff
    assert f'version: "{version}"' in cff
