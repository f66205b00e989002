"""The on-disk form of one index build: the whoosh index plus the parsed pages.

The pages are saved as JSON next to the whoosh files so a warm open skips YAML parsing, and the
whole folder is loaded into memory on open: queries never hit the disk, and a later cleanup by
another process cannot pull files out from under this one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index
from whoosh.fields import ID, KEYWORD, TEXT, Schema
from whoosh.filedb.filestore import RamStorage
from whoosh.index import Index

from kda_mcp.wiki_index.analyzer import ANALYZER_VERSION, KernelAnalyzer
from kda_mcp.wiki_index.pages import Heading, Page

SCHEMA_VERSION = "1"
INDEX_NAME = "wiki"
PAGES_FILE = "pages.json"
INFO_FILE = "build.json"

# The text fields searched, with the weight a match in each earns (title highest).
FIELD_BOOSTS: dict[str, float] = {"title": 5.0, "keywords": 3.0, "headings": 2.0, "body": 1.0}


def cache_version() -> str:
    """Changes whenever an old build can no longer be reused."""
    return f"schema={SCHEMA_VERSION};analyzer={ANALYZER_VERSION}"


def make_schema() -> Schema:
    analyzer = KernelAnalyzer()
    return Schema(
        key=ID(stored=True, unique=True),
        root=ID,
        type=ID,
        tag=KEYWORD(commas=True, lowercase=True),
        title=TEXT(analyzer=analyzer),
        keywords=TEXT(analyzer=analyzer),
        headings=TEXT(analyzer=analyzer),
        # The body is not stored: read() and snippets use the in-memory pages.
        body=TEXT(analyzer=analyzer),
    )


def document(page: Page) -> dict[str, str]:
    """The fields indexed for one page."""
    keywords = [page.id, *page.tags, *page.aliases, *page.symptoms]
    return {
        "key": page.key,
        "root": page.root,
        "type": page.type,
        "tag": ",".join(t.replace(",", " ") for t in page.tags),
        "title": page.title,
        "keywords": "\n".join(keywords),
        "headings": "\n".join(page.headings),
        "body": page.body,
    }


def build(folder: Path, pages: list[Page], *, warnings: Sequence[str] = ()) -> float:
    """Index `pages` into the empty `folder` and save them alongside; returns seconds taken.

    `warnings` (pages skipped or degraded while parsing) are saved with the build so a warm
    open can still report them.
    """
    started = time.perf_counter()
    ix = whoosh_index.create_in(str(folder), make_schema(), indexname=INDEX_NAME)
    # One process: on 2 cores whoosh's multi-process writer measured slower (8 s vs 12 s for
    # the KernelWiki snapshot) because merging its segments costs more than it saves.
    writer = ix.writer(limitmb=128)
    for page in pages:
        writer.add_document(**document(page))
    writer.commit()
    ix.close()
    (folder / PAGES_FILE).write_text(json.dumps([asdict(p) for p in pages]), encoding="utf-8")
    seconds = time.perf_counter() - started
    info = {
        "pages": len(pages),
        "build_seconds": seconds,
        "built_at": time.time(),
        "version": cache_version(),
        "warnings": list(warnings),
    }
    (folder / INFO_FILE).write_text(json.dumps(info), encoding="utf-8")
    return seconds


def load(folder: Path) -> tuple[Index, list[Page], dict[str, Any]]:
    """Load a published build into memory: the whoosh index, the pages and the build info."""
    storage = RamStorage()
    for entry in folder.iterdir():
        if entry.is_file() and entry.name not in (PAGES_FILE, INFO_FILE):
            storage.files[entry.name] = entry.read_bytes()
    ix = storage.open_index(INDEX_NAME)
    raw_pages = json.loads((folder / PAGES_FILE).read_text(encoding="utf-8"))
    pages = [_page_from_dict(item) for item in raw_pages]
    info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    return ix, pages, info


def _page_from_dict(item: dict[str, Any]) -> Page:
    sections = [Heading(**h) for h in item.pop("sections")]
    return Page(**item, sections=sections)
