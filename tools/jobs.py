"""Long work as jobs: run in one background event loop, persisted, cancellable, waitable.

GPU work of every kind (benchmarks, profiles, first-call compiles) runs in this one loop, so
the GPU pool's exclusive leases hold across all of it, whatever transport the call came in on.
A job's coroutine is cancelled by cancel_job, which kills its child process group.

Several servers may share one state folder (one `kda-mcp serve` per agent session). Each job
names its owner, the server instance running it (random token, pid, host), and the owner
refreshes the job's heartbeat from its job loop. A server marks a job interrupted only when its
owner is dead: the owner's process is gone (same host) or its heartbeat is older than the
timeout. Another server cancels a job by recording a cancel request, which the owner's loop
sees and acts on; waiting on another server's job polls the database.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import json
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.from_thread
import anyio.to_thread
from pydantic import Field

from kda_mcp.tools.errors import KdaError, not_found
from kda_mcp.tools.models import Result
from kda_mcp.tools.store import Store, dumps, now

log = logging.getLogger(__name__)

Status = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
FINISHED = ("succeeded", "failed", "cancelled", "interrupted")
ACTIVE = "('queued', 'running')"

HEARTBEAT_S = 3.0  # how often an owner refreshes its jobs' heartbeat (and progress) in the database
HEARTBEAT_TIMEOUT_S = 30.0  # an owner silent for longer is taken for dead
POLL_S = 0.25  # how often an owner looks for cancel requests; how often a waiter polls another server's job
CANCEL_WAIT_S = 10.0  # how long cancel_job waits for another server to stop its job

INTERRUPTED = "The server stopped before this job finished; submit it again."
CANCELLED = "Cancelled by cancel_job; its processes were killed."


@dataclass(frozen=True)
class Owner:
    """One server instance: what a job records as the one running it."""

    token: str
    pid: int
    host: str

    @classmethod
    def new(cls) -> Owner:
        return cls(secrets.token_hex(4), os.getpid(), socket.gethostname())

    @property
    def id(self) -> str:
        return f"{self.token}.{self.pid}@{self.host}"


# Owner ids of the runners open in this process: a job whose owner has our pid is alive only if listed.
_OPEN: set[str] = set()


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host still runs (a zombie does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self/stat").exists()  # no procfs: trust kill(0); else it just exited
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] not in (["Z"], ["X"])


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
    owner: str | None = Field(default=None, description="The kda-mcp server (token.pid@host) that runs or ran it, when not this one.")
    message: str | None = Field(default=None, description="What else to know, e.g. a cancel another server has not acted on yet.")


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
    def __init__(
        self,
        store: Store,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S,
        poll_s: float = POLL_S,
        cancel_wait_s: float = CANCEL_WAIT_S,
    ) -> None:
        self.store = store
        self.owner = Owner.new()
        self.heartbeat_s = heartbeat_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.poll_s = poll_s
        self.cancel_wait_s = cancel_wait_s
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._done: dict[str, threading.Event] = {}
        self._progress: dict[str, dict[str, Any]] = {}
        self._mine: set[str] = set()  # submitted here and not finished
        self._cancelled_from_elsewhere: set[str] = set()
        self._lock = threading.Lock()
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._last_reap = 0.0
        _OPEN.add(self.owner.id)
        self._mark_interrupted()

    # ---- owners and their liveness

    def _dead_reason(self, row: sqlite3.Row) -> str | None:
        """Why the owner of this queued/running job is dead, or None while it may be alive."""
        owner = row["owner"]
        if owner is None:
            return "it was accepted by a kda-mcp that kept no heartbeat"
        if owner == self.owner.id:
            return None
        same_host = row["owner_host"] == self.owner.host
        pid = row["owner_pid"]
        if same_host and pid == os.getpid():  # another runner in this very process
            return None if owner in _OPEN else "its runner in this process was closed"
        if same_host and pid is not None and not pid_alive(pid):
            return f"its process {pid} is gone"
        silent = now() - (row["heartbeat"] or row["created"])
        if silent > self.heartbeat_timeout_s:
            return f"no heartbeat for {silent:.0f} s"
        return None

    def _reap(self, job_ids: list[str] | None = None) -> list[str]:
        """Mark interrupted the queued/running jobs (all, or these) whose owner is dead; their ids."""
        sql = f"SELECT id, owner, owner_pid, owner_host, heartbeat, created FROM jobs WHERE status IN {ACTIVE}"
        args: tuple[Any, ...] = ()
        if job_ids is not None:
            if not job_ids:
                return []
            sql += f" AND id IN ({', '.join('?' * len(job_ids))})"
            args = tuple(job_ids)
        suspects = [r["id"] for r in self.store.execute(sql, args) if self._dead_reason(r)]
        if not suspects:
            return []
        reaped = []
        with self.store.transaction() as conn:  # look again under the write lock: a heartbeat may just have come
            rows = conn.execute(sql + f" AND id IN ({', '.join('?' * len(suspects))})", (*args, *suspects)).fetchall()
            for row in rows:
                reason = self._dead_reason(row)
                if reason is None:
                    continue
                error = INTERRUPTED if row["owner"] is None else (
                    f"The server that ran this job ({row['owner']}) stopped before it finished ({reason}); submit it again."
                )
                conn.execute("UPDATE jobs SET status = 'interrupted', finished = ?, error = ? WHERE id = ?", (now(), error, row["id"]))
                reaped.append(row["id"])
        if reaped:
            log.info("jobs %s: their servers are gone, marked interrupted", ", ".join(reaped))
        return reaped

    def _mark_interrupted(self) -> None:
        """Jobs a dead server accepted but never finished say so, instead of 'running' forever.

        Jobs of servers that are alive (on this state folder too) are left alone."""
        self._last_reap = time.monotonic()
        self._reap()

    def _maybe_reap(self, job_ids: list[str] | None = None) -> None:
        if time.monotonic() - self._last_reap >= self.heartbeat_s:
            self._last_reap = time.monotonic()
            try:
                self._reap(job_ids)
            except sqlite3.Error:
                log.debug("reaping dead owners' jobs failed", exc_info=True)

    # ---- the background loop

    def portal(self) -> anyio.from_thread.BlockingPortal:
        with self._lock:
            if self._portal is None:
                self._portal_cm = anyio.from_thread.start_blocking_portal(name="kda-jobs")
                self._portal = self._portal_cm.__enter__()
                self._portal.start_task_soon(self._heartbeat_loop)
                atexit.register(self.close)
            return self._portal

    async def _heartbeat_loop(self) -> None:
        """Say this server's jobs are alive, publish their progress, act on cancel requests, and
        now and then mark interrupted the jobs of servers that died."""
        last_beat = last_reap = anyio.current_time()
        while True:
            await anyio.sleep(self.poll_s)
            t = anyio.current_time()
            beat, reap = t - last_beat >= self.heartbeat_s, t - last_reap >= self.heartbeat_timeout_s
            last_beat, last_reap = (t if beat else last_beat), (t if reap else last_reap)
            try:
                wanted = await anyio.to_thread.run_sync(self._tick, beat, reap)
            except Exception:
                log.warning("job heartbeat failed", exc_info=True)
                continue
            for job_id in wanted:
                scope = self._scopes.get(job_id)
                if scope is not None and not scope.cancel_called:
                    log.info("job %s: cancel requested through the database, cancelling", job_id)
                    self._cancelled_from_elsewhere.add(job_id)
                    scope.cancel()

    def _tick(self, beat: bool, reap: bool) -> list[str]:
        """One heartbeat step (in a worker thread, off the loop): the ids of own jobs asked to cancel."""
        mine = list(self._mine)
        wanted: list[str] = []
        if mine:
            if beat:
                stamp = now()
                self.store.executemany(
                    f"UPDATE jobs SET heartbeat = ?, progress = COALESCE(?, progress) WHERE id = ? AND status IN {ACTIVE}",
                    [(stamp, dumps(self._progress[j]) if j in self._progress else None, j) for j in mine],
                )
            rows = self.store.execute(
                f"SELECT id FROM jobs WHERE status IN {ACTIVE} AND owner = ? AND cancel_requested IS NOT NULL", (self.owner.id,)
            )
            wanted = [r["id"] for r in rows if r["id"] in self._mine]
        if reap:
            self._last_reap = time.monotonic()
            self._reap()
        return wanted

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` in the job loop when the runner shuts down (e.g. to kill spare processes)."""
        self._closers.append(closer)

    def close(self) -> None:
        """Cancel what runs (killing its children), stop the loop, and mark its jobs interrupted."""
        with self._lock:
            portal, cm = self._portal, self._portal_cm
            self._portal = self._portal_cm = None
        if portal is None or cm is None:
            _OPEN.discard(self.owner.id)
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
        _OPEN.discard(self.owner.id)
        try:
            self.store.execute(
                f"UPDATE jobs SET status = 'interrupted', finished = ?, error = ? WHERE owner = ? AND status IN {ACTIVE}",
                (now(), INTERRUPTED, self.owner.id),
            )
        except sqlite3.Error:
            log.debug("could not mark this server's jobs interrupted", exc_info=True)
        for job_id in list(self._mine):
            self._mine.discard(job_id)
            self._done.setdefault(job_id, threading.Event()).set()

    def run_inline(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> concurrent.futures.Future[Any]:
        """Run a coroutine function in the job loop (for work that needs the GPU pool but is no job)."""
        return self.portal().start_task_soon(fn, *args)

    # ---- jobs

    def submit(self, kind: str, params: dict[str, Any], fn: JobFn) -> str:
        portal = self.portal()  # its heartbeat loop runs before the job is visible to other servers
        job_id = self.store.next_id("j")
        stamp = now()
        self._done[job_id] = threading.Event()
        self._mine.add(job_id)
        self.store.execute(
            "INSERT INTO jobs(id, kind, status, created, params, owner, owner_pid, owner_host, heartbeat)"
            " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
            (job_id, kind, stamp, dumps(params), self.owner.id, self.owner.pid, self.owner.host, stamp),
        )
        portal.start_task_soon(self._run, job_id, fn)
        return job_id

    async def _run(self, job_id: str, fn: JobFn) -> None:
        status, result, error = "failed", None, None
        with anyio.CancelScope() as scope:
            self._scopes[job_id] = scope
            stamp = now()
            self.store.execute("UPDATE jobs SET status = 'running', started = ?, heartbeat = ? WHERE id = ?", (stamp, stamp, job_id))
            try:
                result = await fn(JobContext(self, job_id))
                status = "succeeded"
            except KdaError as exc:
                error = str(exc)
            except Exception as exc:
                log.error("job %s crashed:\n%s", job_id, traceback.format_exc())
                error = f"internal error in kda-mcp ({type(exc).__name__}: {exc}); the job did not finish."
        if scope.cancelled_caught:
            status, error = "cancelled", CANCELLED
            if job_id in self._cancelled_from_elsewhere:
                error = "Cancelled by cancel_job (called on another kda-mcp server); its processes were killed."
        with anyio.CancelScope(shield=True):
            self.store.execute(
                "UPDATE jobs SET status = ?, finished = ?, result = ?, error = ?, progress = ? WHERE id = ?",
                (status, now(), None if result is None else dumps(result), error, dumps(self._progress.get(job_id)), job_id),
            )
        self._scopes.pop(job_id, None)
        self._mine.discard(job_id)
        self._cancelled_from_elsewhere.discard(job_id)
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
            owner=row["owner"] if row["owner"] != self.owner.id else None,
        )

    async def wait(self, job_id: str, timeout: float) -> JobView:
        """The job once finished, or as it stands after `timeout` seconds."""
        view = self.get(job_id)
        if view.status in FINISHED or timeout <= 0:
            return view
        event = self._done.get(job_id)
        if event is not None:
            await anyio.to_thread.run_sync(event.wait, timeout, abandon_on_cancel=True)
            return self.get(job_id)
        # Accepted by another server on this state folder: poll the database until it finishes.
        deadline = anyio.current_time() + timeout
        while True:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                return view
            await anyio.sleep(min(self.poll_s, remaining))
            await anyio.to_thread.run_sync(self._maybe_reap, [job_id])
            view = self.get(job_id)
            if view.status in FINISHED:
                return view

    def cancel(self, job_id: str) -> JobView:
        """Cancel a queued or running job, this server's or another's on this state folder."""
        view = self.get(job_id)
        if view.status in FINISHED:
            return view
        if job_id in self._mine:
            scope = self._scopes.get(job_id)
            portal = self._portal
            if scope is not None and portal is not None:
                portal.call(scope.cancel)
            else:  # not started yet: the heartbeat loop cancels it as soon as it is
                self._request_cancel(job_id)
            self._done[job_id].wait(30)
            return self.get(job_id)
        return self._cancel_elsewhere(job_id)

    def _request_cancel(self, job_id: str) -> None:
        self.store.execute(f"UPDATE jobs SET cancel_requested = ? WHERE id = ? AND status IN {ACTIVE}", (now(), job_id))

    def _cancel_elsewhere(self, job_id: str) -> JobView:
        """Ask the job's owner, through the database, to cancel it; wait a bounded time for it to stop."""
        if self._reap([job_id]):  # its server is dead: nothing runs it any more
            return self.get(job_id)
        self._request_cancel(job_id)
        deadline = time.monotonic() + self.cancel_wait_s
        while time.monotonic() < deadline:
            time.sleep(min(self.poll_s / 2, 0.1))
            view = self.get(job_id)
            if view.status in FINISHED:
                return view
            if self._reap([job_id]):
                return self.get(job_id)
        view = self.get(job_id)
        if view.status in FINISHED:
            return view
        rows = self.store.execute("SELECT owner_pid FROM jobs WHERE id = ?", (job_id,))
        pid = rows[0]["owner_pid"] if rows else None
        return view.model_copy(
            update={
                "message": (
                    f"Job {job_id} runs in another kda-mcp server ({view.owner}), which was asked to cancel it but had "
                    f"not stopped it after {self.cancel_wait_s:g} s; it will once that server's job loop gets to the "
                    f"request. Call get_job(job_id='{job_id}', wait_seconds=30) to see it end"
                    + (f", or stop that server (process {pid})." if pid else ".")
                )
            }
        )

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
        self._maybe_reap()
        return [self.get(r["id"]) for r in self.store.execute(sql, tuple(args))]


async def await_future(future: concurrent.futures.Future[Any]) -> Any:
    """Await a job-loop future from another event loop; cancelling the caller cancels the work."""
    try:
        return await anyio.to_thread.run_sync(future.result, abandon_on_cancel=True)
    finally:
        if not future.done():
            future.cancel()
