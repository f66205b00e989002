"""sanitize_solution: one call of a solution under compute-sanitizer, as a job."""

from __future__ import annotations

import anyio

from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.errors import KdaError
from kda_mcp.tools.jobs import JobContext
from kda_mcp.tools.profile.operation import pick_workload
from kda_mcp.tools.sanitize.parse import SanitizeResult
from kda_mcp.tools.solution import SolutionInput, resolve_input


def submit_sanitize(
    app: KdaApp, given: SolutionInput, *, tool: str = "memcheck", workload: str | None = None, include_log: bool = False, timeout_s: float = 600, gpu_kind: str | None = None
) -> str:
    solution, definition = resolve_input(app, given)
    chosen = pick_workload(app, definition, workload, default="smallest")
    app.executor.require("sanitize_solution", gpu_kind)

    async def work(job: JobContext) -> dict:
        target = await anyio.to_thread.run_sync(app.target, None, gpu_kind)  # on Ray, cluster calls
        built = await app.evaluator.build(solution, definition, target, app.settings.dataset_path)
        if built.error:
            raise KdaError(f"The solution did not build: {built.error} Call compile_solution for the diagnostics.")
        issues, summary, output, seconds = await app.executor.sanitize(
            progress=job.progress,
            on_gpu=job.on_gpu,
            purpose=f"sanitize_solution {solution.name}",
            kind=gpu_kind,
            tool=tool,
            solution=solution,
            definition=definition,
            workload=chosen,
            built=built,
            dataset_root=app.settings.dataset_path,
            timeout_s=timeout_s,
        )
        clean = not issues
        first = issues[0] if issues else None
        message = (
            f"{tool}: no problems found in one call on workload {chosen.uuid[:8]}."
            if first is None
            else f"{tool}: {sum(i.count for i in issues)} {'hazard(s)' if tool == 'racecheck' else 'report(s)'} in {len(issues)} group(s); first: {first.kind}"
            + (f" in {first.kernel}" if first.kernel else "")
            + (f" at {first.file}:{first.line}" if first.file else "")
            + (f" and {first.second_file}:{first.second_line}" if getattr(first, "second_file", None) else "")
            + "."
        )
        result = SanitizeResult(
            tool=tool,
            solution=solution.name,
            definition=definition.name,
            workload=chosen.uuid,
            clean=clean,
            error_summary=summary,
            issues=issues or None,
            message=message,
            seconds=round(seconds, 1),
            log=output[-20_000:] if include_log else None,
        )
        return result.model_dump(mode="json", exclude_none=True)

    return app.jobs.submit("sanitize_solution", {"solution": solution.name, "tool": tool, "workload": chosen.uuid}, work)
