"""compare_solutions: an interleaved A/B of two solutions of one definition, as a job."""

from __future__ import annotations

from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.errors import InvalidArgumentError
from kda_mcp.tools.evaluation.ab_runner import ab_plans, compare_solutions
from kda_mcp.tools.evaluation.benchmark import plan_benchmark
from kda_mcp.tools.jobs import JobContext
from kda_mcp.tools.solution import SolutionInput


def submit_compare(
    app: KdaApp, a: SolutionInput, b: SolutionInput, *, workloads: str | list[str] = "dev", rounds: int = 8, per_round: int = 20, arch: str | None = None
) -> str:
    plan_a = plan_benchmark(app, a, workloads=workloads, baseline="none", arch=arch)
    plan_b = plan_benchmark(app, b, workloads=workloads, baseline="none", arch=arch)
    if plan_a.definition.name != plan_b.definition.name:
        raise InvalidArgumentError(f"A solves {plan_a.definition.name} and B solves {plan_b.definition.name}; compare solutions of one definition.")
    app.gpus.require("compare_solutions")
    plan_a, plan_b = ab_plans(plan_a, plan_b, per_round)

    async def work(job: JobContext) -> dict:
        result = await compare_solutions(app.evaluator, plan_a, plan_b, rounds=rounds, progress=job.progress, on_gpu=job.on_gpu, run_id=job.job_id)
        return result.model_dump(mode="json", exclude_none=True)

    params = {"a": plan_a.solution.name, "b": plan_b.solution.name, "definition": plan_a.definition.name, "rounds": rounds}
    return app.jobs.submit("compare_solutions", params, work)
