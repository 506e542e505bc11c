"""The documentation: every relative link in the repository's markdown resolves (the file
exists, and a #fragment names a heading of the target), the README stays a front door, and no
tracked file carries an absolute path of the machine it was written on.

Standard library and pytest only: these checks need none of ncalab's dependencies.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 210
SKIP_DIRS = {".venv", ".git", "node_modules"}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target); the target may be <wrapped> and followed by a "title".
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+[\"'(][^)]*)?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s[^>]*(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def markdown_files() -> list[Path]:
    """README.md, docs/*.md, assets/README.md, runs/README.md, tests/data/README.md...: every
    markdown file of the checkout, less virtual environments, git's own folder, node_modules
    and the run store's contents (runs/README.md excepted)."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder)
        rel = here.relative_to(ROOT)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        if rel == Path("runs"):
            dirs[:] = []  # the run store's folders: runs made on this machine, not documentation
            files = [f for f in files if f == "README.md"]
        found.extend(here / f for f in sorted(files) if f.endswith(".md"))
    return sorted(found)


def outside_code_blocks(text: str):
    """(line number, line) of every line outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            continue
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        yield number, line


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans removed."""
    return [(number, INLINE_CODE.sub("", line)) for number, line in outside_code_blocks(text)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation other than '-' and '_'
    dropped, each space made a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text, not its target
    text = re.sub(r"<[^>]+>", "", text)  # inline html
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@functools.lru_cache(maxsize=None)
def anchors(path: Path) -> frozenset[str]:
    """Every anchor a markdown file offers: its headings' slugs (a repeated one numbered -1, -2,
    as GitHub does) and explicit <a name=...> / id=... anchors."""
    found, seen = set(), {}
    text = path.read_text(encoding="utf-8")
    for _, line in prose_lines(text):
        found.update(HTML_ANCHOR.findall(line))
    # headings: read from the raw lines (inline code in a heading is part of its text)
    for _, line in outside_code_blocks(text):
        h = HEADING.match(line)
        if not h:
            continue
        base = slug(h.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link outside code."""
    links = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for m in LINK.finditer(line):
            target = m.group(1).strip("<>")
            if not target or target.startswith("#") or EXTERNAL.match(target):
                continue
            links.append((number, target))
    return links


def test_the_markdown_files_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert "README.md" in names
    assert any(n.startswith("docs/") for n in names)


@pytest.mark.parametrize("md", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(md: Path):
    broken = []
    for number, target in relative_links(md):
        file_part, _, fragment = target.partition("#")
        file_part = urllib.parse.unquote(file_part.split("?", 1)[0])
        dest = (md.parent / file_part).resolve()
        where = f"{md.relative_to(ROOT)}:{number}: {target}"
        if not dest.exists():
            broken.append(f"{where} (no such file)")
            continue
        if fragment and dest.is_file() and dest.suffix.lower() == ".md":
            if urllib.parse.unquote(fragment).lower() not in anchors(dest):
                broken.append(f"{where} (no heading with anchor #{fragment} in {dest.relative_to(ROOT)})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_same_file_anchors_resolve():
    broken = []
    for md in markdown_files():
        own = anchors(md)
        for number, line in prose_lines(md.read_text(encoding="utf-8")):
            for m in LINK.finditer(line):
                target = m.group(1).strip("<>")
                if target.startswith("#") and len(target) > 1 and urllib.parse.unquote(target[1:]).lower() not in own:
                    broken.append(f"{md.relative_to(ROOT)}:{number}: {target}")
    assert not broken, "anchors with no heading:\n" + "\n".join(broken)


def test_slugs_follow_github():
    assert slug("Running at scale: torchrun on one node, Slurm through submitit") == \
        "running-at-scale-torchrun-on-one-node-slurm-through-submitit"
    assert slug("Throughput (2-core CPU, `python benchmarks/nca_throughput.py`)") == \
        "throughput-2-core-cpu-python-benchmarksnca_throughputpy"
    assert slug("11. The paper's results") == "11-the-papers-results"


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move detail into docs/")


# Absolute paths of a machine: built from pieces so that this file does not match itself.
_SEP = "/"
MACHINE_PATHS = re.compile(
    "(?<![\\w.~-])" + _SEP + "(?:" + "|".join([
        "wo" + "rk" + _SEP,
        "ro" + "ot" + _SEP,
        "ho" + "me" + _SEP + "[A-Za-z0-9_.-]+",
        "Us" + "ers" + _SEP + "[A-Za-z0-9_.-]+",
    ]) + ")"
)


def tracked_files() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    try:
        done = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"git ls-files failed: {e}")
    if done.returncode != 0:
        pytest.skip("not a git checkout")
    return [name for name in done.stdout.decode("utf-8", "replace").split("\0") if name]


def test_no_tracked_file_holds_a_machine_path():
    offending = []
    for name in tracked_files():
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the working tree, or a submodule
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if MACHINE_PATHS.search(line):
                offending.append(f"{name}:{number}: {line.strip()[:160]}")
    assert not offending, "absolute paths of a machine in tracked files:\n" + "\n".join(offending)


# A gain or difference as the findings write it (-0.052, +0.043, ± 0.010) and a perplexity with
# its spread (99.63 ± 1.67).
HEADLINE_FIGURE = re.compile(r"(?:[+-]\d\.\d{3}\b|± \d\.\d{3}\b|\b\d+\.\d{2} ± \d+\.\d{2}\b)")


def readme_findings() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("## What it found", 1)[1].split("\n## ", 1)[0]


def test_the_readmes_headline_figures_are_the_results_pages():
    """Every gain (and perplexity with its spread) the README's findings quote is in
    docs/results.md, where its table, seeds and settings are: the two cannot drift apart."""
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    quoted = HEADLINE_FIGURE.findall(readme_findings())
    assert len(quoted) >= 10, quoted  # the findings quote their figures (and this pattern sees them)
    missing = sorted({f for f in quoted if f not in results})
    assert not missing, f"figures in the README's findings but not in docs/results.md: {missing}"


def test_the_check_of_headline_figures_sees_a_drifted_figure():
    assert HEADLINE_FIGURE.findall("gain -0.096 ± 0.024; ppl 103.82 ± 3.07 and +0.5%") == [
        "-0.096", "± 0.024", "103.82 ± 3.07"]
