"""The kernel knowledge wiki: bundled and external markdown pages, indexed for search.

`WikiIndex.open(default_roots())` gives search / read / grep / route over every root. This
package does not depend on the MCP layer; the server wraps it in tools.
"""

from kda_mcp.wiki_index.index import WikiIndex, default_roots
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
from kda_mcp.wiki_index.pages import Page, WikiRoot

__all__ = [
    "Page",
    "WikiCount",
    "WikiGrepMatch",
    "WikiGrepResult",
    "WikiHit",
    "WikiIndex",
    "WikiPageInfo",
    "WikiPageText",
    "WikiRoot",
    "WikiRootStatus",
    "WikiSearchResult",
    "WikiStatus",
    "default_roots",
]
