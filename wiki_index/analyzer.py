"""Text analysis that keeps GPU-kernel vocabulary whole.

Generic analyzers cut `cp.async` into `cp` and `async`, and stem `sm_90a` or `float4` into
mush. Here a token is a run of word characters joined by `.` or `-` (underscores are word
characters), so `cp.async`, `sm_90a`, `split-k`, `tcgen05.mma`, `wgmma.mma_async`,
`__shfl_xor_sync`, `float4`, `fp8` and `e4m3` each stay one token. At index time such a
compound token is emitted whole *and* as its parts (`split-k` -> `split`, `k`; `tcgen05.mma`
-> `tcgen05`, `mma`; camelCase is split too), so a query for the parts still finds it.

Positions: the parts of a compound take consecutive positions and the whole token (and its
dotted prefixes, `cp.async` for `cp.async.bulk`) shares the first part's position. A phrase
query is therefore matched on parts: "split k gemm" and "split-k gemm" both match
`split-k GEMM`. Stop words are dropped without taking a position, as whoosh's own stop filter
does, so a phrase across a stop word still matches.

Only plain alphabetic words are stemmed; identifiers (digits, underscores, dots, dashes,
camelCase) are kept as written, lowercased.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from whoosh.analysis import Token, Tokenizer
from whoosh.lang.porter2 import stem as porter_stem

# Bump whenever the tokens produced for some text change: it is part of the index cache key.
ANALYZER_VERSION = "2"

STOP_WORDS = frozenset(
    """a an and are as at be but by can did do does for from had has have if in into is it its
    may not of on or so such than that the their then there these they this those to us was
    we were what when where which while who will with yet you your""".split()
)

MAX_TOKEN_CHARS = 64  # longer runs are hashes, base64 or minified code: noise

_WORD = re.compile(r"\w+(?:[.\-]\w+)*")
_SEGMENT = re.compile(r"[^._\-]+")
_CAMEL_TURN = re.compile(r"[a-z][A-Z]")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


@dataclass(frozen=True, slots=True)
class Surface:
    """One token as written in the text, lowercased, with the parts it is also indexed under."""

    whole: str
    parts: tuple[str, ...]  # lowercased, stop words removed; empty for a simple word
    start: int
    end: int
    part_spans: tuple[tuple[int, int], ...]

    @property
    def is_compound(self) -> bool:
        return bool(self.parts)


@lru_cache(maxsize=100_000)
def normalize_word(word: str) -> str:
    """The index form of a lowercased word: plain ASCII words are stemmed, identifiers are not."""
    if len(word) > 3 and word.isascii() and word.isalpha():
        return porter_stem(word)
    return word


def _split_parts(surface: str, offset: int) -> list[tuple[str, int, int]]:
    """Split a token at `.`, `-`, `_` and camelCase boundaries, with character spans."""
    parts: list[tuple[str, int, int]] = []
    for seg in _SEGMENT.finditer(surface):
        text = seg.group()
        if _CAMEL_TURN.search(text):  # cudaMemcpyAsync, cuBLAS; not Hopper or Tcgen05
            for piece in _CAMEL.finditer(text):
                parts.append((piece.group().lower(), offset + seg.start() + piece.start(), offset + seg.start() + piece.end()))
        else:
            parts.append((text.lower(), offset + seg.start(), offset + seg.end()))
    return parts


def surfaces(text: str) -> Iterator[Surface]:
    """The tokens of `text` in order, stop words and overlong runs left out."""
    for match in _WORD.finditer(text):
        raw = match.group()
        if len(raw) > MAX_TOKEN_CHARS:
            continue
        whole = raw.lower()
        split = _split_parts(raw, match.start())
        if len(split) == 1 and split[0][0] == whole:
            if whole in STOP_WORDS:
                continue
            yield Surface(whole, (), match.start(), match.end(), ())
            continue
        kept = [p for p in split if p[0] not in STOP_WORDS]
        yield Surface(
            whole,
            tuple(p[0] for p in kept),
            match.start(),
            match.end(),
            tuple((p[1], p[2]) for p in kept),
        )


def dotted_prefixes(whole: str) -> list[str]:
    """`cp.async.bulk.tensor` -> [`cp.async`, `cp.async.bulk`]: PTX names are searched by prefix."""
    if "." not in whole:
        return []
    segments = whole.split(".")
    if any(not s for s in segments):
        return []
    return [".".join(segments[:k]) for k in range(2, len(segments))]


def index_terms(text: str) -> Iterator[tuple[str, int, int, int]]:
    """(term, position, startchar, endchar) for every term indexed from `text`."""
    pos = 0
    for s in surfaces(text):
        if not s.is_compound:
            yield normalize_word(s.whole), pos, s.start, s.end
            pos += 1
            continue
        yield s.whole, pos, s.start, s.end
        for prefix in dotted_prefixes(s.whole):
            yield prefix, pos, s.start, s.start + len(prefix)
        for i, (part, (start, end)) in enumerate(zip(s.parts, s.part_spans)):
            yield normalize_word(part), pos + i, start, end
        pos += max(1, len(s.parts))


def query_groups(text: str) -> list[list[str]]:
    """For each token of a query, the terms that may match it: the whole token, then its parts."""
    groups: list[list[str]] = []
    for s in surfaces(text):
        terms = [normalize_word(s.whole)] if not s.is_compound else [s.whole]
        for part in s.parts:
            term = normalize_word(part)
            if term not in terms:
                terms.append(term)
        groups.append(terms)
    return groups


def phrase_terms(text: str) -> list[str]:
    """The terms of a phrase, in position order: compounds contribute their parts."""
    terms: list[str] = []
    for s in surfaces(text):
        if s.is_compound and s.parts:
            terms.extend(normalize_word(p) for p in s.parts)
        else:
            terms.append(normalize_word(s.whole))
    return terms


class KernelAnalyzer(Tokenizer):
    """The whoosh analyzer used for every text field of the wiki index."""

    def __call__(  # type: ignore[override]
        self,
        value: str,
        positions: bool = False,
        chars: bool = False,
        keeporiginal: bool = False,
        removestops: bool = True,
        start_pos: int = 0,
        start_char: int = 0,
        tokenize: bool = True,
        mode: str = "",
        **kwargs: Any,
    ) -> Iterator[Token]:
        # whoosh's convention: one Token object, mutated and yielded for every term.
        token = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        for term, pos, start, end in index_terms(value):
            token.text = term
            token.boost = 1.0
            token.stopped = False
            if keeporiginal:
                token.original = value[start:end]
            if positions:
                token.pos = start_pos + pos
            if chars:
                token.startchar = start_char + start
                token.endchar = start_char + end
            yield token


def analyze(text: str) -> list[str]:
    """The index terms of `text`, for tests and debugging."""
    return [term for term, _, _, _ in index_terms(text)]
