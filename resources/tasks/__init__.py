"""Task notes: one markdown file per kernel (<definition>.md) saying what dominates its cost, the
traps in its definition, which bundled wiki pages apply, and what was measured.

The phase prompts can include a definition's note: `note(name)` returns its text, or None where
kda-mcp has no note for that definition (any definition of a user's own dataset).
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def path() -> Path:
    """The folder of the notes."""
    return _HERE


def note(definition: str) -> str | None:
    """The task note of `definition`, or None. Only plain names: nothing outside this folder is read."""
    if not definition or "/" in definition or "\\" in definition or definition.startswith("."):
        return None
    candidate = _HERE / f"{definition}.md"
    return candidate.read_text(encoding="utf-8") if candidate.is_file() else None
