"""Wiki roots, page discovery and the parsed form of one page.

A root is any folder of markdown. Pages keep their full text in memory so `read` and `grep`
never touch the disk after the index is open.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from kda_mcp.wiki_index.frontmatter import as_list, as_text, split_front_matter

MAX_PAGE_BYTES = 4 * 1024 * 1024  # a larger .md file is a data dump, not a page
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__"})

# Folder names that say what kind of page lives in them (KernelWiki and the bundled layout).
FOLDER_TYPES = {
    "hardware": "hardware",
    "technique": "technique",
    "techniques": "technique",
    "pattern": "pattern",
    "patterns": "pattern",
    "tool": "tool",
    "tools": "tool",
    "kernel": "kernel",
    "kernels": "kernel",
    "language": "language",
    "languages": "language",
    "migration": "migration",
    "migrations": "migration",
    "sources": "source",
    "source": "source",
}

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class WikiRoot:
    """A named folder of markdown pages."""

    name: str
    path: Path


@dataclass(frozen=True, slots=True)
class Heading:
    level: int
    title: str
    start: int  # offset of the heading line in the page body

    @property
    def label(self) -> str:
        """The heading as written, e.g. `## Likely Causes`: shows the outline's structure."""
        return "#" * self.level + " " + self.title


@dataclass(slots=True)
class Page:
    """One parsed page. `text` is the whole file; the body starts at `body_start`."""

    root: str
    id: str
    title: str
    type: str
    rel_path: str
    text: str
    body_start: int
    tags: list[str] = field(default_factory=list)
    symptoms: list[str] = field(default_factory=list)
    techniques: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    related: list[str] = field(default_factory=list)
    sections: list[Heading] = field(default_factory=list)

    @property
    def body(self) -> str:
        return self.text[self.body_start :]

    @property
    def headings(self) -> list[str]:
        return [h.title for h in self.sections]

    @property
    def path(self) -> str:
        """What a hit cites: `<root>/<rel_path>`."""
        return f"{self.root}/{self.rel_path}"

    @property
    def key(self) -> str:
        return f"{self.root}:{self.id}"

    @property
    def slug(self) -> str:
        """The file name without `.md`."""
        name = self.rel_path.rsplit("/", 1)[-1]
        return name[:-3] if name.lower().endswith(".md") else name

    def section_text(self, heading: Heading) -> str:
        """The heading's section: its line up to the next heading of the same or a higher level."""
        body = self.body
        end = len(body)
        index = self.sections.index(heading)
        for later in self.sections[index + 1 :]:
            if later.level <= heading.level:
                end = later.start
                break
        return body[heading.start : end]


def discover(root: WikiRoot) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Every markdown file under `root` as (posix relative path, bytes), sorted by path.

    Hidden folders and node_modules are skipped; so is any file whose real location is outside
    the root (a symlink pointing elsewhere), since pages must never leak other files. os.walk
    does not descend into linked folders, so only linked files need resolving.
    """
    warnings: list[str] = []
    base = os.path.realpath(root.path)
    found: list[tuple[str, bytes]] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIPPED_DIRS)
        for filename in sorted(filenames):
            if not filename.lower().endswith(".md") or filename.startswith("."):
                continue
            full = os.path.join(dirpath, filename)
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            try:
                if os.path.islink(full) and os.path.commonpath([base, os.path.realpath(full)]) != base:
                    warnings.append(f"{root.name}/{rel}: links outside the root; skipped")
                    continue
                if os.path.getsize(full) > MAX_PAGE_BYTES:
                    warnings.append(f"{root.name}/{rel}: larger than {MAX_PAGE_BYTES // 1024 // 1024} MiB; skipped")
                    continue
                with open(full, "rb") as handle:
                    found.append((rel, handle.read()))
            except OSError as exc:
                warnings.append(f"{root.name}/{rel}: unreadable ({exc.strerror or exc}); skipped")
    found.sort(key=lambda item: item[0])
    return found, warnings


def parse_headings(body: str) -> list[Heading]:
    """ATX headings outside fenced code blocks (a `# comment` in a code block is not a heading)."""
    headings: list[Heading] = []
    fence: str | None = None
    offset = 0
    for line in body.splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        fence_match = _FENCE.match(stripped)
        if fence_match:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker[0] * 3
            elif marker.startswith(fence):
                fence = None
        elif fence is None:
            heading = _HEADING.match(stripped)
            if heading:
                headings.append(Heading(len(heading.group(1)), heading.group(2).strip(), offset))
        offset += len(line)
    return headings


def type_from_path(rel_path: str) -> str | None:
    """The page type implied by the first folder with a known name, e.g. `wiki/patterns/x.md`."""
    for part in PurePosixPath(rel_path).parts[:-1]:
        kind = FOLDER_TYPES.get(part.lower())
        if kind:
            return kind
    return None


def parse_page(root: str, rel_path: str, data: bytes) -> tuple[Page, list[str]]:
    """Parse one file into a Page; problems are returned as warnings, never raised."""
    warnings: list[str] = []
    where = f"{root}/{rel_path}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        warnings.append(f"{where}: not valid UTF-8; undecodable bytes replaced")
    text = text.replace("\x00", "")
    fm = split_front_matter(text)
    warnings.extend(f"{where}: {w}" for w in fm.warnings)
    meta = fm.meta
    sections = parse_headings(text[fm.body_start :])

    page_id = as_text(meta.get("id")) or str(PurePosixPath(rel_path).with_suffix(""))
    title = as_text(meta.get("title"))
    if title is None:
        first = next((h for h in sections if h.level == 1), None)
        title = first.title if first else PurePosixPath(rel_path).stem
    kind = as_text(meta.get("type"))
    if kind is None:
        kind = "source" if meta.get("source_category") else (type_from_path(rel_path) or "page")

    techniques = as_list(meta.get("techniques")) + as_list(meta.get("candidate_techniques"))
    page = Page(
        root=root,
        id=page_id,
        title=title,
        type=kind.lower(),
        rel_path=rel_path,
        text=text,
        body_start=fm.body_start,
        tags=_unique(t.lower() for t in as_list(meta.get("tags"))),
        symptoms=_unique(s.lower() for s in as_list(meta.get("symptoms"))),
        techniques=_unique(techniques),
        aliases=_unique(as_list(meta.get("aliases"))),
        related=_unique(as_list(meta.get("related"))),
        sections=sections,
    )
    return page, warnings


def _unique(items: object) -> list[str]:
    return list(dict.fromkeys(items))  # type: ignore[arg-type]
