"""Short plain-text excerpts of a page around the words a query matched.

Markdown is flattened to one line of text, the window with the most distinct query words is
chosen, and matches in it are marked with ** **. Matching here is by regex on surface forms
(plus prefixes for stemmed words), which is cheap enough to run on the hits of every query.
"""

from __future__ import annotations

import itertools
import os
import re

from kda_mcp.wiki_index.analyzer import normalize_word

MAX_SNIPPET_CHARS = 240
_WINDOW = 190  # text chars in a snippet; the rest of the budget goes to marks and ellipses
_MAX_MARKS = 8
_LEAD = 40  # context kept before the first match of the chosen window

_FENCE_LINE = re.compile(r"^[ \t]*(```|~~~).*$", re.MULTILINE)
_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t:|-]+\|[ \t:|-]*$", re.MULTILINE)
_HEADING_MARK = re.compile(r"^[ \t]*#{1,6}[ \t]+", re.MULTILINE)
_QUOTE_MARK = re.compile(r"^[ \t]*>[ \t]?", re.MULTILINE)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"\*\*|`")
_SPACE = re.compile(r"\s+")


def plain_text(markdown: str) -> str:
    """Markdown flattened to single-spaced text (fences, rules, marks and link targets removed)."""
    text = _FENCE_LINE.sub(" ", markdown)
    text = _TABLE_RULE.sub(" ", text)
    text = _HEADING_MARK.sub("", text)
    text = _QUOTE_MARK.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _EMPHASIS.sub("", text)
    text = text.replace("|", " ")
    return _SPACE.sub(" ", text).strip()


def highlight_pattern(words: list[str]) -> re.Pattern[str] | None:
    """A regex for the query's words: identifiers exactly, plain words by their stem as a prefix."""
    alternatives: list[str] = []
    for word in sorted(set(words), key=len, reverse=True):
        if not word:
            continue
        if word.isascii() and word.isalpha():
            # Stems may change letters (memory -> memori): match on what word and stem share.
            root = os.path.commonprefix([word, normalize_word(word)])
            alternatives.append(re.escape(root if len(root) >= 3 else word) + r"\w*")
        else:
            alternatives.append(re.escape(word) + r"(?!\w)")
    if not alternatives:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + ")", re.IGNORECASE)


def make_snippet(text: str, pattern: re.Pattern[str] | None) -> str:
    """The best window of `text` (already plain) around matches of `pattern`, at most 240 chars.

    Best = the most distinct query words (identifiers count double: they are what the agent
    asked about), then the most matches.
    """
    matches = list(itertools.islice(pattern.finditer(text), 2000)) if pattern is not None else []
    if not matches:
        return _clip(text, 0)
    keys = [normalize_word(m.group().lower()) for m in matches]
    best_start, best_score = 0, (-1, -1)
    for i, first in enumerate(matches):
        distinct: set[str] = set()
        count = 0
        for later, key in zip(matches[i:], keys[i:]):
            if later.end() - first.start() > _WINDOW - _LEAD:
                break
            distinct.add(key)
            count += 1
        weight = sum(1 if key.isalpha() else 2 for key in distinct)
        score = (weight, count)
        if score > best_score:
            best_start, best_score = first.start(), score
    return _clip(text, max(0, best_start - _LEAD), pattern)


def _clip(text: str, start: int, pattern: re.Pattern[str] | None = None) -> str:
    """`_WINDOW` chars of `text` from about `start`, cut at word boundaries, matches marked."""
    if start > 0:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < start + 20 else start
    end = min(len(text), start + _WINDOW)
    if end < len(text):
        space = text.rfind(" ", start, end)
        end = space if space > start + _WINDOW // 2 else end
    window = text[start:end]
    if pattern is not None:
        window = _mark(window, pattern)
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(text) else ""
    return (prefix + window + suffix)[:MAX_SNIPPET_CHARS]


def _mark(window: str, pattern: re.Pattern[str]) -> str:
    pieces: list[str] = []
    last = 0
    for n, match in enumerate(pattern.finditer(window)):
        if n >= _MAX_MARKS:
            break
        pieces.append(window[last : match.start()])
        pieces.append(f"**{match.group()}**")
        last = match.end()
    pieces.append(window[last:])
    return "".join(pieces)
