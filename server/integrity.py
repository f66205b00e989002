"""Tools that check solutions beyond timing: compute-sanitizer, and honest A/B comparison."""

from typing import Annotated, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import Field

from kda_mcp.server.adapters import SOLUTION_HELP, JobResponse, annotations, compact, domain_errors, wait_for_job
from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.evaluation.comparison import submit_compare
from kda_mcp.tools.sanitize.operation import submit_sanitize
from kda_mcp.tools.solution import SolutionInput

Workloads = Annotated[Literal["dev", "all"] | list[str], Field(description="'dev' (default), 'all', or workload uuids.")]
Wait = Annotated[float, Field(ge=0, le=600, description="How long to wait before returning a job_id instead.")]


def register(mcp: MCPServer, app: KdaApp) -> None:
    @mcp.tool(
        name="sanitize_solution",
        annotations=annotations("Run compute-sanitizer", read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False),
        description=(
            "Run one call of a solution under compute-sanitizer on a leased GPU: memcheck (out-of-bounds and "
            "misaligned accesses, leaks), racecheck (shared-memory races), initcheck (reads of uninitialized "
            "global memory) or synccheck (invalid barrier use). Reports are grouped by kind, kernel and source line "
            "(CUDA builds carry -lineinfo) with counts; include_log adds the raw output. Defaults to the smallest dev "
            "workload, since sanitizers slow kernels down 10-100x. Use it once a kernel passes, and after structural "
            "changes; a race also shows as a 'nondeterministic' finding in run_benchmark. " + SOLUTION_HELP
        ),
    )
    @domain_errors
    async def sanitize_solution(
        solution: Annotated[SolutionInput, Field(description=SOLUTION_HELP)],
        tool: Annotated[Literal["memcheck", "racecheck", "initcheck", "synccheck"], Field(description="Which checker.")] = "memcheck",
        workload: Annotated[str | None, Field(max_length=100, description="'smallest' (default), 'largest', or a workload uuid.")] = None,
        include_log: Annotated[bool, Field(description="Also return the raw sanitizer output (tail).")] = False,
        wait_seconds: Wait = 50,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, JobResponse]:
        job_id = await anyio.to_thread.run_sync(lambda: submit_sanitize(app, solution, tool=tool, workload=workload, include_log=include_log))
        return compact(await wait_for_job(app.jobs, job_id, wait_seconds, ctx))

    @mcp.tool(
        name="compare_solutions",
        annotations=annotations("A/B two solutions", read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False),
        description=(
            "Decide whether B is really faster than A: both are loaded at once on one leased GPU, each sandboxed, "
            "and timed in rounds whose order is shuffled (one timed batch per side per round; a round's median is one "
            "sample); both sides' outputs and times are checked like run_benchmark's. Per workload: medians, the "
            "speedup of B over A with a 95% interval from the paired rounds, widened by how much two processes running "
            "the same code differ (config.process_spread, 3% by default: differences under ~6% are not resolved), the noise, a verdict (b_faster or "
            "b_slower when the interval excludes 1, else no_significant_difference) and whether the difference is "
            "meaningful (the interval clears 1% either way). Use it when run_benchmark shows a small difference; "
            "give a = {attempt: '<parent id>'} to compare against a parent attempt. " + SOLUTION_HELP
        ),
    )
    @domain_errors
    async def compare_solutions(
        a: Annotated[SolutionInput, Field(description="Solution A (the 'before'), in any solution form.")],
        b: Annotated[SolutionInput, Field(description="Solution B (the 'after'), in any solution form.")],
        workloads: Workloads = "dev",
        rounds: Annotated[int, Field(ge=3, le=40, description="Timed rounds per side.")] = 8,
        calls_per_round: Annotated[int, Field(ge=5, le=500, description="Timed calls in each round.")] = 20,
        wait_seconds: Wait = 50,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, JobResponse]:
        job_id = await anyio.to_thread.run_sync(lambda: submit_compare(app, a, b, workloads=workloads, rounds=rounds, per_round=calls_per_round))
        return compact(await wait_for_job(app.jobs, job_id, wait_seconds, ctx))
