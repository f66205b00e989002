"""Regex search over page text, kept cheap by a required literal and bounded by a time limit.

A pattern is only accepted if it contains a literal run of at least 3 characters that every
match must contain (found by walking the parsed regex). Pages and lines that do not contain
that literal are skipped with a plain substring test, so the regex itself only ever runs on the
few lines that could match.

The regex runs on the `regex` engine, not `re`: `re` holds the GIL for as long as a pattern
backtracks, so one catastrophic pattern (`(.*.*)*=.*shared.*X{5}`) froze the whole server,
/health included. `regex` takes a timeout and, with `concurrent=True`, releases the GIL while it
matches, so other threads and the event loop keep running; every search gets at most
PER_SEARCH_S, and a whole grep at most TIME_BUDGET_S.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import regex as _regex

try:  # Python 3.11+
    from re import _constants as sre_constants
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover - older interpreters
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

from kda_mcp.tools.errors import InvalidArgumentError
from kda_mcp.wiki_index.pages import Page

MAX_PATTERN_CHARS = 300
# The regex engine unrolls counted repeats when it compiles, holding the GIL: x{999}{999} takes
# seconds before any time limit applies. Refuse patterns whose nested counts multiply past this.
MAX_UNROLLED = 10_000
MAX_LINE_CHARS = 300
MIN_LITERAL_CHARS = 3
TIME_BUDGET_S = 3.0  # one grep call, all pages together
# One line; a sane pattern takes microseconds. `regex` counts its timeout in the process's CPU time,
# so concurrent searches end sooner in wall time (two at once: 0.5 s each), never later unless other
# processes starve this one of CPU; the GIL is released meanwhile either way.
PER_SEARCH_S = 1.0

_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT}
if hasattr(sre_constants, "POSSESSIVE_REPEAT"):
    _REPEATS.add(sre_constants.POSSESSIVE_REPEAT)

SLOW_PATTERN_HINT = (
    "Simplify the pattern: avoid nested or adjacent repeats such as (.*.*)*, (a+)+ or (\\w|\\w\\w)*, "
    "replace '.*' between words by a narrower class like '[^=]*', or grep for the distinctive literal alone "
    "(e.g. 'shared') and narrow with type, tag or root."
)


class GrepTimeoutError(InvalidArgumentError):
    """The regex ran past its time limit: it backtracks catastrophically on some line."""


@dataclass
class Match:
    page: Page
    line_no: int
    line: str


@dataclass
class ScanOutcome:
    matches: list[Match]
    truncated: bool  # stopped before the end: max_matches reached, or out of time
    timed_out: bool = False  # the regex itself ran past its limit on some line
    note: str | None = None  # for the caller to show when timed_out or out of time


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


def _unrolled_size(items: Iterable[tuple[object, object]]) -> int:
    """How many items compiling would unroll: counted repeats multiply what they repeat."""
    total = 0
    for op, arg in items:
        if op in _REPEATS:
            low, high, sub = arg  # type: ignore[misc]
            count = low if high == sre_constants.MAXREPEAT else high
            total += max(int(count), 1) * _unrolled_size(sub)  # type: ignore[arg-type]
        elif op is sre_constants.SUBPATTERN:
            total += _unrolled_size(arg[-1])  # type: ignore[index]
        elif op is sre_constants.BRANCH:
            total += sum(_unrolled_size(branch) for branch in arg[1])  # type: ignore[index,union-attr]
        elif getattr(sre_constants, "ATOMIC_GROUP", None) is op or op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            total += _unrolled_size(arg if getattr(sre_constants, "ATOMIC_GROUP", None) is op else arg[1])  # type: ignore[index,arg-type]
        else:
            total += 1
        if total > MAX_UNROLLED:
            return total  # enough to refuse; stop before the product overflows anything
    return total


def required_literal(pattern: str) -> str | None:
    """The longest literal every match of `pattern` contains, if one has 3+ characters."""
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return None
    runs = [r for r in _literal_runs(parsed) if len(r) >= MIN_LITERAL_CHARS]
    return max(runs, key=len) if runs else None


def compile_pattern(pattern: str, *, ignore_case: bool) -> tuple[_regex.Pattern[str], str]:
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
    hint = "Escape special characters such as . ( [ + with a backslash, e.g. 'cp\\.async'."
    # The literal is read from Python's own parse, so the pattern must be valid Python syntax; the
    # `regex` engine (VERSION0, re-compatible) then runs it.
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise InvalidArgumentError(f"Invalid regex {pattern!r}: {exc}.", hint=hint) from exc
    if _unrolled_size(sre_parse.parse(pattern)) > MAX_UNROLLED:
        raise InvalidArgumentError(
            f"The grep pattern {pattern!r} nests counted repeats that multiply past {MAX_UNROLLED:,} items.",
            hint="Use smaller counts ({3} rather than {999}) or '+' / '*'; grep matches within one line anyway.",
        )
    try:
        compiled = _regex.compile(pattern, _regex.VERSION0 | (_regex.IGNORECASE if ignore_case else 0))
    except (_regex.error, RecursionError, OverflowError, ValueError) as exc:
        raise InvalidArgumentError(f"Invalid regex {pattern!r}: {exc}.", hint=hint) from exc
    literal = required_literal(pattern)
    if literal is None:
        raise InvalidArgumentError(
            f"The grep pattern {pattern!r} has no literal run of {MIN_LITERAL_CHARS}+ characters that every match "
            "must contain, so it would scan every line of every page.",
            hint="Include a fixed word such as 'tcgen05' or 'cp\\.async'; for 'a|b' run one grep per alternative "
            "or put the shared text outside the group ('bank_(conflict|swizzle)'); for concepts use search_wiki.",
        )
    return compiled, literal.casefold()


def scan_pages(
    pages: Iterable[Page],
    regex: _regex.Pattern[str],
    literal: str,
    *,
    max_matches: int,
    folded: Callable[[Page], str],
    time_budget_s: float = TIME_BUDGET_S,
    per_search_s: float = PER_SEARCH_S,
) -> ScanOutcome:
    """Matching lines, in page order, never running past `time_budget_s` in all.

    `folded(page)` gives the page's casefolded text (cached by the caller) for the page-level
    prefilter: casefolded containment is implied by any match, with or without ignore-case.
    Each regex search runs with the GIL released and a timeout; one that times out ends the scan
    with `timed_out` set and a note naming the line, keeping what was found before it.
    """
    found: list[Match] = []
    start = time.monotonic()
    deadline = start + time_budget_s
    for page in pages:
        if literal not in folded(page):
            continue
        for line_no, line in enumerate(page.text.split("\n"), start=1):
            if literal not in line.casefold():
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ScanOutcome(found, True, note=_budget_note(time_budget_s, found))
            try:
                match = regex.search(line, timeout=min(per_search_s, remaining), concurrent=True)
            except TimeoutError:
                elapsed = time.monotonic() - start
                return ScanOutcome(found, True, timed_out=True, note=_timeout_note(regex.pattern, page, line_no, elapsed, found))
            if match is None:
                continue
            if len(found) >= max_matches:
                return ScanOutcome(found, True)
            found.append(Match(page, line_no, clip_line(line.rstrip("\r"), match.start())))
        if time.monotonic() > deadline:
            return ScanOutcome(found, True, note=_budget_note(time_budget_s, found))
    return ScanOutcome(found, False)


def _found_so_far(found: list[Match]) -> str:
    if not found:
        return "no matching line was found before it"
    shown = ", ".join(f"{m.page.path}:{m.line_no}" for m in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return f"{len(found)} matching line(s) were found before it ({shown}{more})"


def _timeout_note(pattern: str, page: Page, line_no: int, elapsed: float, found: list[Match]) -> str:
    return (
        f"The grep pattern {pattern!r} ran past its time limit on {page.path}:{line_no} and the search was stopped "
        f"after {elapsed:.1f} s: it backtracks catastrophically; {_found_so_far(found)}. {SLOW_PATTERN_HINT}"
    )


def _budget_note(budget: float, found: list[Match]) -> str:
    return f"The grep stopped after its {budget:.0f} s budget before reading every page; {_found_so_far(found)}."


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
