"""Shared plumbing for the tool adapters: error translation, compact results, annotation presets."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from kda_mcp.tools.errors import KdaError
from kda_mcp.tools.evaluation.models import BenchmarkResult
from kda_mcp.tools.jobs import FINISHED, JobRunner, JobView

SOLUTION_HELP = (
    "The solution, in one of four forms: {files: {path: content}, spec: {language, entry_point, "
    "destination_passing_style}, definition}; {path: a starter-kit folder with config.toml, or a solution.json}; "
    "{solution_json: <packed solution.json>}; or {attempt: 'a3'} for the exact solution a past attempt ran."
)
POLL_S = 2.0

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

READ_ONLY = dict(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def annotations(title: str, **hints: bool) -> ToolAnnotations:
    return ToolAnnotations(title=title, **hints)


def read_only(title: str) -> ToolAnnotations:
    return annotations(title, **READ_ONLY)


def domain_errors(fn: F) -> F:
    """Turn the domain's anticipated errors into MCP tool errors the model can read.

    Without this, the SDK reports any non-ToolError as a bare "Error executing tool".
    """
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except KdaError as exc:
                raise ToolError(str(exc)) from exc

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KdaError as exc:
            raise ToolError(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def compact(model: BaseModel) -> CallToolResult:
    """A structured result without nulls; the text block is the same JSON, unindented.

    Claude Code and Codex put the structured content in front of the model, so every byte counts.
    """
    data = model.model_dump(mode="json", exclude_none=True)
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


HEARTBEAT_S = 5.0


async def with_heartbeat(ctx: Any, what: str, work: Callable[[], Awaitable[T]]) -> T:
    """Await work, sending a progress notification every few seconds meanwhile, so clients that
    reset their timeout on progress keep waiting. Errors come out unwrapped (no ExceptionGroup),
    so domain_errors still sees them."""
    outcome: list[Any] = []

    async def beat() -> None:
        elapsed = 0.0
        while ctx is not None:
            await anyio.sleep(HEARTBEAT_S)
            elapsed += HEARTBEAT_S
            try:
                await ctx.report_progress(elapsed, None, f"{what}: {elapsed:.0f} s")
            except Exception:  # no progress token, or the client went away: keep working
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(beat)
        try:
            outcome.append(await work())
        except Exception as exc:
            outcome.append(exc)
        finally:
            tg.cancel_scope.cancel()
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


class JobResponse(BaseModel):
    job_id: str
    status: str
    progress: dict[str, Any] | None = None
    result: BenchmarkResult | dict[str, Any] | None = None
    error: str | None = None
    owner: str | None = Field(default=None, description="The server process that runs the job, when it is not this one.")
    hint: str | None = None


def job_response(view: JobView) -> JobResponse:
    hint = view.message
    if hint is None and view.status not in FINISHED:
        hint = f"Still {view.status}; call get_job(job_id='{view.job_id}', wait_seconds=50) for the result."
    elif hint is None and view.status == "interrupted":
        hint = "Submit it again."
    return JobResponse(job_id=view.job_id, status=view.status, progress=view.progress, result=view.result, error=view.error, owner=view.owner, hint=hint)


async def wait_for_job(jobs: JobRunner, job_id: str, wait_seconds: float, ctx: Context | None) -> JobResponse:
    """Wait for the job up to wait_seconds, forwarding its progress to the client as notifications."""
    deadline = anyio.current_time() + wait_seconds
    last = None
    while True:
        remaining = deadline - anyio.current_time()
        view = await jobs.wait(job_id, min(POLL_S, max(remaining, 0)))
        if view.status in FINISHED or remaining <= 0:
            return job_response(view)
        progress = view.progress
        if ctx is not None and progress and progress != last:
            last = progress
            try:
                await ctx.report_progress(progress.get("done", 0), progress.get("total"), progress.get("message"))
            except Exception:  # no progress token: keep waiting quietly
                pass
