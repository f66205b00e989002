"""The kda-mcp domain: datasets, solutions, builds, evaluation, profiling, jobs and the attempt ledger.

Nothing in this package imports `mcp`; `server/` adapts these functions to MCP tools.
"""
