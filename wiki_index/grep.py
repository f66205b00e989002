"""Regex search over page text, kept cheap by a required literal.

A pattern is only accepted if it contains a literal run of at least 3 characters that every
match must contain (found by walking the parsed regex). Pages and lines that do not contain
that literal are skipped with a plain substring test, so the regex itself, however costly,
only ever runs on the few lines that could match.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

try:  # Python 3.11+
    from re import _constants as sre_constants
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover - older interpreters
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

from kda_mcp.tools.errors import InvalidArgumentError
from kda_mcp.wiki_index.pages import Page

MAX_PATTERN_CHARS = 300
MAX_LINE_CHARS = 300
MIN_LITERAL_CHARS = 3
TIME_BUDGET_S = 3.0

_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT}
if hasattr(sre_constants, "POSSESSIVE_REPEAT"):
    _REPEATS.add(sre_constants.POSSESSIVE_REPEAT)


@dataclass
class Match:
    page: Page
    line_no: int
    line: str


def _literal_runs(items: Iterable[tuple[object, object]]) -> list[str]:
    """Literal runs that every match of this (parsed) sequence must contain.

    Conservative: a run is broken by anything that is not a plain literal, and only parts that
    must occur (groups, repeats with a minimum of one) are looked into. Branches, classes,
    optional parts and lookarounds contribute nothing.
    """
    runs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            runs.append("".join(current))
            current.clear()

    for op, arg in items:
        if op is sre_constants.LITERAL:
            current.append(chr(arg))  # type: ignore[arg-type]
            continue
        flush()
        if op is sre_constants.SUBPATTERN:
            runs.extend(_literal_runs(arg[-1]))  # type: ignore[index]
        elif op in _REPEATS and arg[0] >= 1:  # type: ignore[index,operator]
            runs.extend(_literal_runs(arg[2]))  # type: ignore[index]
        elif getattr(sre_constants, "ATOMIC_GROUP", None) is op:
            runs.extend(_literal_runs(arg))  # type: ignore[arg-type]
    flush()
    return runs


def required_literal(pattern: str) -> str | None:
    """The longest literal every match of `pattern` contains, if one has 3+ characters."""
    try:
        parsed = sre_parse.parse(pattern)
    except re.error:
        return None
    runs = [r for r in _literal_runs(parsed) if len(r) >= MIN_LITERAL_CHARS]
    return max(runs, key=len) if runs else None


def compile_pattern(pattern: str, *, ignore_case: bool) -> tuple[re.Pattern[str], str]:
    """Validate and compile a grep pattern; returns it with its required literal (casefolded)."""
    if not pattern:
        raise InvalidArgumentError("The grep pattern is empty.", hint="Pass a regex such as 'cp\\.async' or 'tcgen05'.")
    if "\x00" in pattern:
        raise InvalidArgumentError("The grep pattern contains a NUL byte.", hint="Remove it and try again.")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise InvalidArgumentError(
            f"The grep pattern is {len(pattern)} characters; the limit is {MAX_PATTERN_CHARS}.",
            hint="Grep for the most distinctive part only, or use search_wiki for concepts.",
        )
    try:
        regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise InvalidArgumentError(
            f"Invalid regex {pattern!r}: {exc}.",
            hint="Escape special characters such as . ( [ + with a backslash, e.g. 'cp\\.async'.",
        ) from exc
    literal = required_literal(pattern)
    if literal is None:
        raise InvalidArgumentError(
            f"The grep pattern {pattern!r} has no literal run of {MIN_LITERAL_CHARS}+ characters that every match "
            "must contain, so it would scan every line of every page.",
            hint="Include a fixed word such as 'tcgen05' or 'cp\\.async'; for 'a|b' run one grep per alternative "
            "or put the shared text outside the group ('bank_(conflict|swizzle)'); for concepts use search_wiki.",
        )
    return regex, literal.casefold()


def scan(
    pages: Iterable[Page],
    regex: re.Pattern[str],
    literal: str,
    *,
    max_matches: int,
    folded: Callable[[Page], str],
    time_budget_s: float = TIME_BUDGET_S,
) -> tuple[list[Match], bool]:
    """Matching lines, in page order; also whether the scan stopped before the end.

    `folded(page)` gives the page's casefolded text (cached by the caller) for the page-level
    prefilter: casefolded containment is implied by any match, with or without ignore-case.
    """
    found: list[Match] = []
    deadline = time.monotonic() + time_budget_s
    for page in pages:
        if literal not in folded(page):
            continue
        for line_no, line in enumerate(page.text.split("\n"), start=1):
            if literal not in line.casefold():
                continue
            match = regex.search(line)
            if match is None:
                continue
            if len(found) >= max_matches:
                return found, True
            found.append(Match(page, line_no, clip_line(line.rstrip("\r"), match.start())))
        if time.monotonic() > deadline:
            return found, True
    return found, False


def clip_line(line: str, at: int) -> str:
    """A line shortened to at most MAX_LINE_CHARS (ellipses included) around the match position."""
    lead = len(line) - len(line.lstrip())
    line = line.strip()
    if len(line) <= MAX_LINE_CHARS:
        return line
    width = MAX_LINE_CHARS - 2  # room for the two ellipses
    start = max(0, min(at - lead - 100, len(line) - width))
    clipped = line[start : start + width]
    return ("…" if start > 0 else "") + clipped + ("…" if start + width < len(line) else "")
