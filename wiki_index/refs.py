"""Finding a page from what an agent typed: an id, `root:id`, or a path.

Paths are only ever looked up among the pages discovered at open time, never opened on disk,
and anything that tries to climb out of a root (`..`, absolute paths, NUL bytes) is refused
outright rather than "not found", so the agent learns the form is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from kda_mcp.tools.errors import InvalidArgumentError, not_found
from kda_mcp.wiki_index.pages import Page

_DRIVE = re.compile(r"^[A-Za-z]:")


def check_path(ref: str) -> list[str]:
    """The segments of a page path, after refusing anything that could escape a root."""
    if "\x00" in ref:
        raise InvalidArgumentError("The page path contains a NUL byte.", hint="Pass a page id or a path such as 'patterns/memory-bound.md'.")
    if ref.startswith(("/", "\\", "~")) or _DRIVE.match(ref):
        raise InvalidArgumentError(
            f"Absolute paths are not allowed: {ref!r}.",
            hint="Pass a path relative to a wiki root, e.g. 'bundled/patterns/memory-bound.md', or a page id.",
        )
    segments = [s for s in re.split(r"[\\/]", ref) if s not in ("", ".")]
    if ".." in segments:
        raise InvalidArgumentError(
            f"'..' is not allowed in a page path: {ref!r}.",
            hint="Pages can only be read from inside a wiki root; pass a page id or a path inside a root.",
        )
    return segments


def _looks_like_path(ref: str) -> bool:
    return "/" in ref or "\\" in ref or ref.lower().endswith(".md")


class PageTable:
    """All pages, indexed by key, by id and by path; roots earlier in the list win ties."""

    def __init__(self, root_names: list[str], pages: Iterable[Page]) -> None:
        self.root_names = root_names
        self.pages: list[Page] = sorted(pages, key=lambda p: (root_names.index(p.root), p.rel_path))
        self.by_key: dict[str, Page] = {p.key: p for p in self.pages}
        self.by_path: dict[tuple[str, str], Page] = {(p.root, p.rel_path): p for p in self.pages}
        self.by_id: dict[str, list[Page]] = {}
        self.by_lower_id: dict[str, list[Page]] = {}
        self.by_slug: dict[str, list[Page]] = {}
        for page in self.pages:
            self.by_id.setdefault(page.id, []).append(page)
            self.by_lower_id.setdefault(page.id.lower(), []).append(page)
            self.by_slug.setdefault(page.slug.lower(), []).append(page)

    def find(self, ref: str) -> Page | None:
        """The page `ref` names, or None. Raises InvalidArgumentError for unsafe paths."""
        ref = ref.strip()
        if "\x00" in ref:
            check_path(ref)
        if ":" in ref and not _DRIVE.match(ref):
            root, _, rest = ref.partition(":")
            if root in self.root_names:
                return self._find_in(rest.strip(), [root])
        return self._find_in(ref, self.root_names)

    def _find_in(self, ref: str, roots: list[str]) -> Page | None:
        if _looks_like_path(ref):
            segments = check_path(ref)
            page = self._find_path(segments, roots)
            if page is not None:
                return page
        for table, key in ((self.by_id, ref), (self.by_lower_id, ref.lower()), (self.by_slug, ref.lower())):
            for page in table.get(key, []):
                if page.root in roots:
                    return page
        return None

    def _find_path(self, segments: list[str], roots: list[str]) -> Page | None:
        if not segments:
            return None
        candidates: list[tuple[str, str]] = []
        if segments[0] in roots and len(segments) > 1:
            candidates.append((segments[0], "/".join(segments[1:])))
        candidates.extend((root, "/".join(segments)) for root in roots)
        for root, rel in candidates:
            for variant in (rel, rel + ".md"):
                page = self.by_path.get((root, variant))
                if page is not None:
                    return page
        # A path relative to a folder inside a root: 'patterns/x.md' for 'wiki/patterns/x.md'.
        tail = "/" + "/".join(segments)
        for page in self.pages:
            if page.root in roots and ("/" + page.rel_path).endswith((tail, tail + ".md")):
                return page
        return None

    def get(self, ref: str) -> Page:
        """Like find, but a missing page is a NotFoundError that suggests close ids."""
        page = self.find(ref)
        if page is None:
            # Suggest paths for a path and ids for an id: close matches only make sense like for like.
            pool = [p.path for p in self.pages] if _looks_like_path(ref) else [p.id for p in self.pages]
            raise not_found("wiki page", ref, pool, list_tool="search_wiki")
        return page

    def resolve_technique(self, ref: str, prefer_root: str) -> Page | None:
        """A technique a pattern names: by id, then with a usual id prefix, then by file name."""
        order = [prefer_root] + [r for r in self.root_names if r != prefer_root]
        for key in (ref, f"technique-{ref}", f"tech-{ref}", f"hw-{ref}"):
            for page in sorted(self.by_id.get(key, []), key=lambda p: order.index(p.root)):
                return page
        for page in sorted(self.by_slug.get(ref.lower(), []), key=lambda p: order.index(p.root)):
            return page
        return None
