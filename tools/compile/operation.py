"""compile_solution: resolve the caller's solution, build it for the target, report."""

from __future__ import annotations

import functools

import anyio

from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.compile.result import CompileResult
from kda_mcp.tools.jobs import await_future
from kda_mcp.tools.solution import SolutionInput, resolve_input


async def compile_solution(
    app: KdaApp,
    given: SolutionInput,
    *,
    arch: str | None = None,
    extra_nvcc_flags: list[str] | None = None,
    timeout_s: float = 300,
    include_log: bool = False,
) -> CompileResult:
    solution, definition = await anyio.to_thread.run_sync(resolve_input, app, given)
    dev = app.dataset().dev_set(definition.name)
    target = await anyio.to_thread.run_sync(app.target, arch)  # on Ray, cluster calls
    work = functools.partial(
        app.compiler.compile,
        solution,
        definition,
        target=target,
        extra_flags=list(extra_nvcc_flags or []),
        timeout_s=timeout_s,
        first_call_workload=dev[0] if dev else None,
        dataset_root=app.settings.dataset_path,
        include_log=include_log,
    )
    # Compiles run in the job loop: a first-call (JIT) compile takes a GPU lease from the same
    # pool as benchmarks and profiles, and cancelling this call kills the build.
    return await await_future(app.jobs.run_inline(work))
