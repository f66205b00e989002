"""Tools that describe the machine and browse the dataset."""

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import Field

from kda_mcp.server.adapters import compact, domain_errors, read_only
from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.capabilities import Capabilities
from kda_mcp.tools.models import DefinitionDetail, DefinitionPage, WorkloadPage

Offset = Annotated[int, Field(ge=0, description="Index of the first item to return; use next_offset from the previous page.")]
Limit = Annotated[int, Field(ge=1, le=200, description="Items per page (1-200).")]
DefinitionName = Annotated[str, Field(min_length=1, max_length=200, description="Exact definition name, e.g. 'rmsnorm_h4096_bf16'.")]


def register(mcp: MCPServer, app: KdaApp) -> None:
    @mcp.tool(
        name="capabilities",
        annotations=read_only("Machine capabilities"),
        description=(
            "Report what this kda-mcp server can do: GPUs (name, sm_XX arch, SM count, L2, clocks as found), "
            "driver and CUDA versions, torch/triton/flashinfer-bench versions, nvcc, Nsight Compute (ncu) and whether "
            "hardware counters are permitted, compute-sanitizer, the dataset root and the wiki roots. Call it once at "
            "the start of a session to pick the target arch and know which tools will work. Cached; pass refresh=true "
            "after changing the machine."
        ),
    )
    @domain_errors
    def capabilities(
        refresh: Annotated[bool, Field(description="Probe again instead of answering from the cache.")] = False,
    ) -> Annotated[CallToolResult, Capabilities]:
        return compact(app.capabilities(refresh=refresh))

    @mcp.tool(
        name="list_definitions",
        annotations=read_only("List kernel definitions"),
        description=(
            "List the kernel definitions (FlashInfer-Trace) in the dataset: name, op type, tags, variable axes and "
            "workload count. Filters combine (AND): op_type exact, name_contains case-insensitive substring, tag "
            "exact. Paginated: pass next_offset back as offset. Use get_definition for one definition's full schema."
        ),
    )
    @domain_errors
    def list_definitions(
        op_type: Annotated[str | None, Field(max_length=100, description="Only this op type, e.g. 'gemm'.")] = None,
        name_contains: Annotated[str | None, Field(max_length=200, description="Case-insensitive substring of the name.")] = None,
        tag: Annotated[str | None, Field(max_length=100, description="Only definitions carrying this tag.")] = None,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> Annotated[CallToolResult, DefinitionPage]:
        page = app.dataset().list_definitions(op_type=op_type, name_contains=name_contains, tag=tag, offset=offset, limit=limit)
        return compact(page)

    @mcp.tool(
        name="get_definition",
        annotations=read_only("Get a kernel definition"),
        description=(
            "Get one definition: axes (const values and variable axes), inputs and outputs with shapes and dtypes, "
            "the correctness tolerance the evaluator applies, the Python reference implementation (the ground truth "
            "your kernel must match), the dev set of workloads spanning the axis range (what run_benchmark uses by "
            "default), and the baseline solution speedups are measured against. Set include_reference=false to "
            "skip the reference source when you have already read it."
        ),
    )
    @domain_errors
    def get_definition(
        name: DefinitionName,
        include_reference: Annotated[bool, Field(description="Include the reference source code.")] = True,
    ) -> Annotated[CallToolResult, DefinitionDetail]:
        return compact(app.dataset().describe(name, include_reference=include_reference))

    @mcp.tool(
        name="list_workloads",
        annotations=read_only("List workloads of a definition"),
        description=(
            "List the workloads of one definition, smallest to largest: uuid, axis values, non-random inputs "
            "(scalars, safetensors), and whether each is in the dev set. Pass uuids (or unique prefixes) to "
            "run_benchmark's workloads argument to measure specific shapes. Paginated: pass next_offset back as offset."
        ),
    )
    @domain_errors
    def list_workloads(definition: DefinitionName, offset: Offset = 0, limit: Limit = 50) -> Annotated[CallToolResult, WorkloadPage]:
        return compact(app.dataset().list_workloads(definition, offset=offset, limit=limit))
