"""Tools that profile solutions with Nsight Compute and compare profiles."""

from typing import Annotated, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.types import CallToolResult
from pydantic import Field

from kda_mcp.server.adapters import SOLUTION_HELP, JobResponse, annotations, compact, domain_errors, read_only, wait_for_job
from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.errors import KdaError
from kda_mcp.tools.profile.models import ProfileComparison
from kda_mcp.tools.profile.operation import compare_profiles as compare_op
from kda_mcp.tools.profile.operation import submit_profile
from kda_mcp.tools.solution import SolutionInput

ProfileId = Annotated[str, Field(min_length=2, max_length=20, description="Profile id such as 'p4' (from profile_solution).")]


def register(mcp: MCPServer, app: KdaApp) -> None:
    @mcp.tool(
        name="profile_solution",
        annotations=annotations("Profile a solution", read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False),
        description=(
            "Profile one call of a solution with Nsight Compute (ncu, --clock-control none) on a leased GPU; input "
            "generation and warm-up are excluded by an NVTX range. Per kernel: duration, grid/block, registers, "
            "shared memory, waves per SM, occupancy and its limiter, compute/memory/DRAM throughput (% of peak), L2/L1 "
            "hit rates, sectors per request, tensor-pipe use, local (spill) traffic, top stall reasons, Nsight's rule "
            "findings by estimated speedup, a roofline point, and a bottleneck label (memory-bound, compute-bound, "
            "latency-bound, occupancy-limited, tail-effect, launch-bound) citing the metrics behind it with wiki "
            "pages for it. set: quick (seconds), full (every section), source (adds the top source lines by stall "
            "samples; CUDA builds carry -lineinfo). workload: 'largest' (default) or 'smallest' of the dev set, or a "
            "uuid. kernels: a regex on kernel names. The .ncu-rep is kept (report_path, resource profile://{id}); "
            "compare two with compare_profiles. " + SOLUTION_HELP
        ),
    )
    @domain_errors
    async def profile_solution(
        solution: Annotated[SolutionInput, Field(description=SOLUTION_HELP)],
        workload: Annotated[str | None, Field(max_length=100, description="'largest' (default), 'smallest', or a workload uuid.")] = None,
        set: Annotated[Literal["quick", "full", "source"], Field(description="How much to collect.")] = "quick",
        kernels: Annotated[str | None, Field(max_length=200, description="Regex: profile only kernels whose name matches.")] = None,
        launch_skip: Annotated[int, Field(ge=0, le=10000, description="Kernel launches in the call to skip before profiling.")] = 0,
        launch_count: Annotated[int, Field(ge=1, le=200, description="At most this many kernel launches are profiled.")] = 20,
        detail: Annotated[Literal["compact", "full"], Field(description="'full' adds every raw metric and all findings.")] = "compact",
        wait_seconds: Annotated[float, Field(ge=0, le=600, description="How long to wait before returning a job_id instead.")] = 50,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, JobResponse]:
        job_id = await anyio.to_thread.run_sync(
            lambda: submit_profile(
                app, solution, workload=workload, profile_set=set, kernels=kernels, launch_skip=launch_skip, launch_count=launch_count, detail=detail
            )
        )
        return compact(await wait_for_job(app.jobs, job_id, wait_seconds, ctx))

    @mcp.tool(
        name="compare_profiles",
        annotations=read_only("Compare two profiles"),
        description=(
            "Before/after evidence for an optimization: per-kernel duration and speedup, and the key metrics that moved "
            "by more than 5% (occupancy, throughputs, L2 hit rate, sectors per request, tensor pipe, spills), with "
            "each side's bottleneck label. a is 'before', b is 'after'."
        ),
    )
    @domain_errors
    def compare_profiles(a: ProfileId, b: ProfileId) -> Annotated[CallToolResult, ProfileComparison]:
        return compact(compare_op(app, a, b))

    @mcp.resource(
        "profile://{profile_id}",
        name="profile",
        title="Nsight Compute profile summary",
        description="A profile's summary as JSON, with the path of its .ncu-rep report.",
        mime_type="application/json",
    )
    def profile_resource(profile_id: str) -> str:
        try:
            return app.profiles.get(profile_id).model_dump_json(exclude_none=True, indent=1)
        except KdaError as exc:
            raise ResourceError(str(exc)) from exc
