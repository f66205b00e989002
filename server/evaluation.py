"""Tools that measure solutions and manage the jobs doing it."""

from typing import Annotated, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import BaseModel, Field

from kda_mcp.server.adapters import SOLUTION_HELP, JobResponse, annotations, compact, domain_errors, job_response, read_only, wait_for_job
from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.evaluation.benchmark import plan_benchmark, submit_benchmark
from kda_mcp.tools.evaluation.models import BenchmarkConfig
from kda_mcp.tools.jobs import JobView
from kda_mcp.tools.solution import SolutionInput


class JobList(BaseModel):
    jobs: list[JobView]
    gpus: dict[int, str] = Field(description="GPU index -> the job holding it ('' when free).")


def register(mcp: MCPServer, app: KdaApp) -> None:
    @mcp.tool(
        name="run_benchmark",
        annotations=annotations("Benchmark a solution", read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False),
        description=(
            "Check correctness and time a solution on real workloads, on a GPU leased exclusively. The solution runs "
            "sandboxed; a trusted judge owns inputs, outputs and the clock. Correctness: fresh random inputs per "
            "trial, |out-ref| <= atol + rtol*|ref| with the definition's tolerance, exact shape/dtype, inputs must "
            "stay unchanged; timed calls drawn at random are re-checked. Timing: GPU time per call over all streams "
            "(first kernel start to last kernel end), cold L2, fresh inputs every call, the candidate, the "
            "definition's reference and the baseline interleaved in rounds; every time is verified against the "
            "judge's own clock. Reports per workload: status, latency (median, p10/p90), the judge's outside figure, "
            "busy time, kernel count, launch time and launch_bound, reference and baseline latency, speedups with "
            "95% intervals (which include a 3% spread between processes), integrity findings (a finding withholds the "
            "speedup; calls under 15 us are too_small_to_verify and stay out of the geomean); records an attempt (pass "
            "parent_attempt to keep lineage). workloads: 'dev' (default, spans the shapes), 'all', or uuids. Waits up "
            "to wait_seconds, then returns a job_id for get_job. " + SOLUTION_HELP
        ),
    )
    @domain_errors
    async def run_benchmark(
        solution: Annotated[SolutionInput, Field(description=SOLUTION_HELP)],
        workloads: Annotated[
            Literal["dev", "all"] | list[str], Field(description="'dev', 'all', or a list of workload uuids (unique prefixes work).")
        ] = "dev",
        parent_attempt: Annotated[str | None, Field(max_length=20, description="The attempt this one improves on, e.g. 'a3'.")] = None,
        baseline: Annotated[
            str | None, Field(max_length=200, description="'dataset' (default: solutions/baseline/...), 'none', a dataset solution name, or an attempt id.")
        ] = None,
        config: Annotated[BenchmarkConfig | None, Field(description="Measurement settings; the defaults are the recommended method.")] = None,
        arch: Annotated[str | None, Field(max_length=20, description="Build target for CUDA code, default from the GPU.")] = None,
        wait_seconds: Annotated[float, Field(ge=0, le=600, description="How long to wait before returning a job_id instead.")] = 50,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, JobResponse]:
        def submit() -> str:  # resolving, planning and the job row are blocking work (and, on Ray, cluster calls)
            plan = plan_benchmark(app, solution, workloads=workloads, baseline=baseline, config=config, arch=arch)
            return submit_benchmark(app, plan, parent_attempt=parent_attempt)

        job_id = await anyio.to_thread.run_sync(submit)
        return compact(await wait_for_job(app.jobs, job_id, wait_seconds, ctx))

    @mcp.tool(
        name="get_job",
        annotations=read_only("Get a job"),
        description=(
            "Status, progress and (when finished) the result of a job started by run_benchmark, profile_solution, "
            "sanitize_solution or compare_solutions. wait_seconds > 0 waits for it to finish, up to that long."
        ),
    )
    @domain_errors
    async def get_job(
        job_id: Annotated[str, Field(min_length=1, max_length=40, description="e.g. 'j12'.")],
        wait_seconds: Annotated[float, Field(ge=0, le=600, description="Wait up to this long for completion.")] = 0,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, JobResponse]:
        return compact(await wait_for_job(app.jobs, job_id, wait_seconds, ctx))

    @mcp.tool(
        name="list_jobs",
        annotations=read_only("List jobs"),
        description="Recent jobs, newest first, with status and progress; and which job holds each GPU. Results are left out (get_job has them).",
    )
    @domain_errors
    def list_jobs(
        status: Annotated[
            Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"] | None, Field(description="Only jobs in this state.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> Annotated[CallToolResult, JobList]:
        jobs = [j.model_copy(update={"result": None}) for j in app.jobs.list(status=status, limit=limit)]
        return compact(JobList(jobs=jobs, gpus=app.gpus.status()))

    @mcp.tool(
        name="cancel_job",
        annotations=annotations("Cancel a job", read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False),
        description="Cancel a queued or running job; its processes are killed and its GPU lease released. A finished job is returned as it is.",
    )
    @domain_errors
    def cancel_job(job_id: Annotated[str, Field(min_length=1, max_length=40)]) -> Annotated[CallToolResult, JobResponse]:
        return compact(job_response(app.jobs.cancel(job_id)))
