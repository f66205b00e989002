"""Tools over the kernel knowledge wiki."""

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import Field

from kda_mcp.server.adapters import compact, domain_errors, read_only
from kda_mcp.tools.app import KdaApp
from kda_mcp.wiki_index import WikiGrepResult, WikiPageText, WikiSearchResult

PageType = Annotated[str | None, Field(max_length=50, description="Only pages of this type: hardware, technique, pattern, tool (external roots may add kernel, source, ...).")]
Tag = Annotated[str | None, Field(max_length=100, description="Only pages carrying this tag, e.g. 'hopper' or 'cp.async'.")]
Root = Annotated[str | None, Field(max_length=100, description="Only this wiki root: 'bundled' or an external root's name (see capabilities).")]


def render_page(page: WikiPageText) -> str:
    """The page as markdown with a short header saying where it is and how to read more."""
    end = page.offset + len(page.text)
    lines = [
        f"id: {page.id}",
        f"path: {page.path}",
        f"title: {page.title}",
    ]
    if page.outline:
        lines.append("sections: " + " | ".join(page.outline))
    if page.next_offset is not None:
        lines.append(f"showing characters {page.offset}-{end} of {page.total_chars}; call again with offset={page.next_offset} for more")
    return "\n".join(lines) + "\n---\n" + page.text


def register(mcp: MCPServer, app: KdaApp) -> None:
    @mcp.tool(
        name="search_wiki",
        annotations=read_only("Search the kernel wiki"),
        description=(
            "Full-text search (BM25) of the kernel knowledge base: hardware (TMA, wgmma, tcgen05, memory "
            "hierarchy), techniques (pipelining, split-K, swizzling, online softmax, ...) and profiler patterns "
            "(memory-bound, latency-bound, spills, ...). Kernel terms like cp.async, sm_90a, split-k stay whole. "
            "Each hit cites its id and path with a snippet; open one with read_wiki_page. Filters narrow by type, "
            "tag or root. Use grep_wiki instead for exact identifiers or regexes."
        ),
    )
    @domain_errors
    def search_wiki(
        query: Annotated[str, Field(min_length=1, max_length=500, description="Words or quoted phrases, e.g. 'shared memory bank conflicts swizzle'.")],
        type: PageType = None,
        tag: Tag = None,
        root: Root = None,
        limit: Annotated[int, Field(ge=1, le=30, description="Hits to return (1-30).")] = 8,
    ) -> Annotated[CallToolResult, WikiSearchResult]:
        return compact(app.wiki().search(query, type=type, tag=tag, root=root, limit=limit))

    @mcp.tool(
        name="read_wiki_page",
        annotations=read_only("Read a wiki page"),
        description=(
            "Read one wiki page as markdown, by id (e.g. 'pattern-memory-bound'), 'root:id', or path as cited by "
            "search_wiki. Long pages come in chunks: the header gives next_offset to pass as offset. Pass section "
            "(a heading from the header's section list) to read just that part."
        ),
        structured_output=False,
    )
    @domain_errors
    def read_wiki_page(
        page: Annotated[str, Field(min_length=1, max_length=300, description="Page id, 'root:id', or path from a search hit.")],
        section: Annotated[str | None, Field(max_length=200, description="Read only the section under this heading.")] = None,
        offset: Annotated[int, Field(ge=0, description="Character offset to start from (next_offset of the previous call).")] = 0,
        max_chars: Annotated[int, Field(ge=200, le=20000, description="Characters to return (200-20000).")] = 6000,
    ) -> str:
        return render_page(app.wiki().read(page, section=section, offset=offset, max_chars=max_chars))

    @mcp.tool(
        name="grep_wiki",
        annotations=read_only("Grep the kernel wiki"),
        description=(
            "Regex search over wiki page lines, for exact identifiers (metric names, PTX, API calls). The pattern "
            "must contain a literal of at least 3 characters that every match includes (e.g. 'cp\\.async\\.bulk', "
            "'l1tex__t_sectors.*ld'); bare wildcards are refused. Output is capped at max_matches lines; narrow "
            "with type, tag or root. Use search_wiki for topics."
        ),
    )
    @domain_errors
    def grep_wiki(
        pattern: Annotated[str, Field(min_length=3, max_length=300, description="Python regular expression containing a literal of 3+ characters.")],
        type: PageType = None,
        tag: Tag = None,
        root: Root = None,
        ignore_case: Annotated[bool, Field(description="Case-insensitive matching.")] = True,
        max_matches: Annotated[int, Field(ge=1, le=200, description="Matching lines to return (1-200).")] = 40,
    ) -> Annotated[CallToolResult, WikiGrepResult]:
        return compact(app.wiki().grep(pattern, type=type, tag=tag, root=root, ignore_case=ignore_case, max_matches=max_matches))
