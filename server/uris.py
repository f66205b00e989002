"""MCP resources addressed by URI: definition://{name} and wiki://{page_id}."""

import json

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.errors import KdaError


def register(mcp: MCPServer, app: KdaApp) -> None:
    @mcp.resource(
        "definition://{name}",
        name="definition",
        title="Kernel definition",
        description="A definition as JSON: axes, inputs/outputs, tolerance, dev workloads and reference source.",
        mime_type="application/json",
    )
    def definition_resource(name: str) -> str:
        try:
            detail = app.dataset().describe(name)
        except KdaError as exc:
            raise ResourceError(str(exc)) from exc
        return json.dumps(detail.model_dump(mode="json", exclude_none=True), indent=1)

    @mcp.resource(
        "wiki://{page_id}",
        name="wiki_page",
        title="Kernel wiki page",
        description="A wiki page's full markdown, by page id (as cited by search_wiki).",
        mime_type="text/markdown",
    )
    def wiki_resource(page_id: str) -> str:
        parts, offset = [], 0
        try:
            while offset is not None:  # the reader pages; a resource is the whole page
                page = app.wiki().read(page_id, offset=offset, max_chars=20_000)
                parts.append(page.text)
                offset = page.next_offset
        except KdaError as exc:
            raise ResourceError(str(exc)) from exc
        return "".join(parts)
