"""The MCP surface of kda-mcp: tool, prompt and resource registration, transports, auth and the CLI.

No domain logic lives here; every tool is a thin adapter over a function in `tools/` or `wiki_index/`.
"""
