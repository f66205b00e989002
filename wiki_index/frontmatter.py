"""Split a markdown page into its YAML front matter and its body.

A page may start with a `---` line, YAML, and a closing `---` (or `...`) line. Anything that
goes wrong here degrades to "no metadata" plus a warning: one bad page must never stop the
whole wiki from being indexed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

# libyaml is an order of magnitude faster than the pure-Python loader; both are safe loaders.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_OPENING = re.compile(r"\A\ufeff?---[ \t]*\r?\n")
_CLOSING = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$", re.MULTILINE)


@dataclass
class FrontMatter:
    """The parsed metadata of one page and where its body starts in the text."""

    meta: dict[str, Any] = field(default_factory=dict)
    body_start: int = 0
    warnings: list[str] = field(default_factory=list)


def split_front_matter(text: str) -> FrontMatter:
    """Parse the front matter at the top of `text`, if any.

    `body_start` is the offset of the first character after the closing delimiter line, so
    `text[body_start:]` is the body and the front matter lines keep their line numbers.
    """
    opening = _OPENING.match(text)
    if opening is None:
        return FrontMatter()
    closing = _CLOSING.search(text, opening.end())
    if closing is None:
        return FrontMatter(warnings=["front matter has no closing '---' line; treated as body"])
    body_start = closing.end()
    if text.startswith("\r\n", body_start):
        body_start += 2
    elif text.startswith("\n", body_start):
        body_start += 1
    raw = text[opening.end() : closing.start()]
    try:
        meta = yaml.load(raw, Loader=_LOADER)
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return FrontMatter(
            meta=_simple_pairs(raw),
            body_start=body_start,
            warnings=[f"malformed YAML front matter ({first_line}); only plain 'key: value' lines were used"],
        )
    if meta is None:
        return FrontMatter(body_start=body_start)
    if not isinstance(meta, dict):
        return FrontMatter(
            body_start=body_start,
            warnings=[f"front matter is a {type(meta).__name__}, not a mapping; metadata ignored"],
        )
    return FrontMatter(meta={str(k): v for k, v in meta.items()}, body_start=body_start)


_PAIR = re.compile(r"^([A-Za-z_][\w-]*):[ \t]+([^\[{\s].*?)[ \t]*$", re.MULTILINE)


def _simple_pairs(raw: str) -> dict[str, Any]:
    """Salvage `key: value` scalar lines from YAML that did not parse, so a page keeps its id."""
    pairs: dict[str, Any] = {}
    for match in _PAIR.finditer(raw):
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        pairs.setdefault(match.group(1), value)
    return pairs


def as_list(value: Any) -> list[str]:
    """A front matter list field as a list of strings: a lone string becomes a one-item list.

    Mappings and other nested structures are dropped: they are never tags or ids.
    """
    if value is None:
        return []
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value).strip()
        return [text] if text else []
    if isinstance(value, (list, tuple)):
        items: list[str] = []
        for item in value:
            if isinstance(item, (str, int, float)) and not isinstance(item, bool):
                text = str(item).strip()
                if text:
                    items.append(text)
        return items
    return []


def as_text(value: Any) -> str | None:
    """A scalar front matter field (id, title, type) as a string, or None when absent or not scalar."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value).strip()
        return text or None
    return None
