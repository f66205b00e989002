"""The live dashboard under /ui (issue 15): queue, definitions, attempts, lineage, speedup over
time, with server-drawn charts that the render_chart tool returns to agents too.

register(mcp, app) adds the routes (as the MCP server's custom routes, served by `kda-mcp serve
--http`; server/http.py's BearerAuth guards them with the token or the login cookie, see auth.py)
and the render_chart tool (every transport).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kda_mcp.tools.app import KdaApp
    from mcp.server.mcpserver import MCPServer


def register(mcp: MCPServer, app: KdaApp) -> None:
    from kda_mcp.server.dashboard import routes, tool

    routes.register(mcp, app)
    tool.register(mcp, app)
