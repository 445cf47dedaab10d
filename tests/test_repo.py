"""The repository stands on its own: no file points outside it, and the docs it points to exist.

A clone of this repository is all a user has. Reading material that lived beside the checkout
during development (a sibling folder) must not be referred to by any tracked file: what the tests
need is kept under tests/fixtures/, and what the code implements is written up in docs/method.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Built from pieces so that this file does not match itself.
_SIBLING = "sha" + "red"
NEEDLES = ("../" + _SIBLING, _SIBLING + "/notes", _SIBLING + "/kuberay-crds")

# `docs/<name>.md` mentioned anywhere (not as the tail of a longer path).
DOC_MENTION = re.compile(r"(?<![\w./-])docs/([\w.-]+\.md)")
# Markdown links: [text](target), the target without a scheme.
MD_LINK = re.compile(r"\]\(([^()\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def tracked_files() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot list the tracked files")
    if not (REPO / ".git").exists():
        pytest.skip(
            f"{REPO} is not a git checkout (no .git, e.g. a source tarball): no tracked files to list"
        )
    proc = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, timeout=60, check=False
    )
    if proc.returncode:
        pytest.fail(f"git ls-files failed in {REPO}:\n{proc.stderr.decode(errors='replace')}")
    return [p for p in proc.stdout.decode().split("\0") if p]


def test_no_tracked_file_refers_to_the_sibling_folder():
    files = tracked_files()
    assert files, f"git ls-files lists nothing in {REPO}"
    hits = []
    for rel in files:
        path = REPO / rel
        if not path.is_file():  # deleted in the working tree, or a submodule
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary
            continue
        for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if any(n in line for n in NEEDLES):
                hits.append(f"{rel}:{lineno}: {line.strip()[:160]}")
    assert not hits, (
        "tracked files refer to the sibling folder that a clone does not have (keep test data under "
        "tests/fixtures/, write what the code implements into docs/method.md):\n" + "\n".join(hits)
    )


def test_method_doc_exists():
    method = REPO / "docs" / "method.md"
    assert method.is_file(), "docs/method.md is missing: code docstrings point to it"
    assert method.read_text().strip(), "docs/method.md is empty"


def _sources() -> list[Path]:
    """Where a reader meets references to docs: code, docs, configs, manifests, the chart, bench."""
    return [
        *sorted((REPO / "pairaug_ray").rglob("*.py")),
        *sorted((REPO / "docs").glob("*.md")),
        REPO / "README.md",
        *sorted((REPO / "configs").glob("*.yaml")),
        *sorted((REPO / "k8s").glob("*")),
        *sorted((REPO / "helm").rglob("*.yaml")),
        *sorted((REPO / "helm").rglob("*.txt")),
        *sorted((REPO / "bench").glob("*.py")),
        REPO / "Dockerfile",
        REPO / "Makefile",
    ]


def test_every_mentioned_doc_exists():
    missing = []
    for path in _sources():
        if not path.is_file():
            continue
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for name in DOC_MENTION.findall(line):
                if not (REPO / "docs" / name).is_file():
                    missing.append(f"{path.relative_to(REPO)}:{lineno}: docs/{name}")
    assert not missing, "mentioned docs that do not exist:\n" + "\n".join(missing)


# Repository paths named in the docs: `pairaug_ray/...` and `tests/...`.
REPO_PATH = re.compile(r"(?<![\w./-])((?:pairaug_ray|tests)/[\w./-]*\w)")


def test_paths_named_in_the_docs_exist():
    """Modules and tests the README and docs name are where they say (catches moves and renames)."""
    missing = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        if not page.is_file():
            continue
        for lineno, line in enumerate(page.read_text(errors="replace").splitlines(), 1):
            for rel in REPO_PATH.findall(line):
                if not (REPO / rel).exists():
                    missing.append(f"{page.relative_to(REPO)}:{lineno}: {rel}")
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text(errors="replace").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            slug = _slug(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_markdown_links_between_docs_resolve():
    """Relative links in README.md and docs/*.md reach a file, and a heading when they name one."""
    broken = []
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for page in pages:
        if not page.is_file():
            continue
        fenced = False
        for lineno, line in enumerate(page.read_text(errors="replace").splitlines(), 1):
            if FENCE.match(line):
                fenced = not fenced
                continue
            if fenced:
                continue
            for target in MD_LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                file_part, _, anchor = target.partition("#")
                dest = (page.parent / file_part).resolve() if file_part else page
                where = f"{page.relative_to(REPO)}:{lineno}: {target}"
                if not dest.exists():
                    broken.append(f"{where} (no such file)")
                elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                    broken.append(f"{where} (no heading with that anchor in {dest.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)
