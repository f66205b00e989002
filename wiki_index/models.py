"""What the wiki index returns: plain pydantic models the MCP layer can serialise as-is."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WikiHit(BaseModel):
    """One page that matched. `path` is `<root>/<rel_path>`, so a hit can be cited and read."""

    id: str
    title: str
    type: str
    root: str
    path: str
    score: float
    tags: list[str] = Field(default_factory=list)
    snippet: str = ""


class WikiSearchResult(BaseModel):
    query: str
    hits: list[WikiHit]
    total: int = Field(description="How many pages matched in all (hits holds the best `limit`).")
    suggestion: str | None = Field(default=None, description="What to try next when nothing (useful) matched.")


class WikiPageText(BaseModel):
    """A page (or one section of it), paged by character offset."""

    id: str
    title: str
    type: str
    root: str
    path: str
    tags: list[str]
    related: list[str]
    outline: list[str] = Field(description="The page's headings, e.g. '## Likely Causes'; pass one as `section`.")
    section: str | None = None
    text: str
    offset: int
    next_offset: int | None = Field(description="Pass as `offset` to read on; None when this is the end.")
    total_chars: int


class WikiPageInfo(BaseModel):
    """A page's metadata without its text."""

    id: str
    title: str
    type: str
    root: str
    path: str
    tags: list[str]
    aliases: list[str]
    symptoms: list[str]
    techniques: list[str]
    related: list[str]
    outline: list[str]
    total_chars: int


class WikiGrepMatch(BaseModel):
    id: str
    path: str
    line_no: int = Field(description="1-based line number in the file, front matter included.")
    line: str


class WikiGrepResult(BaseModel):
    pattern: str
    matches: list[WikiGrepMatch]
    truncated: bool = Field(description="True when more matches exist than were returned.")
    pages_scanned: int = Field(description="Pages within the type/tag/root filters.")
    note: str | None = Field(default=None, description="Why the scan stopped early (a time limit), with what to do.")


class WikiCount(BaseModel):
    name: str
    count: int


class WikiRootStatus(BaseModel):
    name: str
    path: str
    available: bool
    pages: int
    note: str | None = None


class WikiStatus(BaseModel):
    roots: list[WikiRootStatus]
    pages: int
    warnings: list[str] = Field(description="Pages skipped or degraded, missing roots; the first 50.")
    warning_count: int
    cache_path: str
    index_key: str
    built_now: bool = Field(description="True when this open built the index rather than reusing a cached one.")
    build_seconds: float = Field(description="How long the index build took (the cached build's time when reused).")
    open_seconds: float
