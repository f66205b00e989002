"""Turn a user's query string into a whoosh query.

The syntax is deliberately small: plain words and "quoted phrases". Nothing else is special,
so no input can raise a query syntax error; an unclosed quote just runs to the end. Each word
or phrase may match in any field (weighted by the field's boost); everything is OR-ed, so
pages matching more of the words score higher.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from whoosh import query as wq

from kda_mcp.wiki_index.analyzer import phrase_terms, query_groups, surfaces
from kda_mcp.wiki_index.store import FIELD_BOOSTS

MAX_QUERY_CHARS = 500
MAX_CLAUSES = 24
PART_WEIGHT = 0.3  # a pasted paragraph must not turn into a thousand-term query
_PIECES = re.compile(r'"([^"]*)"?|([^\s"]+)')
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class ParsedQuery:
    words: list[list[str]] = field(default_factory=list)  # per query word: whole term, then parts
    phrases: list[list[str]] = field(default_factory=list)  # per phrase: terms in order
    highlights: list[str] = field(default_factory=list)  # lowercased surface forms to mark in snippets

    @property
    def empty(self) -> bool:
        return not self.words and not self.phrases


def parse_query(text: str) -> ParsedQuery:
    """Split a query into word and phrase clauses (stop words dropped)."""
    text = _CONTROL.sub(" ", text)[:MAX_QUERY_CHARS]
    parsed = ParsedQuery()
    seen: set[tuple[str, ...]] = set()
    for match in _PIECES.finditer(text):
        phrase, word = match.group(1), match.group(2)
        chunk = phrase if phrase is not None else word
        for s in surfaces(chunk):
            parsed.highlights.append(s.whole)
            parsed.highlights.extend(p for p in s.parts if len(p) >= 3)
        if phrase is not None:
            terms = phrase_terms(phrase)
            if len(terms) >= 2:
                if tuple(terms) not in seen:
                    seen.add(tuple(terms))
                    parsed.phrases.append(terms)
                continue
        # A word (or a one-word phrase) may still hold several tokens, e.g. "memory/compute".
        for group in query_groups(chunk):
            if tuple(group) not in seen:
                seen.add(tuple(group))
                parsed.words.append(group)
    parsed.highlights = list(dict.fromkeys(h for h in parsed.highlights if h))
    return parsed


def to_whoosh(parsed: ParsedQuery) -> wq.Query | None:
    """The whoosh query for a parsed query, or None when it has no searchable terms.

    One flat Or of every (field, term) and (field, phrase): scores add up exactly as nested
    per-word Ors would, but whoosh unions a flat list in one pass, which halves query time.
    There is no coordination bonus (Or's `scale`): BM25's sum already favours pages matching
    more words, the expert queries in the tests ranked the same without it, and it is slow.
    """
    subqueries: list[wq.Query] = []
    seen: set[tuple[str, str]] = set()
    for group in parsed.words[:MAX_CLAUSES]:
        for position, term in enumerate(group):
            # The whole token is what was asked for; its parts (`sm` of `sm_90a`) only add recall.
            weight = 1.0 if position == 0 else PART_WEIGHT
            for name, boost in FIELD_BOOSTS.items():
                if (name, term) not in seen:
                    seen.add((name, term))
                    subqueries.append(wq.Term(name, term, boost=boost * weight))
    for terms in parsed.phrases[:MAX_CLAUSES]:
        subqueries.extend(wq.Phrase(name, terms, boost=boost) for name, boost in FIELD_BOOSTS.items())
    if not subqueries:
        return None
    return subqueries[0] if len(subqueries) == 1 else wq.Or(subqueries)
