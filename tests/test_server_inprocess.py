"""The MCP surface driven in-process by the SDK's Client, in both protocol eras."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp import Client

# The handshake era is what Claude Code and Codex speak today; 2026-07-28 is the stateless era.
ERAS = ["legacy", "2026-07-28"]

FOUNDATION_TOOLS = {
    "capabilities",
    "list_definitions",
    "get_definition",
    "list_workloads",
    "search_wiki",
    "read_wiki_page",
    "grep_wiki",
    "get_phase_prompt",
}


def run(mcp_server, mode: str, body: Callable[[Client], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with Client(mcp_server, mode=mode) as client:
            return await body(client)

    return anyio.run(main)


def text_of(result) -> str:
    return "".join(block.text for block in result.content if getattr(block, "type", "") == "text")


@pytest.mark.parametrize("mode", ERAS)
def test_lists_tools_prompts_resources(mcp_server, mode):
    async def body(client: Client):
        tools = (await client.list_tools()).tools
        prompts = (await client.list_prompts()).prompts
        resources = (await client.list_resources()).resources
        templates = (await client.list_resource_templates()).resource_templates
        return tools, prompts, resources, templates

    tools, prompts, resources, templates = run(mcp_server, mode, body)
    names = {t.name for t in tools}
    assert FOUNDATION_TOOLS <= names
    for tool in tools:
        assert tool.annotations is not None and tool.annotations.title, tool.name
        assert tool.description and len(tool.description) > 60, tool.name
        assert tool.name == tool.name.lower() and " " not in tool.name
    assert {p.name for p in prompts} == {"phase1_first_correct_kernel", "phase2_profile_guided_exploration", "phase3_shape_specialization"}
    for prompt in prompts:
        args = {a.name: a for a in prompt.arguments}
        assert args["definition"].required
        assert {"target_speedup", "dev_workloads"} <= set(args)
    assert {str(r.uri) for r in resources} >= {"phase://phase1", "phase://phase2", "phase://phase3"}
    assert {t.uri_template for t in templates} >= {"definition://{name}", "wiki://{page_id}"}


@pytest.mark.parametrize("mode", ERAS)
def test_browse_dataset(mcp_server, mode):
    async def body(client: Client):
        listing = await client.call_tool("list_definitions", {})
        detail = await client.call_tool("get_definition", {"name": "rmsnorm_h4096_bf16"})
        workloads = await client.call_tool("list_workloads", {"definition": "rmsnorm_h4096_bf16", "limit": 2})
        return listing, detail, workloads

    listing, detail, workloads = run(mcp_server, mode, body)
    assert not listing.is_error
    names = {d["name"] for d in listing.structured_content["definitions"]}
    assert {"vector_add_fp32", "rmsnorm_h4096_bf16", "gemm_n4096_k4096_bf16"} <= names
    # compact: no nulls anywhere, and the text block is the same JSON without indentation
    assert "null" not in text_of(listing) and "\n" not in text_of(listing)
    assert json.loads(text_of(listing)) == listing.structured_content

    d = detail.structured_content
    assert d["tolerance"]["source"] == "definition"
    assert "def run" in d["reference"]
    assert 2 <= len(d["dev_workloads"]) <= 4
    sizes = [w["axes"]["batch_size"] for w in d["dev_workloads"]]
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] == 8192  # spans the range
    assert d["baseline_solution"]

    w = workloads.structured_content
    assert len(w["workloads"]) == 2 and w["next_offset"] == 2 and w["total"] >= 5


@pytest.mark.parametrize("mode", ERAS)
def test_capabilities_and_prompts(mcp_server, mode):
    async def body(client: Client):
        caps = await client.call_tool("capabilities", {})
        prompt = await client.get_prompt("phase2_profile_guided_exploration", {"definition": "gemm_n4096_k4096_bf16"})
        via_tool = await client.call_tool("get_phase_prompt", {"phase": "2", "definition": "gemm_n4096_k4096_bf16"})
        resource = await client.read_resource("phase://phase1")
        return caps, prompt, via_tool, resource

    caps, prompt, via_tool, resource = run(mcp_server, mode, body)
    c = caps.structured_content
    assert c["dataset_embedded"] is True and c["executor"] == "local"
    assert "torch" in c["packages"] and "mcp" in c["packages"]
    assert c["gpus"] or c["gpu_note"]
    if importlib.util.find_spec("cupti") is None:  # CI: no cupti-python, so the fallback and its fix are named
        assert c["timing_method"].startswith("cuda events") and ".ci/install --gpu" in c["timing_fix"]
    else:
        assert c["timing_method"].startswith("cupti") and "timing_fix" not in c
    rendered = prompt.messages[0].content.text
    assert "gemm_n4096_k4096_bf16" in rendered and "$definition" not in rendered
    assert "profile_solution" in rendered and "record_note" in rendered
    assert via_tool.structured_content is None  # markdown comes back as plain text
    assert text_of(via_tool) == rendered
    assert "$definition" in resource.contents[0].text  # the resource is the template itself


@pytest.mark.parametrize("mode", ERAS)
def test_wiki_tools(mcp_server, mode):
    async def body(client: Client):
        search = await client.call_tool("search_wiki", {"query": "shared memory bank conflicts swizzle"})
        page = await client.call_tool("read_wiki_page", {"page": "pattern-memory-bound", "max_chars": 400})
        grep = await client.call_tool("grep_wiki", {"pattern": r"cp\.async"})
        resource = await client.read_resource("wiki://hw-tma")
        return search, page, grep, resource

    search, page, grep, resource = run(mcp_server, mode, body)
    hits = search.structured_content["hits"]
    assert hits and hits[0]["id"] == "tech-smem-bank-conflicts-and-swizzling"
    assert all(h["path"].startswith("bundled/") for h in hits)
    text = text_of(page)
    assert text.startswith("id: pattern-memory-bound") and "offset=" in text
    assert grep.structured_content["matches"]
    assert "TMA" in resource.contents[0].text or "Tensor Memory" in resource.contents[0].text


BAD_CALLS = [
    ("get_definition", {"name": "rmsnorm_h4096"}, "rmsnorm_h4096_bf16"),  # close match suggested
    ("get_definition", {"name": "x" * 5000}, "at most 200"),  # huge argument refused by the schema
    ("list_workloads", {"definition": "nope"}, "Unknown definition"),
    ("list_definitions", {"limit": 0}, "greater than or equal to 1"),
    ("list_definitions", {"limit": 10_000}, "less than or equal to 200"),
    ("list_definitions", {"offset": -1}, "greater than or equal to 0"),
    ("list_definitions", {"op_type": "nosuchop"}, None),  # not an error: empty page with a hint
    ("search_wiki", {"query": ""}, "at least 1"),
    ("search_wiki", {"query": "tma", "limit": 999}, "less than or equal to 30"),
    ("read_wiki_page", {"page": "../../etc/passwd"}, "inside a wiki root"),
    ("read_wiki_page", {"page": "/etc/passwd"}, None),
    ("read_wiki_page", {"page": "bundled/../../../etc/passwd"}, None),
    ("read_wiki_page", {"page": "pattern-memory-bound", "section": "No such heading"}, "Related pages"),
    ("read_wiki_page", {"page": "no-such-page-id"}, "Unknown"),
    ("grep_wiki", {"pattern": ".*"}, "at least 3"),
    ("grep_wiki", {"pattern": "abc|def"}, None),
    ("grep_wiki", {"pattern": "cp\\.async("}, "invalid regex"),
    ("get_phase_prompt", {"phase": "phase9"}, "phase"),
    ("get_phase_prompt", {"phase": "1"}, "definition"),
    ("no_such_tool", {}, "Unknown tool"),
]


@pytest.mark.parametrize("mode", ERAS)
def test_bad_inputs_are_tool_errors_that_say_what_to_do(mcp_server, mode):
    async def body(client: Client):
        return [await client.call_tool(name, args) for name, args, _ in BAD_CALLS]

    results = run(mcp_server, mode, body)
    for (name, args, expected), result in zip(BAD_CALLS, results):
        message = text_of(result)
        if name == "list_definitions" and "op_type" in args:
            assert not result.is_error and result.structured_content["total"] == 0
            assert "op types:" in result.structured_content["hint"]
            continue
        assert result.is_error, (name, args, message)
        # A crash reaches the model as the bare "Error executing tool <name>"; ours always say more.
        assert message.strip() != f"Error executing tool {name}", (name, args)
        if expected:
            assert expected.lower() in message.lower(), (name, args, message)
