"""The documentation stays true: generated pages are current, the README is short, links resolve, and nothing
points outside the repository."""

from __future__ import annotations

import re

from docs import generate
from tests.fixtures import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# pages other helpers add in their branches; the lead merges them (remove a name once it is on main)
COMING: set[str] = set()


def test_generated_pages_are_current() -> None:
    for path, text in generate.rendered().items():
        assert path.read_text() == text, f"{path.relative_to(REPO)} is stale: run python3 -m docs.generate"


def test_generated_blocks_are_filled() -> None:
    arch = (REPO / "docs" / "architecture.md").read_text()
    assert "| `mesh` | errors |" in arch  # mesh/ imports nothing of meshpkt but errors
    assert "`gwbridge` | entry ingress_sbox | `eth1`" in arch
    assert "| `tcp_seq` | int64 | `-1` |" in (REPO / "docs" / "packet-table.md").read_text()


def test_readme_is_short() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


def test_no_reference_outside_the_repository() -> None:
    for path in DOCS:
        text = path.read_text()
        for bad in ("../shared", "/work/", "swarm-mesh-reference"):
            assert bad not in text, f"{path.relative_to(REPO)} refers to {bad!r}, outside the repository"


def test_local_links_resolve() -> None:
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            resolved = (path.parent / target).resolve()
            rel = resolved.relative_to(REPO).as_posix() if resolved.is_relative_to(REPO) else str(resolved)
            assert resolved.exists() or rel in COMING, f"{path.relative_to(REPO)} links to missing {target}"
