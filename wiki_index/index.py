"""WikiIndex: open (building if needed) the index of some wiki roots, then search, read, grep, route.

Opening hashes every page file; if a build for that content exists in the cache folder it is
loaded into memory, otherwise one is built first. After open, nothing touches the disk.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from whoosh import query as wq
from whoosh.index import Index
from whoosh.searching import Searcher
from whoosh.scoring import BM25F

from kda_mcp.tools.errors import InvalidArgumentError, not_found
import kda_mcp.wiki_index.cache as cache
import kda_mcp.wiki_index.store as store
from kda_mcp.wiki_index.grep import GrepTimeoutError, compile_pattern, scan_pages
from kda_mcp.wiki_index.models import (
    WikiCount,
    WikiGrepMatch,
    WikiGrepResult,
    WikiHit,
    WikiPageInfo,
    WikiPageText,
    WikiRootStatus,
    WikiSearchResult,
    WikiStatus,
)
from kda_mcp.wiki_index.pages import Heading, Page, WikiRoot, discover, parse_page
from kda_mcp.wiki_index.query import parse_query, to_whoosh
from kda_mcp.wiki_index.refs import PageTable
from kda_mcp.wiki_index.snippets import highlight_pattern, make_snippet, plain_text

log = logging.getLogger(__name__)

BUNDLED_PAGES = Path(__file__).resolve().parent / "pages"
MAX_SEARCH_LIMIT = 50
MAX_READ_CHARS = 20_000
MAX_GREP_MATCHES = 200
MAX_STATUS_WARNINGS = 50


def default_roots(extra: str | None = None) -> list[WikiRoot]:
    """The bundled pages first, then each folder in `extra` (os.pathsep-separated).

    `extra=None` reads $KDA_WIKI_PATHS at call time (not import time, so a server configured
    after import still sees it); pass "" for the bundled pages alone. Roots are named by folder
    name, made unique with a numeric suffix. Folders that do not exist are still returned:
    WikiIndex.open skips them with a warning and reports them in status().
    """
    if extra is None:
        extra = os.environ.get("KDA_WIKI_PATHS", "")
    roots = [WikiRoot("bundled", BUNDLED_PAGES)]
    names = {"bundled"}
    for entry in (extra or "").split(os.pathsep):
        entry = entry.strip()
        if not entry:
            continue
        path = Path(entry).expanduser()
        base = re.sub(r"[\\/:\x00]", "-", path.name) or "wiki"
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.add(name)
        roots.append(WikiRoot(name, path))
    return roots


def _parse_all(root_files: list[tuple[WikiRoot, list[tuple[str, bytes]]]]) -> tuple[list[Page], list[str]]:
    """Parse every file; a duplicate id within one root falls back to the page's path."""
    pages: list[Page] = []
    warnings: list[str] = []
    for root, files in root_files:
        seen: dict[str, str] = {}
        for rel_path, data in files:
            page, page_warnings = parse_page(root.name, rel_path, data)
            warnings.extend(page_warnings)
            if page.id in seen:
                fallback = rel_path.removesuffix(".md")
                warnings.append(f"{root.name}/{rel_path}: id {page.id!r} already used by {root.name}/{seen[page.id]}; using id {fallback!r}")
                page.id = fallback
            seen[page.id] = rel_path
            pages.append(page)
    return pages, warnings


class WikiIndex:
    """A searchable, readable set of wiki pages from one or more roots."""

    def __init__(self, table: PageTable, searcher: Searcher, status: WikiStatus) -> None:
        self._table = table
        self._searcher = searcher
        self._status = status
        self._lock = threading.Lock()  # whoosh searchers share file cursors: one query at a time
        self._plain: dict[str, str] = {}
        self._folded: dict[str, str] = {}

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, roots: list[WikiRoot], cache_dir: Path | None = None) -> WikiIndex:
        """Index `roots`, reusing the cached build for the same content when there is one."""
        started = time.perf_counter()
        _check_root_names(roots)
        cache_dir = Path(cache_dir) if cache_dir is not None else cache.default_cache_dir()
        warnings: list[str] = []
        root_files: list[tuple[WikiRoot, list[tuple[str, bytes]]]] = []
        root_notes: dict[str, str] = {}
        for root in roots:
            if not root.path.is_dir():
                message = f"wiki root {root.name!r} at {root.path} does not exist or is not a folder; skipped"
                log.warning(message)
                warnings.append(message)
                root_notes[root.name] = "missing"
                continue
            files, found_warnings = discover(root)
            warnings.extend(found_warnings)
            root_files.append((root, files))

        key = cache.content_key([(r.name, files) for r, files in root_files], store.cache_version())
        scratch: Path | None = None
        try:
            folder, built_now, loaded = cls._load_or_build(cache_dir, key, root_files)
        except OSError as exc:
            # An unwritable cache must not take the wiki down: build in a throwaway folder.
            log.warning("wiki cache %s unusable (%s); building in a temporary folder", cache_dir, exc)
            warnings.append(f"cache folder {cache_dir} is unusable ({exc}); index built in memory only")
            scratch = Path(tempfile.mkdtemp(prefix="kda-wiki-"))
            try:
                folder, built_now, loaded = cls._load_or_build(scratch, key, root_files)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        ix, pages, info = loaded
        if scratch is None:
            cache.mark_used(folder)
            cache.clean_up(cache_dir, keep=folder)
        warnings.extend(info.get("warnings", []))

        table = PageTable([r.name for r, _ in root_files], pages)
        counts = Counter(p.root for p in pages)
        status = WikiStatus(
            roots=[
                WikiRootStatus(
                    name=r.name,
                    path=str(r.path),
                    available=r.name not in root_notes,
                    pages=counts.get(r.name, 0),
                    note=root_notes.get(r.name),
                )
                for r in roots
            ],
            pages=len(pages),
            warnings=warnings[:MAX_STATUS_WARNINGS],
            warning_count=len(warnings),
            cache_path=str(folder if scratch is None else "(memory)"),
            index_key=key,
            built_now=built_now,
            build_seconds=round(float(info.get("build_seconds", 0.0)), 3),
            open_seconds=round(time.perf_counter() - started, 3),
        )
        searcher = ix.searcher(weighting=BM25F(B=0.75, K1=1.2))
        return cls(table, searcher, status)

    @classmethod
    def _load_or_build(
        cls, cache_dir: Path, key: str, root_files: list[tuple[WikiRoot, list[tuple[str, bytes]]]]
    ) -> tuple[Path, bool, tuple[Index, list[Page], dict[str, Any]]]:
        """Load the build for `key`, building it first if missing; a corrupt build is rebuilt once."""
        folder, built_now = cls._ensure_built(cache_dir, key, root_files)
        try:
            return folder, built_now, store.load(folder)
        except Exception as exc:  # noqa: BLE001 - any damage to a cached build means: rebuild it
            if built_now:
                raise
            log.warning("wiki index cache %s is damaged (%s); rebuilding", folder, exc)
            shutil.rmtree(folder, ignore_errors=True)
            folder, built_now = cls._ensure_built(cache_dir, key, root_files)
            return folder, built_now, store.load(folder)

    @staticmethod
    def _ensure_built(
        cache_dir: Path, key: str, root_files: list[tuple[WikiRoot, list[tuple[str, bytes]]]]
    ) -> tuple[Path, bool]:
        """The folder of the build for `key`, building it under the lock if it is missing."""
        final = cache.index_dir(cache_dir, key)
        if final.is_dir():
            return final, False
        with cache.build_lock(cache_dir):
            if final.is_dir():  # another process built it while we waited
                return final, False
            pages, warnings = _parse_all(root_files)
            temp = cache.new_temp_dir(cache_dir, key)
            try:
                store.build(temp, pages, warnings=warnings)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
            cache.publish(temp, final)
            return final, True

    # ---- listing -------------------------------------------------------------------------

    def status(self) -> WikiStatus:
        return self._status.model_copy(deep=True)

    def types(self) -> list[WikiCount]:
        """Page types with their page counts, most common first."""
        return _counts(p.type for p in self._table.pages)

    def tags(self, root: str | None = None) -> list[WikiCount]:
        """Tags with their page counts, most common first."""
        return _counts(t for p in self._pages_in(root=root) for t in p.tags)

    def symptoms(self) -> list[WikiCount]:
        """Symptom labels that pattern pages declare (what route() understands)."""
        return _counts(s for p in self._table.pages if p.type == "pattern" for s in p.symptoms)

    def get(self, page: str) -> WikiPageInfo:
        """A page's metadata and outline, by id, `root:id` or path."""
        found = self._table.get(page)
        return WikiPageInfo(
            id=found.id,
            title=found.title,
            type=found.type,
            root=found.root,
            path=found.path,
            tags=found.tags,
            aliases=found.aliases,
            symptoms=found.symptoms,
            techniques=found.techniques,
            related=found.related,
            outline=[h.label for h in found.sections],
            total_chars=len(found.body),
        )

    def page(self, page: str) -> Page:
        """The parsed page itself (for callers inside this package and tests)."""
        return self._table.get(page)

    # ---- search --------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        type: str | None = None,
        tag: str | None = None,
        root: str | None = None,
        limit: int = 8,
    ) -> WikiSearchResult:
        """Ranked pages for `query` (words and "quoted phrases"), optionally filtered."""
        if not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise InvalidArgumentError(f"limit must be between 1 and {MAX_SEARCH_LIMIT}, got {limit}.")
        if not query or not query.strip():
            raise InvalidArgumentError(
                "The search query is empty.", hint="Pass a few words, e.g. 'shared memory bank conflicts'."
            )
        filter_query = self._filter_query(type, tag, root)
        parsed = parse_query(query)
        whoosh_query = to_whoosh(parsed)
        if whoosh_query is None:
            return WikiSearchResult(
                query=query, hits=[], total=0, suggestion="The query has only stop words; add a distinctive term."
            )
        with self._lock:
            # optimize=False: no block skipping, so the exact total comes from the same pass.
            results = self._searcher.search(whoosh_query, limit=limit, filter=filter_query, optimize=False)
            found = [(hit["key"], hit.score) for hit in results]
            total = len(results)
        pattern = highlight_pattern(parsed.highlights)
        hits = [self._hit(self._table.by_key[key], score, pattern) for key, score in found]
        suggestion = None if hits else self._no_hits_suggestion(type, tag, root)
        return WikiSearchResult(query=query, hits=hits, total=total, suggestion=suggestion)

    def _filter_query(self, type: str | None, tag: str | None, root: str | None) -> wq.Query | None:
        terms: list[wq.Query] = []
        if type is not None:
            kind = self._check_type(type)
            terms.append(wq.Term("type", kind))
        if tag is not None:
            name = self._check_tag(tag)
            terms.append(wq.Term("tag", name))
        if root is not None:
            self._check_root(root)
            terms.append(wq.Term("root", root))
        if not terms:
            return None
        return terms[0] if len(terms) == 1 else wq.And(terms)

    def _check_type(self, type: str) -> str:
        kind = type.strip().lower()
        known = {p.type for p in self._table.pages}
        if kind not in known:
            raise not_found("page type", type, sorted(known))
        return kind

    def _check_tag(self, tag: str) -> str:
        name = tag.strip().lower()
        known = {t for p in self._table.pages for t in p.tags}
        if name not in known:
            raise not_found("wiki tag", tag, sorted(known), list_tool="search_wiki without a tag")
        return name

    def _check_root(self, root: str) -> None:
        if root not in self._table.root_names:
            raise not_found("wiki root", root, self._table.root_names)

    def _no_hits_suggestion(self, type: str | None, tag: str | None, root: str | None) -> str:
        if not self._table.pages:
            return "The wiki has no pages: no wiki root was found. Check the wiki roots in the server's status."
        parts = ["No page matched. Try fewer or broader words, or grep_wiki for an exact identifier."]
        if type or tag or root:
            parts.append("Drop the type/tag/root filter to search everything.")
        types = ", ".join(f"{c.name} ({c.count})" for c in self.types())
        parts.append(f"Types: {types}.")
        top_tags = ", ".join(c.name for c in self.tags()[:20])
        if top_tags:
            parts.append(f"Common tags: {top_tags}.")
        return " ".join(parts)

    def _hit(self, page: Page, score: float, pattern: re.Pattern[str] | None) -> WikiHit:
        return WikiHit(
            id=page.id,
            title=page.title,
            type=page.type,
            root=page.root,
            path=page.path,
            score=round(float(score), 3),
            tags=page.tags,
            snippet=make_snippet(self._plain_text(page), pattern),
        )

    def _plain_text(self, page: Page) -> str:
        text = self._plain.get(page.key)
        if text is None:
            text = plain_text(page.body)
            self._plain[page.key] = text
        return text

    # ---- read ----------------------------------------------------------------------------

    def read(self, page: str, *, section: str | None = None, offset: int = 0, max_chars: int = 6000) -> WikiPageText:
        """A page's text (or one section's), from `offset`, at most `max_chars` characters."""
        if not 1 <= max_chars <= MAX_READ_CHARS:
            raise InvalidArgumentError(f"max_chars must be between 1 and {MAX_READ_CHARS}, got {max_chars}.")
        if offset < 0:
            raise InvalidArgumentError(f"offset must be 0 or more, got {offset}.")
        found = self._table.get(page)
        outline = [h.label for h in found.sections]
        heading = None
        if section is not None:
            heading = self._find_section(found, section, outline)
            text = found.section_text(heading)
        else:
            text = found.body
        total = len(text)
        if offset > total:
            raise InvalidArgumentError(
                f"offset {offset} is past the end of {found.path} ({total} characters).",
                hint="Start again from offset 0.",
            )
        end = min(total, offset + max_chars)
        if end < total:
            # End on a line break when one is reasonably close, so chunks do not split lines.
            newline = text.rfind("\n", offset, end)
            if newline > offset + max_chars // 2:
                end = newline + 1
        return WikiPageText(
            id=found.id,
            title=found.title,
            type=found.type,
            root=found.root,
            path=found.path,
            tags=found.tags,
            related=found.related,
            outline=outline,
            section=heading.label if heading else None,
            text=text[offset:end],
            offset=offset,
            next_offset=end if end < total else None,
            total_chars=total,
        )

    @staticmethod
    def _find_section(page: Page, section: str, outline: list[str]) -> Heading:
        wanted = section.strip().lstrip("#").strip().lower()
        for heading in page.sections:
            if heading.title.lower() == wanted:
                return heading
        partial = [h for h in page.sections if wanted and wanted in h.title.lower()]
        if len(partial) == 1:
            return partial[0]
        listing = "; ".join(outline) if outline else "(this page has no headings)"
        raise InvalidArgumentError(
            f"{page.path} has no section {section!r}.",
            hint=f"Its outline: {listing}. Pass one heading's text as section, or omit section to read the whole page.",
        )

    # ---- grep ----------------------------------------------------------------------------

    def grep(
        self,
        pattern: str,
        *,
        type: str | None = None,
        tag: str | None = None,
        root: str | None = None,
        max_matches: int = 40,
        ignore_case: bool = True,
    ) -> WikiGrepResult:
        """Lines matching a regex (which must contain a 3+ character literal), in page order."""
        if not 1 <= max_matches <= MAX_GREP_MATCHES:
            raise InvalidArgumentError(f"max_matches must be between 1 and {MAX_GREP_MATCHES}, got {max_matches}.")
        regex, literal = compile_pattern(pattern, ignore_case=ignore_case)
        kind = self._check_type(type) if type is not None else None
        tag_name = self._check_tag(tag) if tag is not None else None
        if root is not None:
            self._check_root(root)
        pages = self._pages_in(kind=kind, tag=tag_name, root=root)
        outcome = scan_pages(pages, regex, literal, max_matches=max_matches, folded=self._folded_text)
        if outcome.timed_out and not outcome.matches:
            raise GrepTimeoutError(outcome.note or "The pattern ran past its time limit.")
        return WikiGrepResult(
            pattern=pattern,
            matches=[WikiGrepMatch(id=m.page.id, path=m.page.path, line_no=m.line_no, line=m.line) for m in outcome.matches],
            truncated=outcome.truncated,
            pages_scanned=len(pages),
            note=outcome.note,
        )

    def _folded_text(self, page: Page) -> str:
        text = self._folded.get(page.key)
        if text is None:
            text = page.text.casefold()
            self._folded[page.key] = text
        return text

    def _pages_in(self, *, kind: str | None = None, tag: str | None = None, root: str | None = None) -> list[Page]:
        return [
            p
            for p in self._table.pages
            if (kind is None or p.type == kind) and (tag is None or tag in p.tags) and (root is None or p.root == root)
        ]

    # ---- route ---------------------------------------------------------------------------

    def route(self, symptom: str, limit: int = 5) -> list[WikiHit]:
        """Pages for a bottleneck label: the pattern pages for it, then the techniques they name.

        A pattern matches when its id or file name is the label, or its symptoms or aliases
        include it. If no pattern does, falls back to a search restricted to patterns and
        techniques.
        """
        if not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise InvalidArgumentError(f"limit must be between 1 and {MAX_SEARCH_LIMIT}, got {limit}.")
        label = _label(symptom)
        if not label:
            raise InvalidArgumentError("The symptom label is empty.", hint="Pass a label such as 'memory-bound'.")
        named: list[Page] = []
        declared: list[Page] = []
        for page in self._table.pages:
            if page.type != "pattern":
                continue
            if label in (_label(page.id), _label(page.slug), f"pattern-{label}"):
                named.append(page)
            elif label in {_label(s) for s in page.symptoms} | {_label(a) for a in page.aliases}:
                declared.append(page)
        patterns = named + declared
        if not patterns:
            return self._route_fallback(symptom, limit)

        hits: list[WikiHit] = [self._summary_hit(p, 1.0 if p in named else 0.9) for p in patterns]
        technique_lists = [
            [t for ref in p.techniques if (t := self._table.resolve_technique(ref, p.root)) is not None] for p in patterns
        ]
        seen = {p.key for p in patterns}
        # Interleave: each pattern's first technique, then each one's second, and so on.
        for rank in range(max((len(t) for t in technique_lists), default=0)):
            for techniques in technique_lists:
                if rank < len(techniques) and techniques[rank].key not in seen:
                    seen.add(techniques[rank].key)
                    hits.append(self._summary_hit(techniques[rank], round(0.8 - 0.05 * rank, 3)))
        return hits[:limit]

    def _route_fallback(self, symptom: str, limit: int) -> list[WikiHit]:
        query = symptom.replace("-", " ").replace("_", " ")
        known = {p.type for p in self._table.pages}
        hits: list[WikiHit] = []
        for kind in ("pattern", "technique"):
            if kind in known:
                hits.extend(self.search(query, type=kind, limit=limit).hits)
        return hits[:limit]

    def _summary_hit(self, page: Page, score: float) -> WikiHit:
        # The symptom section if there is one, else the first section below the title.
        symptom = next((h for h in page.sections if h.title.lower() in ("symptom", "symptoms")), None)
        if symptom is None:
            symptom = next((h for h in page.sections if h.level >= 2), None)
        source = page.section_text(symptom) if symptom is not None else page.body
        lines = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        return WikiHit(
            id=page.id,
            title=page.title,
            type=page.type,
            root=page.root,
            path=page.path,
            score=score,
            tags=page.tags,
            snippet=make_snippet(plain_text("\n".join(lines[:6])), None),
        )


def _check_root_names(roots: list[WikiRoot]) -> None:
    """Root names appear in paths (`<root>/...`) and refs (`<root>:id`), so they must be plain and unique."""
    seen: set[str] = set()
    for root in roots:
        if not root.name or any(c in root.name for c in "/\\:\x00"):
            raise InvalidArgumentError(
                f"Invalid wiki root name {root.name!r}.", hint="Use a plain folder-like name without '/', '\\' or ':'."
            )
        if root.name in seen:
            raise InvalidArgumentError(
                f"Two wiki roots are both named {root.name!r}.", hint="Give each root a distinct name (default_roots does this)."
            )
        seen.add(root.name)


def _label(text: str) -> str:
    return "-".join(text.strip().lower().replace("_", " ").replace("-", " ").split())


def _counts(items: Iterable[str]) -> list[WikiCount]:
    counter = Counter(items)
    return [WikiCount(name=name, count=count) for name, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]
