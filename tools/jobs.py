"""Long work as jobs: run in one background event loop, persisted, cancellable, waitable.

GPU work of every kind (benchmarks, profiles, first-call compiles) runs in this one loop, so
the GPU pool's exclusive leases hold across all of it, whatever transport the call came in on.
A job's coroutine is cancelled by cancel_job, which kills its child process group.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import json
import logging
import threading
import traceback
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Literal

import anyio
import anyio.from_thread
import anyio.to_thread
from pydantic import Field

from kda_mcp.tools.errors import KdaError, NotFoundError, not_found
from kda_mcp.tools.models import Result
from kda_mcp.tools.store import Store, dumps, now

log = logging.getLogger(__name__)

Status = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
FINISHED = ("succeeded", "failed", "cancelled", "interrupted")


class JobView(Result):
    job_id: str
    kind: str
    status: Status
    created: float
    started: float | None = None
    finished: float | None = None
    elapsed_s: float | None = None
    gpu: int | None = None
    progress: dict[str, Any] | None = Field(default=None, description="done/total/message while it runs.")
    error: str | None = None
    result: dict[str, Any] | None = None


class JobContext:
    """What a running job may touch: its id and a progress reporter."""

    def __init__(self, runner: JobRunner, job_id: str) -> None:
        self.runner = runner
        self.job_id = job_id

    def progress(self, done: int, total: int, message: str) -> None:
        self.runner._set_progress(self.job_id, {"done": done, "total": total, "message": message})

    def on_gpu(self, gpu: int) -> None:
        self.runner.store.execute("UPDATE jobs SET gpu = ? WHERE id = ?", (gpu, self.job_id))


JobFn = Callable[[JobContext], Awaitable[dict[str, Any]]]


class JobRunner:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._done: dict[str, threading.Event] = {}
        self._progress: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._mark_interrupted()

    def _mark_interrupted(self) -> None:
        """Jobs a previous process accepted but never finished say so, instead of 'running' forever."""
        self.store.execute(
            "UPDATE jobs SET status = 'interrupted', finished = ?, error = ? WHERE status IN ('queued', 'running')",
            (now(), "The server stopped before this job finished; submit it again."),
        )

    # ---- the background loop

    def portal(self) -> anyio.from_thread.BlockingPortal:
        with self._lock:
            if self._portal is None:
                self._portal_cm = anyio.from_thread.start_blocking_portal(name="kda-jobs")
                self._portal = self._portal_cm.__enter__()
                atexit.register(self.close)
            return self._portal

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` in the job loop when the runner shuts down (e.g. to kill spare processes)."""
        self._closers.append(closer)

    def close(self) -> None:
        """Cancel what runs (killing its children) and stop the loop."""
        with self._lock:
            portal, cm = self._portal, self._portal_cm
            self._portal = self._portal_cm = None
        if portal is None or cm is None:
            return
        for closer in self._closers:
            try:
                portal.call(closer)
            except Exception:
                log.debug("closer failed", exc_info=True)
        try:
            portal.call(portal.stop, True)
        except Exception:  # already stopping
            pass
        try:
            cm.__exit__(None, None, None)
        except Exception:
            log.debug("job loop shutdown", exc_info=True)

    def run_inline(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> concurrent.futures.Future[Any]:
        """Run a coroutine function in the job loop (for work that needs the GPU pool but is no job)."""
        return self.portal().start_task_soon(fn, *args)

    # ---- jobs

    def submit(self, kind: str, params: dict[str, Any], fn: JobFn) -> str:
        job_id = self.store.next_id("j")
        self.store.execute(
            "INSERT INTO jobs(id, kind, status, created, params) VALUES (?, ?, 'queued', ?, ?)",
            (job_id, kind, now(), dumps(params)),
        )
        self._done[job_id] = threading.Event()
        self.portal().start_task_soon(self._run, job_id, fn)
        return job_id

    async def _run(self, job_id: str, fn: JobFn) -> None:
        status, result, error = "failed", None, None
        with anyio.CancelScope() as scope:
            self._scopes[job_id] = scope
            self.store.execute("UPDATE jobs SET status = 'running', started = ? WHERE id = ?", (now(), job_id))
            try:
                result = await fn(JobContext(self, job_id))
                status = "succeeded"
            except KdaError as exc:
                error = str(exc)
            except Exception as exc:
                log.error("job %s crashed:\n%s", job_id, traceback.format_exc())
                error = f"internal error in kda-mcp ({type(exc).__name__}: {exc}); the job did not finish."
        if scope.cancelled_caught:
            status, error = "cancelled", "Cancelled by cancel_job; its processes were killed."
        with anyio.CancelScope(shield=True):
            self.store.execute(
                "UPDATE jobs SET status = ?, finished = ?, result = ?, error = ?, progress = ? WHERE id = ?",
                (status, now(), None if result is None else dumps(result), error, dumps(self._progress.get(job_id)), job_id),
            )
        self._scopes.pop(job_id, None)
        self._done.setdefault(job_id, threading.Event()).set()

    def _set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        self._progress[job_id] = progress

    def get(self, job_id: str) -> JobView:
        rows = self.store.execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            recent = [r["id"] for r in self.store.execute("SELECT id FROM jobs ORDER BY created DESC LIMIT 20")]
            raise not_found("job", job_id, recent, list_tool="list_jobs")
        row = rows[0]
        progress = self._progress.get(job_id) or (json.loads(row["progress"]) if row["progress"] else None)
        end = row["finished"] or now()
        return JobView(
            job_id=row["id"],
            kind=row["kind"],
            status=row["status"],
            created=row["created"],
            started=row["started"],
            finished=row["finished"],
            elapsed_s=round(end - row["started"], 2) if row["started"] else None,
            gpu=row["gpu"],
            progress=progress,
            error=row["error"],
            result=json.loads(row["result"]) if row["result"] else None,
        )

    async def wait(self, job_id: str, timeout: float) -> JobView:
        """The job once finished, or as it stands after `timeout` seconds."""
        view = self.get(job_id)
        if view.status in FINISHED or timeout <= 0:
            return view
        event = self._done.get(job_id)
        if event is None:  # accepted by another process that shares this state folder
            raise NotFoundError(f"Job {job_id} is not running in this server process.")
        await anyio.to_thread.run_sync(event.wait, timeout, abandon_on_cancel=True)
        return self.get(job_id)

    def cancel(self, job_id: str) -> JobView:
        view = self.get(job_id)
        if view.status in FINISHED:
            return view
        scope = self._scopes.get(job_id)
        if scope is not None and self._portal is not None:
            self._portal.call(scope.cancel)
        self._done[job_id].wait(30)
        return self.get(job_id)

    def list(self, *, status: str | None = None, kind: str | None = None, limit: int = 20) -> list[JobView]:
        sql, args = "SELECT id FROM jobs", []
        clauses = []
        if status:
            clauses.append("status = ?")
            args.append(status)
        if kind:
            clauses.append("kind = ?")
            args.append(kind)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created DESC LIMIT ?"
        args.append(limit)
        return [self.get(r["id"]) for r in self.store.execute(sql, tuple(args))]


async def await_future(future: concurrent.futures.Future[Any]) -> Any:
    """Await a job-loop future from another event loop; cancelling the caller cancels the work."""
    try:
        return await anyio.to_thread.run_sync(future.result, abandon_on_cancel=True)
    finally:
        if not future.done():
            future.cancel()
