"""docs/architecture.md stays true: every file it names exists, and every module that writes a file format is listed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"

# A repository path in backquotes or plain text: a top-level folder of this repository, then more.
_PATH = re.compile(r"(?<![\w/.])((?:proximadb|pxd|schemas|proto|tests|bench|fuzz|man|docs)/[\w./<>-]*[\w/])")
# Short forms inside the layer diagram and prose: "storage/wal.py", "index/hnsw.pyx"...
_SHORT = re.compile(
    r"(?<![\w/.])((?:api|cli|codec|index|integrations|sdk|server|service|storage|tools)/[\w/-]*\.(?:pyx|pxd|py)\b)"
)
# A docstring that lays out bytes: "Byte layout ...", "On-disk format ...", or a "... layout/format/Body ...::" block.
_LAYOUT = re.compile(r"(?im)^\s*(?:byte layout|on-disk format)\b|\b(?:layout|format|body)\b[^\n]*::\s*$")


def _named_paths(text: str) -> set[str]:
    found = {p for p in _PATH.findall(text) if "<" not in p}
    found |= {"proximadb/" + p for p in _SHORT.findall(text)}
    return found


def test_every_named_path_exists() -> None:
    missing = sorted(p for p in _named_paths(DOC.read_text()) if not (ROOT / p).exists())
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_the_check_would_notice_a_missing_path() -> None:
    assert _named_paths("see `proximadb/storage/no_such_module.py` and index/gone.pyx") == {
        "proximadb/storage/no_such_module.py",
        "proximadb/index/gone.pyx",
    }


def test_every_module_that_documents_a_byte_layout_is_in_the_table() -> None:
    """A module whose docstring says it holds a byte layout must appear in the document's file table."""
    named = _named_paths(DOC.read_text())
    for path in sorted((ROOT / "proximadb").rglob("*")):
        if path.suffix not in {".py", ".pyx"} or "_generated" in path.parts:
            continue
        head = path.read_text(errors="replace")[:3000]
        if _LAYOUT.search(head):
            rel = path.relative_to(ROOT).as_posix()
            assert rel in named, f"{rel} documents a byte format but docs/architecture.md does not list it"
