"""What agents see: every tool's name, description, input and output schema and annotations, as
one reviewed file (tests/snapshots/tools_list.json). A change to any of them fails here until the
snapshot is regenerated on purpose:

    KDA_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/test_tools_snapshot.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
from mcp import Client

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools_list.json"


def listed(mcp_server) -> list[dict]:
    async def main() -> list[dict]:
        async with Client(mcp_server, mode="legacy") as client:
            tools = (await client.list_tools()).tools
            return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in sorted(tools, key=lambda t: t.name)]

    return anyio.run(main)


def test_tools_list_matches_the_snapshot(mcp_server):
    current = listed(mcp_server)
    text = json.dumps(current, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("KDA_UPDATE_SNAPSHOT") or not SNAPSHOT.exists():
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.read_text() == text, "tools/list changed: review the diff, then regenerate with KDA_UPDATE_SNAPSHOT=1"


def test_every_tool_is_annotated_and_described(mcp_server):
    for tool in listed(mcp_server):
        assert tool["name"].replace("_", "").isalnum() and tool["name"] == tool["name"].lower(), tool["name"]
        assert len(tool.get("description", "")) > 80, tool["name"]
        hints = tool.get("annotations", {})
        assert {"readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"} <= set(hints), (tool["name"], hints)
