"""Tools that build and package solutions."""

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import Field

from kda_mcp.server.adapters import SOLUTION_HELP, annotations, compact, domain_errors, with_heartbeat
from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.compile.operation import compile_solution as compile_op
from kda_mcp.tools.compile.result import CompileResult
from kda_mcp.tools.solution import PackResult, SolutionInput, UnpackResult, pack, resolve_input, unpack


def register(mcp: MCPServer, app: KdaApp) -> None:
    @mcp.tool(
        name="compile_solution",
        annotations=annotations("Compile a solution", read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
        description=(
            "Build a solution without timing it, and report what the compiler saw: ok/failed, diagnostics with "
            "file:line (errors first), per-kernel registers, shared memory, spills and stack, and SASS facts "
            "(tensor-core instructions such as HGMMA, LDL/STL local traffic, global load width, TMA, cp.async). "
            "CUDA/C++ builds with nvcc and -lineinfo for `arch` (default: this GPU's arch-specific target, e.g. "
            "sm_90a); extra_nvcc_flags are passed through. Triton/Python code compiles on its first call, so it runs "
            "once on the smallest dev workload on a GPU (a JIT error is reported here); without a GPU it returns "
            "needs_gpu after static checks. Unchanged sources answer from a cache. " + SOLUTION_HELP
        ),
    )
    @domain_errors
    async def compile_solution(
        solution: Annotated[SolutionInput, Field(description=SOLUTION_HELP)],
        arch: Annotated[str | None, Field(max_length=20, description="Target such as sm_90a, sm_100a, sm_120a; default from the GPU.")] = None,
        extra_nvcc_flags: Annotated[list[str] | None, Field(max_length=32, description="Extra nvcc options, e.g. ['-maxrregcount=128', '--use_fast_math'].")] = None,
        include_log: Annotated[bool, Field(description="Also return the raw build log (tail).")] = False,
        timeout_s: Annotated[int, Field(ge=10, le=1800, description="Stop the build after this many seconds.")] = 300,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, CompileResult]:
        result = await with_heartbeat(
            ctx,
            "compiling",
            lambda: compile_op(app, solution, arch=arch, extra_nvcc_flags=extra_nvcc_flags, timeout_s=timeout_s, include_log=include_log),
        )
        return compact(result)

    @mcp.tool(
        name="pack_solution",
        annotations=annotations("Pack a solution.json", read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
        description=(
            "Pack a solution into the flashinfer-bench solution.json a contest submission or dataset needs. Usually "
            "given {path: a starter-kit folder with config.toml}; also accepts inline files. With output_path, writes "
            "the file on the server (inside a workspace; capabilities lists them) and returns its path; otherwise "
            "returns the JSON text."
        ),
    )
    @domain_errors
    def pack_solution(
        solution: Annotated[SolutionInput, Field(description=SOLUTION_HELP)],
        output_path: Annotated[str | None, Field(max_length=4096, description="Where to write solution.json on the server.")] = None,
        overwrite: Annotated[bool, Field(description="Replace output_path if it exists.")] = False,
    ) -> Annotated[CallToolResult, PackResult]:
        packed, _ = resolve_input(app, solution)
        return compact(pack(packed, output_path=output_path, overwrite=overwrite, roots=app.roots))

    @mcp.tool(
        name="unpack_solution",
        annotations=annotations("Unpack a solution.json", read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False),
        description=(
            "The reverse of pack_solution: write a packed solution (solution_json, or path to a solution.json) out "
            "as a starter-kit folder on the server (config.toml + solution/<language>/ sources), ready to edit, "
            "inside a workspace (capabilities lists them). Refuses to replace existing files unless overwrite=true."
        ),
    )
    @domain_errors
    def unpack_solution(
        solution: Annotated[SolutionInput, Field(description="{solution_json: ...} or {path: 'solution.json'}.")],
        folder: Annotated[str, Field(min_length=1, max_length=4096, description="Folder to create or fill on the server.")],
        overwrite: Annotated[bool, Field(description="Replace files that already exist.")] = False,
    ) -> Annotated[CallToolResult, UnpackResult]:
        unpacked, _ = resolve_input(app, solution)
        return compact(unpack(unpacked, folder=folder, overwrite=overwrite, roots=app.roots))
