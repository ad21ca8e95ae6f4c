"""The documentation cannot rot: README.md stays a five-minute read (at most 12,000 bytes), every
relative link in README.md, docs/ and benchmarks/README.md resolves (the file, and a `#anchor`
to a heading by GitHub's slug rules), and the shell blocks marked `<!-- doc-test -->` in them
run, in process, on the bundled example."""

from __future__ import annotations

import os
import re
import shlex
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

from hrm_mlir.cli.app import main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
README_MAX_BYTES = 12_000
DOCS = [README, REPO / "benchmarks" / "README.md", *sorted((REPO / "docs").rglob("*.md"))]

DOC_TEST_MARK = "<!-- doc-test -->"
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1", re.DOTALL)
HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
# [text](target) or ![alt](target), with an optional "title"; the text may wrap lines
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
COMMAND_PREFIXES = ("hrm-mlir", ".venv/bin/hrm-mlir")


def _rel(path: Path) -> str:
    return os.path.relpath(path, REPO)


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) for every line outside fenced code blocks."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
            else:
                out.append((number, line))
        elif (
            m
            and m.group(1)[0] == fence[0]
            and len(m.group(1)) >= len(fence)
            and not line.strip().strip(fence[0])  # a closing fence has nothing after it
        ):
            fence = None
    return out


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower case, without punctuation other than
    '-' and '_', spaces made '-' (links and inline markup reduced to their text)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file; repeated headings get -1, -2, ... as on GitHub."""
    seen: Counter[str] = Counter()
    out: set[str] = set()
    for _, line in _prose_lines(path.read_text()):
        m = HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        out.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return out


def links(path: Path) -> list[str]:
    """The targets of the markdown links in a file, outside code blocks and code spans."""
    prose = "\n".join(line for _, line in _prose_lines(path.read_text()))
    prose = CODE_SPAN.sub("", HTML_COMMENT.sub("", prose))
    return LINK.findall(prose)


def test_the_readme_is_a_five_minute_read():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size:,} bytes, over {README_MAX_BYTES:,}"


def test_the_doc_set_is_found():
    names = {_rel(p) for p in DOCS}
    assert {"README.md", "docs/README.md", "benchmarks/README.md"} <= names
    assert all(p.is_file() for p in DOCS)


def test_github_slug_follows_githubs_rules():
    slug = github_slug("The `@act` module (the whole ACT loop)")
    assert slug == "the-act-module-the-whole-act-loop"
    assert github_slug("Scale-out on Ray (`--engine ray`)") == "scale-out-on-ray---engine-ray"
    assert github_slug("Targets, by what is proven") == "targets-by-what-is-proven"
    assert github_slug("Kits: build here") == "kits-build-here"
    assert github_slug("snake_case and [a link](x.md)") == "snake_case-and-a-link"


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_every_relative_link_resolves(doc: Path):
    broken = []
    for target in links(doc):
        if SCHEME.match(target):  # http(s), mailto, ...: not checked here
            continue
        path, _, anchor = target.partition("#")
        path = unquote(path)
        if path.startswith("/"):
            resolved = REPO / path.lstrip("/")
        else:
            resolved = (doc.parent / path).resolve() if path else doc
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved}")
        elif anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {_rel(resolved)}")
    assert not broken, f"{_rel(doc)}:\n  " + "\n  ".join(broken)


def doc_test_blocks() -> list[tuple[str, list[str]]]:
    """Each fenced block right after a `<!-- doc-test -->` line: (where, its commands), with
    backslash continuations joined and blank or comment-only lines dropped."""
    blocks: list[tuple[str, list[str]]] = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() != DOC_TEST_MARK:
                continue
            where = f"{_rel(doc)}:{i + 1}"
            opening = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
            assert opening, f"{where}: {DOC_TEST_MARK} must come right before a fenced block"
            commands: list[str] = []
            pending = ""
            for body in lines[i + 2 :]:
                if body.strip().startswith(opening.group(1)):
                    break
                pending += body
                if pending.endswith("\\"):
                    pending = pending[:-1] + " "
                    continue
                if shlex.split(pending, comments=True):
                    commands.append(pending)
                pending = ""
            else:
                raise AssertionError(f"{where}: the doc-test block is never closed")
            assert commands, f"{where}: an empty doc-test block"
            blocks.append((where, commands))
    return blocks


DOC_TEST_BLOCKS = doc_test_blocks()


def _argv(command: str, out: Path) -> list[str]:
    """`hrm-mlir ...` as `main`'s argv, with the paths under out/ moved into `out`."""
    words = shlex.split(command, comments=True)
    assert words[0] in COMMAND_PREFIXES, f"a doc-test runs hrm-mlir commands only: {command}"

    def moved(word: str) -> str:
        flag, eq, value = word.rpartition("=") if word.startswith("--") else ("", "", word)
        if value.startswith("out/"):
            value = str(out / value.removeprefix("out/"))
        return f"{flag}{eq}{value}"

    return [moved(w) for w in words[1:]]


def test_the_docs_have_doc_tests():
    assert len(DOC_TEST_BLOCKS) >= 3
    commands = [c for _, block in DOC_TEST_BLOCKS for c in block]
    assert any(" export " in f" {c} " for c in commands)


@pytest.mark.parametrize(
    "block", [b for _, b in DOC_TEST_BLOCKS], ids=[w for w, _ in DOC_TEST_BLOCKS]
)
def test_doc_example_runs(block: list[str], tmp_path: Path, monkeypatch):
    """Every command of a marked block, in order, in the repository root (where the docs' paths
    start), its outputs under a temporary out/; each must exit 0."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "out"
    out.mkdir()
    for command in block:
        try:
            code = main(_argv(command, out))
        except SystemExit as e:  # --version exits through argparse
            code = 0 if e.code is None else e.code
        assert code == 0, f"exit {code}: {command}"
