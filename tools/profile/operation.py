"""profile_solution and compare_profiles: capture one call under Nsight Compute as a job, summarize
the report for an agent, keep both."""

from __future__ import annotations

from pathlib import Path

import anyio
from flashinfer_bench.data import Definition, Solution, Workload

from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.errors import InvalidArgumentError, KdaError
from kda_mcp.tools.jobs import JobContext
from kda_mcp.tools.profile.capture import CaptureRequest, check_regex
from kda_mcp.tools.profile.compare import compare
from kda_mcp.tools.profile.models import ProfileComparison, ProfileSummary
from kda_mcp.tools.profile.summary import summarize_report
from kda_mcp.tools.solution import SolutionInput, resolve_input


def pick_workload(app: KdaApp, definition: Definition, workload: str | None, default: str = "largest") -> Workload:
    """'largest' (where steady-state behaviour shows) or 'smallest' of the dev set, or a uuid."""
    dev = app.dataset().dev_set(definition.name)
    choice = workload or default
    if choice in ("largest", "smallest"):
        if not dev:
            raise InvalidArgumentError(f"{definition.name} has no workloads to run.")
        return dev[-1] if choice == "largest" else dev[0]
    return app.dataset().select_workloads(definition.name, [choice])[0]


def submit_profile(
    app: KdaApp,
    given: SolutionInput,
    *,
    workload: str | None = None,
    profile_set: str = "quick",
    kernels: str | None = None,
    launch_skip: int = 0,
    launch_count: int = 20,
    detail: str = "compact",
    timeout_s: float = 600,
    gpu_kind: str | None = None,
) -> str:
    solution, definition = resolve_input(app, given)
    chosen = pick_workload(app, definition, workload)
    check_regex(kernels)
    app.executor.require("profile_solution", gpu_kind)
    ncu = app.executor.profiler()
    profile_id = app.profiles.new_id()
    report = app.settings.state_dir / "profiles" / profile_id

    async def work(job: JobContext) -> dict:
        target = await anyio.to_thread.run_sync(app.target, None, gpu_kind)  # on Ray, cluster calls
        built = await app.evaluator.build(solution, definition, target, app.settings.dataset_path)
        if built.error:
            raise KdaError(f"The solution did not build: {built.error} Call compile_solution for the diagnostics.")
        request = CaptureRequest(
            solution=solution,
            definition=definition,
            workload=chosen,
            built=built,
            dataset_root=app.settings.dataset_path,
            report=report,
            profile_set=profile_set,  # type: ignore[arg-type]
            kernels=kernels,
            launch_skip=launch_skip,
            launch_count=launch_count,
            timeout_s=timeout_s,
        )
        path, _, seconds = await app.executor.capture(request, ncu, progress=job.progress, on_gpu=job.on_gpu, purpose=f"profile_solution {solution.name}", kind=gpu_kind)
        summary = summarize(app, path, profile_id=profile_id, solution=solution, definition=definition, workload=chosen.uuid, profile_set=profile_set, detail=detail, seconds=seconds, attempt=given.attempt)
        app.profiles.save(summary, path)
        return summary.model_dump(mode="json", exclude_none=True)

    params = {"solution": solution.name, "definition": definition.name, "workload": chosen.uuid, "set": profile_set, "profile_id": profile_id}
    return app.jobs.submit("profile_solution", params, work)


def wiki_route(app: KdaApp, label: str) -> list[dict[str, str]]:
    try:
        return [{"id": hit.id, "title": hit.title, "path": hit.path} for hit in app.wiki().route(label, limit=4)]
    except KdaError:
        return []


def summarize(
    app: KdaApp, path: Path, *, profile_id: str, solution: Solution, definition: Definition, workload: str, profile_set: str, detail: str, seconds: float | None, attempt: str | None
) -> ProfileSummary:
    kernels, gpu = summarize_report(path, detail=detail, wiki_route=lambda label: wiki_route(app, label))
    total = sum(k.duration_us or 0 for k in kernels)
    labels = sorted({k.bottleneck.label for k in kernels if k.bottleneck})
    heaviest = max(kernels, key=lambda k: k.duration_us or 0) if kernels else None
    message = (
        f"{len(kernels)} kernel(s), {total:.1f} us in total; the longest, {heaviest.name[:60]}, is {heaviest.bottleneck.label}: {heaviest.bottleneck.reason}."
        if heaviest and heaviest.bottleneck
        else "No kernels in the report."
    )
    return ProfileSummary(
        profile_id=profile_id,
        report_path=str(path),
        attempt_id=attempt,
        solution=solution.name,
        definition=definition.name,
        workload=workload,
        profile_set=profile_set,
        capture_seconds=round(seconds, 1) if seconds is not None else None,
        gpu=gpu,
        kernels=kernels,
        total_duration_us=round(total, 3),
        message=message + (f" Labels across kernels: {', '.join(labels)}." if len(labels) > 1 else ""),
    )


def compare_profiles(app: KdaApp, a: str, b: str) -> ProfileComparison:
    return compare(app.profiles.get(a), app.profiles.get(b))
