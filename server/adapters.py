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
    """Turn every exception a tool raises into an MCP tool error that says what was wrong and what to do.

    Without this, the SDK reports any non-ToolError as a bare "Error executing tool X". KdaError keeps
    its own message; bad input (pydantic ValidationError, OSError, ValueError, TypeError, ...) is
    explained; anything else is an internal error, logged with its traceback. Cancellation and other
    BaseExceptions pass through untouched.
    """
    tool = getattr(fn, "__name__", "tool")
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                raise tool_error(exc, tool) from exc

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise tool_error(exc, tool) from exc

    return wrapper  # type: ignore[return-value]


MAX_ERROR_CHARS = 1_500
_SHOWN_PATH_CHARS = 160


def tool_error(exc: Exception, tool: str = "tool") -> Exception:
    """The ToolError to raise for `exc` (MCP protocol errors and ToolErrors are returned as they are)."""
    import logging

    from mcp.shared.exceptions import MCPError

    if isinstance(exc, (ToolError, MCPError)):
        return exc
    log = logging.getLogger("kda_mcp.server")
    leaf = _first_leaf(exc)
    message, internal = _describe(leaf)
    if internal:
        log.error("internal error in tool %s", tool, exc_info=(type(leaf), leaf, leaf.__traceback__))
    else:
        log.info("tool %s refused its input: %s", tool, message[:300])
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 1] + "…"
    return ToolError(message)


def _first_leaf(exc: BaseException) -> Exception:
    """The first real exception inside (nested) exception groups, e.g. from an anyio task group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner = next((e for e in exc.exceptions if isinstance(e, Exception)), None)
        if inner is None:
            break
        exc = inner
    return exc  # type: ignore[return-value]


def _shown(value: object, limit: int = _SHOWN_PATH_CHARS) -> str:
    text = repr(value) if not isinstance(value, str) else value
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "replace")
    if len(text) > limit:
        text = f"{text[: limit // 2]}…{text[-limit // 4 :]} ({len(text)} characters)"
    return repr(text)


def _describe(exc: Exception) -> tuple[str, bool]:
    """What to tell the caller about `exc`, and whether it is an internal error (a bug)."""
    import errno

    from pydantic import ValidationError

    if isinstance(exc, KdaError):
        return str(exc), False
    if isinstance(exc, ValidationError):
        problems = []
        for error in exc.errors()[:5]:
            where = ".".join(str(part) for part in error.get("loc", ())) or "the input"
            got = error.get("input")
            shown = f" (got {_shown(got, 60)})" if got is not None and not isinstance(got, (dict, list)) else ""
            problems.append(f"{where}: {error.get('msg', 'invalid')}{shown}")
        more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        message = (
            f"Invalid argument: {'; '.join(problems)}{more}. Fix that field and call again; the tool's input schema "
            "lists every field with its type and limits."
        )
        return message, False
    if isinstance(exc, OSError):
        path = getattr(exc, "filename", None)
        where = f" {_shown(path)}" if path is not None else ""
        code = exc.errno
        if code == errno.ENAMETOOLONG:
            message = (
                f"The path{where} is too long for the file system (at most 255 bytes per name and 4096 per path). "
                "Pass a shorter path."
            )
            return message, False
        if code == errno.EISDIR:
            return f"The path{where} is a folder where a file was expected. Pass the path of a file.", False
        if code == errno.ENOTDIR:
            message = (
                f"A part of the path{where} is a file where a folder was expected. Pass a path whose parents are folders."
            )
            return message, False
        if code in (errno.EACCES, errno.EPERM):
            message = (
                f"Permission denied for{where or ' a path'}: kda-mcp may not read or write it. Use a path inside the "
                "allowed roots (the workspace, the dataset, the state and cache folders)."
            )
            return message, False
        if code == errno.ENOENT:
            return f"No such file or folder:{where or ' (a path)'}. Check the path and call again.", False
        if code == errno.EEXIST:
            return f"The path{where} already exists. Pass overwrite=true to replace it, or choose another path.", False
        if code == errno.ELOOP:
            return f"The path{where} has too many levels of symbolic links (or a link loop). Pass a path without links.", False
        if code in (errno.ENOSPC, errno.EDQUOT):
            return "The disk is full (or the quota is used up) on the server. Free space, then call again.", False
        if code == errno.EROFS:
            return f"The path{where} is on a read-only file system. Choose a writable path inside the workspace.", False
        if isinstance(exc, TimeoutError):
            return "The operation timed out on the server. Call again; if it keeps happening, ask for less at once.", False
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"The server could not use the path{where}: {reason}. Check the path and call again.", False
    if isinstance(exc, ValueError):
        text = str(exc)
        if "null byte" in text or "NUL" in text or "\\x00" in text:
            return "An argument contains a NUL byte (\\x00), which no path or name may hold. Remove it and call again.", False
        if isinstance(exc, UnicodeError):
            return f"An argument is not valid text ({type(exc).__name__}: {text[:200]}). Pass UTF-8 text.", False
        message = (
            f"Invalid input ({type(exc).__name__}: {text[:500]}). Check the arguments against the tool's description; "
            "if they look right, report it as a kda-mcp bug."
        )
        return message, False
    if isinstance(exc, TypeError):
        message = (
            f"An argument has the wrong type ({exc}). Check the types in the tool's input schema; if they look right, "
            "report it as a kda-mcp bug."
        )
        return message, False
    if isinstance(exc, RecursionError):
        return "The input is nested too deeply to process. Pass a flatter value.", False
    if isinstance(exc, MemoryError):
        return "The input is too large for the server's memory. Pass a smaller value.", False
    if isinstance(exc, (TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError)):
        return f"The operation did not finish ({type(exc).__name__}). Call again; if it keeps happening, report it.", False
    text = str(exc)[:500] or "no message"
    return f"internal error in kda-mcp ({type(exc).__name__}: {text}); the server keeps running — report it.", True


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
